"""The reference docs stay true to the code: generated tables match the schemas, examples pass them."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from batchit.config.yaml12 import Yaml12Loader

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def make_operators() -> ModuleType:
    """docs/make_operators.py, imported from its path (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_operators", DOCS / "make_operators.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def yaml_blocks(name: str) -> list[Any]:
    """The fenced `yaml` blocks of a file under docs/, parsed as batchit reads YAML."""
    text = (DOCS / name).read_text(encoding="utf-8")
    return [
        yaml.load(block, Loader=Yaml12Loader)  # noqa: S506 - batchit's own safe YAML 1.2 loader
        for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    ]


def published_schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((REPO / "batchit.schema.json").read_text("utf-8")))


def test_operator_tables_are_generated_from_the_schemas() -> None:
    current = (DOCS / "operators.md").read_text(encoding="utf-8")
    assert make_operators().render(current) == current, "run: python docs/make_operators.py"


def test_operator_examples_pass_the_published_schema() -> None:
    rules: dict[str, Any] = {}
    for block in yaml_blocks("operators.md"):
        assert not set(block["rules"]) & set(rules), "example rule names must differ: they form one project"
        rules.update(block["rules"])
    published_schema().validate({"version": 1, "rules": rules})


def test_config_example_passes_the_published_schema() -> None:
    published_schema().validate(yaml_blocks("config.md")[-1])


# The command lines the docs show, checked against the real argument parser: a flag renamed in the
# code (or a typo in the docs) fails here instead of in a user's CI job.

SAMPLE_VALUES = {
    "N": "2",
    "DIR": "_sample",
    "NAME=VALUE": "drafts=true",
    "COUNT": "5",
    "FRACTION": "0.05",
    "ADDRESS": "tcp://127.0.0.1:8786",
    "RULE": "pages",
    "PATH": "a.html",
    "MANIFEST": "_build/batchit-manifest.json",
    "PUBKEY": "ci.pub",
    "RUN_ID": "20261129T150102123Z-3f9a1c",
    "MS": "100",
    "H": "127.0.0.1",
    "P": "8000",
}
"""A value for each metavariable the docs' synopses use (`-j N`, `--flag NAME=VALUE`, ...)."""


def command_lines(synopsis: str) -> list[list[str]]:
    """The argument lists a synopsis such as `--sample COUNT|FRACTION [--out DIR]` stands for: each
    optional `[...]` part with and without, each alternative of `a|b`, metavariables replaced by
    SAMPLE_VALUES and `...` (more of the same) dropped."""
    optional = re.search(r"\[([^\[\]]*)\]", synopsis)
    if optional:
        before, after = synopsis[: optional.start()], synopsis[optional.end() :]
        return command_lines(before + optional.group(1) + after) + command_lines(before + after)
    words = synopsis.replace("\\|", "|").replace("...", " ").split()
    lines: list[list[str]] = [[]]
    for word in words:
        choices = [
            re.sub(r"[A-Z][A-Z_]*(?:=[A-Z]+)?", lambda m: SAMPLE_VALUES[m.group()], c)
            for c in word.split("|")
        ]
        lines = [[*line, choice] for line in lines for choice in choices]
    return lines


def assert_parses(argv: list[str], where: str) -> None:
    """`batchit ARGV` is accepted by the real argument parser."""
    from batchit.cli.parser import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `batchit {shlex.join(argv)}` is refused by the argument parser")


def markdown_table(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with `header`, as lists of cells."""
    lines = text[text.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_every_command_of_the_readme_table_parses_as_written() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = markdown_table(readme, "| command | what it does |")
    assert len(rows) >= 14
    for row in rows:
        for synopsis in re.findall(r"`([^`]+)`", row[0]):
            for argv in command_lines(synopsis):
                assert_parses(argv, f"README command table, `{synopsis}`")


def test_every_build_flag_of_the_readme_table_parses_as_written() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = markdown_table(readme, "| flag | effect |")
    assert len(rows) >= 15
    for row in rows:
        for synopsis in re.findall(r"`([^`]+)`", row[0]):
            for argv in command_lines(synopsis):
                assert_parses(["build", *argv], f"README build flags, `{synopsis}`")
                if argv[0] != "--dry-run":  # watch "takes the build flags but --dry-run"
                    assert_parses(["watch", *argv], f"README build flags (for watch), `{synopsis}`")


def documented_command_lines() -> list[tuple[str, str]]:
    """Every `batchit ...` command line the README and docs/ show, as (file, arguments): the lines of
    their `sh` blocks, and inline code that runs a command with arguments (not `batchit watch: ...`
    output, nor a bare mention such as `batchit replay`); a pipe, a redirection or a comment cut off."""
    found = []
    for path in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
        shown = [(line, True) for block in blocks for line in block.splitlines()]
        shown += [(" ".join(span.split()), False) for span in re.findall(r"`(batchit [^`]+)`", text)]
        for line, whole in shown:
            words = re.split(r"\s[|>#]", line)[0].split()
            if words[:1] != ["batchit"] or words[1].endswith(":") or words[1].startswith("["):
                continue
            if whole or len(words) > 2:
                found.append((path.name, " ".join(words[1:])))
    return found


def test_every_batchit_command_line_in_the_docs_parses() -> None:
    lines = documented_command_lines()
    assert len(lines) >= 20
    for name, line in lines:
        for argv in command_lines(line):
            assert_parses(argv, name)


def test_readme_config_examples_pass_the_published_schema() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [
        yaml.load(block, Loader=Yaml12Loader)  # noqa: S506 - batchit's own safe YAML 1.2 loader
        for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    ]
    assert len(blocks) >= 3
    for block in blocks:
        published_schema().validate({"version": 1, **block})


BUNDLED_PRESETS = sorted((REPO / "rules").glob("*.yaml"))


def test_every_bundled_preset_file_and_preset_is_documented() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    config = (DOCS / "config.md").read_text(encoding="utf-8")
    assert len(BUNDLED_PRESETS) >= 4
    for path in BUNDLED_PRESETS:
        assert f"`batchit:{path.stem}`" in config, f"docs/config.md: `include` lists no batchit:{path.stem}"
        assert f"`rules/{path.name}`" in config, f"docs/config.md: the bundled preset files omit {path.name}"
        assert f"`include: [batchit:{path.stem}]`" in readme, f"README: the bundled presets omit {path.name}"
        for name in yaml.safe_load(path.read_text(encoding="utf-8"))["presets"]:
            assert re.search(rf"\b{name}\b", readme), f"README: the bundled presets omit {name} ({path.name})"


@pytest.mark.parametrize(
    "preset", [p for p in BUNDLED_PRESETS if "#   rules:" in p.read_text("utf-8")], ids=str
)
def test_the_example_in_a_bundled_preset_file_loads(preset: Path, tmp_path: Path) -> None:
    """The commented example at the top of rules/NAME.yaml, with `include: [batchit:NAME]`, is a
    config batchit loads: a parameter renamed in the preset fails here (an unknown `with:` name is
    an error)."""
    from batchit.config import load_config

    header = preset.read_text(encoding="utf-8").split("\npresets:")[0]
    example = header[header.index("#   rules:") :].split("\n#\n")[0]
    rules = textwrap.dedent("\n".join(line.removeprefix("#") for line in example.splitlines()))
    (tmp_path / "batchit.yaml").write_text(f"include: [batchit:{preset.stem}]\n{rules}\n", encoding="utf-8")
    config = load_config(tmp_path)
    assert config.rules


def test_config_reference_tables_list_exactly_the_schema_keys() -> None:
    """docs/config.md's top-level and rule key tables name every key the schema takes, and no other."""
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    schema = json.loads((REPO / "batchit.schema.json").read_text("utf-8"))
    rule = schema["properties"]["rules"]["additionalProperties"]["properties"]
    for section, keys in (("## Top-level keys", schema["properties"]), ("## Rule keys", rule)):
        rows = markdown_table(text[text.index(section) :], "| key | type | default | meaning |")
        assert {re.findall(r"`([^`]+)`", row[0])[0] for row in rows} == set(keys), section
