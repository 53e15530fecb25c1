"""The small languages inside a config: YAML 1.2 scalars, sizes, `when:` conditions, the published schema."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import Project

from batchit.config import compile_condition, flags_read, parse_scalar, parse_size
from batchit.config.conditions import ConditionError, check_condition
from batchit.config.schema import config_schema
from batchit.config.yaml12 import Yaml12Loader
from batchit.operators.registry import BUILTIN_OPERATORS, OperatorRegistry

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("on", "on", id="on_is_a_string"),
        pytest.param("yes", "yes", id="yes_is_a_string"),
        pytest.param("off", "off", id="off_is_a_string"),
        pytest.param("y", "y", id="y_is_a_string"),
        pytest.param("true", True, id="true"),
        pytest.param("False", False, id="False"),
        pytest.param("TRUE", True, id="TRUE"),
        pytest.param("null", None, id="null"),
        pytest.param("~", None, id="tilde"),
        pytest.param("", None, id="empty"),
        pytest.param("12", 12, id="int"),
        pytest.param("-3", -3, id="negative_int"),
        pytest.param("010", 10, id="leading_zero_is_decimal"),
        pytest.param("0o17", 15, id="octal"),
        pytest.param("0x1f", 31, id="hex"),
        pytest.param("1_000", "1_000", id="underscores_are_a_string"),
        pytest.param("1:20", "1:20", id="sexagesimal_is_a_string"),
        pytest.param("0b11", "0b11", id="binary_is_a_string"),
        pytest.param("1.5", 1.5, id="float"),
        pytest.param("1e3", 1000.0, id="exponent"),
        pytest.param("-.inf", -math.inf, id="minus_infinity"),
        pytest.param("2024-01-02", "2024-01-02", id="date_is_a_string"),
        pytest.param("a: b", "a: b", id="not_parsed_as_a_mapping"),
    ],
)
def test_parse_scalar_is_yaml_1_2_core(text: str, value: Any) -> None:
    parsed = parse_scalar(text)
    assert parsed == value and type(parsed) is type(value)


def test_parse_scalar_nan() -> None:
    assert math.isnan(parse_scalar(".nan"))


def test_loader_resolves_keys_and_values_by_yaml_1_2() -> None:
    assert yaml.load("on: yes\nno: [off, true]\n", Loader=Yaml12Loader) == {"on": "yes", "no": ["off", True]}  # noqa: S506 (a SafeLoader subclass)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        pytest.param("20MB", 20_000_000, id="MB_is_decimal"),
        pytest.param("20MiB", 20 * 2**20, id="MiB_is_binary"),
        pytest.param("2GB", 2_000_000_000, id="GB"),
        pytest.param("2GiB", 2 * 2**30, id="GiB"),
        pytest.param("1KB", 1000, id="KB"),
        pytest.param("1KiB", 1024, id="KiB"),
        pytest.param("1TiB", 2**40, id="TiB"),
        pytest.param("512B", 512, id="bytes_unit"),
        pytest.param("1.5 GB", 1_500_000_000, id="fraction_and_space"),
        pytest.param("10mb", 10_000_000, id="any_case"),
        pytest.param(4096, 4096, id="int_is_bytes"),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["20 megabytes", "MB", "-1", "1PB", ""])
def test_parse_size_rejects_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_condition_is_evaluated_in_the_sandbox() -> None:
    condition = compile_condition("flags.watermark and width > 320 and input.ext == 'jpg'")
    seen = {"flags": {"watermark": True}, "width": 640, "input": {"ext": "jpg"}}
    assert condition(seen) is True
    assert condition({**seen, "width": 320}) is False


def test_condition_cannot_reach_python_internals() -> None:
    with pytest.raises(ConditionError, match="SecurityError: access to attribute '__class__'"):
        compile_condition("flags.__class__.__mro__")({"flags": {}})


def test_flags_read_finds_attribute_and_item_reads() -> None:
    assert flags_read("flags.watermark and (flags['draft'] or width > 2)") == {"watermark", "draft"}
    assert flags_read("flags.on") == {"on"}
    assert flags_read("width > 2") == set()


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        pytest.param("width >", "invalid condition", id="syntax"),
        pytest.param("flags[name]", "reads flags indirectly", id="dynamic_flag"),
        pytest.param("flags.watermak", "unknown flag 'watermak'", id="unknown_flag"),
        pytest.param("widht > 3", "unknown name 'widht'", id="unknown_name"),
        pytest.param(
            "lipsum(1000000)|length > 0", "unknown name 'lipsum'", id="jinja_global_that_decides_nothing"
        ),
    ],
)
def test_check_condition_refuses(expr: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        check_condition(expr, ["width"], ["watermark"])


@pytest.mark.parametrize(
    ("expr", "fix"),
    [
        ("widht > 3", "did you mean 'width'?"),
        ("stem == 'a'", "a condition has no {stem}: it reads input.path and input.ext instead"),
        ("__import__('os')", "a condition reads these names (flags as flags.NAME): flags, input, width"),
    ],
    ids=["typo", "path-placeholder", "not-a-variable-name"],
)
def test_an_unknown_name_in_a_condition_gets_a_fix_that_works(expr: str, fix: str) -> None:
    with pytest.raises(ConditionError) as caught:
        check_condition(expr, ["width"], ["watermark"])
    assert fix in str(caught.value.hint)


def test_committed_schema_is_the_generated_one() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "batchit.config.schema"], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert generated.stderr == ""
    assert (REPO / "batchit.schema.json").read_text(encoding="utf-8") == generated.stdout


SPEC_EXAMPLE = """\
version: 1
out: _build
jobs: auto
durability: fast
cache: {max_size: 2GB}
runs: {keep: 20}
flags: {watermark: true}
alerts: {webhook: "http://127.0.0.1:9009/hook", when: failure}
include: [batchit:images]

rules:
  thumbs:
    inputs: ["images/**/*.jpg", "images/**/*.png"]
    exclude: ["images/drafts/**"]
    matrix: {width: [320, 640]}
    output: "img/{path}-{width}.webp"
    deps: ["assets/logo.png"]
    validate: {max_size: 20MB, image: {max_pixels: 40000000, formats: [JPEG, PNG]}}
    steps:
      - image.load: {}
      - image.resize: {width: "{width}"}
      - image.watermark: {image: assets/logo.png, when: "flags.watermark and width > 320"}
      - image.save: {format: webp, quality: 80}
    resources: cpu
    concurrency: 4
    retry: {attempts: 3, backoff: 0.2, max_backoff: 10}
  gallery:
    inputs: {rule: thumbs}
    aggregate: true
    output: gallery.html
    steps:
      - template.render: {template: templates/gallery.html.j2}
"""
"""The illustrative `batchit.yaml` of SPEC section 2, verbatim."""


def test_published_schema_accepts_the_spec_example() -> None:
    schema = json.loads((REPO / "batchit.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(yaml.load(SPEC_EXAMPLE, Loader=Yaml12Loader))  # noqa: S506


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(("output: gallery.html", "ouput: gallery.html"), id="unknown_rule_key"),
        pytest.param(("template.render: {template:", "template.render: {templat:"), id="unknown_param"),
        pytest.param(("durability: fast", "durability: quick"), id="bad_enum"),
    ],
)
def test_published_schema_rejects_mistakes_editors_should_flag(change: tuple[str, str]) -> None:
    schema = config_schema(OperatorRegistry(dict(BUILTIN_OPERATORS)))
    document = yaml.load(SPEC_EXAMPLE.replace(*change), Loader=Yaml12Loader)  # noqa: S506
    assert not jsonschema.Draft202012Validator(schema).is_valid(document)


NESTED_PLACEHOLDERS = """\
version: 1
rules:
  crops:
    inputs: ["img/*.png"]
    matrix: {w: [10, 20], fmt: [PNG, JPEG]}
    output: "{stem}-{w}-{fmt}.png"
    steps:
      - image.load: {formats: ["{fmt}"]}
      - image.crop: {box: [0, 0, "{w}", 10]}
      - image.save: {format: png}
"""
"""Single placeholders inside a list parameter: batchit gives each the matrix value's type."""


def test_published_schema_accepts_a_placeholder_inside_a_list_parameter(project: Project) -> None:
    """An editor using the schema must not flag what batchit builds: `box: [0, 0, "{w}", 10]` is
    four integers once `{w}` is filled, as a top-level `width: "{w}"` is one."""
    project.write({"img/a.png": b""})
    project.config(NESTED_PLACEHOLDERS)
    result = project.run("plan")
    assert result.code == 0, result.describe()
    schema = json.loads((REPO / "batchit.schema.json").read_text(encoding="utf-8"))
    document = yaml.load(NESTED_PLACEHOLDERS, Loader=Yaml12Loader)  # noqa: S506
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(document)) == []
    bad = document["rules"]["crops"]["steps"][1]["image.crop"]["box"]
    bad[2] = "{w"  # not a placeholder: still refused, by batchit and by the schema
    assert not jsonschema.Draft202012Validator(schema).is_valid(document)


@pytest.mark.parametrize(
    ("line", "output", "error"),
    [
        ("matrix: {path: [a, b]}", "c/{path}.txt", "5:14: rule 'r': matrix key 'path' is reserved"),
        ("matrix: {in: [a, b]}", "c/{path}-{in}.txt", "5:14: rule 'r': matrix key 'in' is reserved"),
        ("expect: {schema: ''}", "c/{path}.txt", "5:14: rule 'r': 'expect.schema' must not be empty"),
        ("validate: {checksums: ''}", "c/{path}.txt", "5:16: rule 'r': 'validate.checksums' must not be"),
    ],
    ids=["matrix-path", "matrix-in", "empty-expect-schema", "empty-checksums"],
)
def test_published_schema_refuses_what_batchit_refuses(
    project: Project, line: str, output: str, error: str
) -> None:
    """An editor must not show green for a config batchit stops at, where a schema can tell."""
    text = (
        f"version: 1\nrules:\n  r:\n    inputs: [src/*.txt]\n    {line}\n    output: '{output}'\n"
        "    steps: [file.copy: {}]\n"
    )
    project.write({"src/a.txt": "a\n"})
    project.config(text)
    result = project.run("plan")
    assert result.code == 2, result.describe()
    assert f"error: batchit.yaml:{error}" in result.stderr, result.describe()
    schema = json.loads((REPO / "batchit.schema.json").read_text(encoding="utf-8"))
    document = yaml.load(text, Loader=Yaml12Loader)  # noqa: S506
    assert not jsonschema.Draft202012Validator(schema).is_valid(document)
