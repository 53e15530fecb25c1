"""`load_config` on real files: defaults, typed placeholders, flags, presets, rule order, the hash."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import Project

from batchit.config import load_config
from batchit.errors import ConfigError
from batchit.model import Aggregate, Config, Retry


def load(root: Path, text: str, **files: str) -> Config:
    """Write `batchit.yaml` (dedented) and other files under `root`, then load the config."""
    for rel, content in {"batchit.yaml": text, **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content), encoding="utf-8")
    return load_config(root)


MINIMAL = """\
rules:
  copy:
    inputs: ["src/**/*.txt"]
    output: "{path}.txt"
    steps: [file.copy: {}]
"""


def test_defaults_of_a_minimal_config(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert (config.root, config.file, config.out) == (tmp_path.resolve(), "batchit.yaml", "_build")
    assert (config.jobs, config.durability, config.cache_max_size, config.runs_keep) == (
        None,
        "fast",
        2 * 10**9,
        20,
    )
    assert (config.flags, config.alerts, config.provenance) == ({}, None, True)
    rule = config.rules["copy"]
    assert (rule.globs, rule.from_rules, rule.matrix, rule.aggregate, rule.retry) == (
        ("src/**/*.txt",),
        (),
        (),
        None,
        Retry(),
    )


def test_config_file_outside_the_root_is_shown_as_given(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.yaml").write_text(textwrap.dedent(MINIMAL))
    (tmp_path / "root").mkdir()
    config = load_config(tmp_path / "root", str(tmp_path / "elsewhere.yaml"))
    assert config.file == str(tmp_path / "elsewhere.yaml")


def test_sizes_are_decimal_or_binary(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        cache: {max_size: 2GiB}
        rules:
          copy:
            inputs: ["*.txt"]
            output: "{path}.txt"
            validate: {max_size: 20MB, min_size: 1KiB}
            expect: {max_size: 1.5 MB, contains: "<html"}
            steps: [file.copy: {}]
        """,
    )
    rule = config.rules["copy"]
    assert config.cache_max_size == 2 * 2**30
    assert rule.validate == {"max_size": 20 * 10**6, "min_size": 1024}
    assert rule.expect == {"max_size": 1_500_000, "contains": ["<html"]}


def test_on_yes_off_are_strings_and_only_true_false_are_booleans(tmp_path: Path) -> None:
    config = load(tmp_path, "flags: {mode: on, answer: yes, off: off, strict: false, level: 010}\n" + MINIMAL)
    assert config.flags == {"mode": "on", "answer": "yes", "off": "off", "strict": False, "level": 10}


def test_flag_overrides_are_yaml_scalars_of_the_declared_kind(tmp_path: Path) -> None:
    """A string flag takes the text as written: `--flag label=010` is '010', not the number 10."""
    flags = "flags: {watermark: true, size: 1, ratio: 0.5, label: web}\n"
    (tmp_path / "batchit.yaml").write_text(textwrap.dedent(flags + MINIMAL))
    overrides = {"watermark": "false", "size": "0x10", "ratio": "2", "label": "010"}
    config = load_config(tmp_path, flag_overrides=overrides)
    assert config.flags == {"watermark": False, "size": 16, "ratio": 2, "label": "010"}


@pytest.mark.parametrize(
    ("override", "message", "fix"),
    [
        pytest.param(
            {"watermak": "true"}, "--flag watermak: unknown flag", "did you mean 'watermark'?", id="unknown"
        ),
        pytest.param(
            {"watermark": "off"}, "is true or false, and 'off' is neither", "--flag watermark=false", id="off"
        ),
        pytest.param(
            {"level": "abc"}, "'level' is a number (3), and 'abc' is not", "--flag level=3", id="number"
        ),
    ],
)
def test_bad_flag_override_is_a_config_error(
    tmp_path: Path, override: dict[str, str], message: str, fix: str
) -> None:
    (tmp_path / "batchit.yaml").write_text(textwrap.dedent("flags: {watermark: true, level: 3}\n" + MINIMAL))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, flag_overrides=override)
    assert message in caught.value.message
    assert caught.value.hint is not None and fix in caught.value.hint


def test_a_flag_override_in_a_config_without_flags_says_to_declare_it(project: Project) -> None:
    """`--flag` changes a declared flag: with none declared, the fix is to declare it."""
    project.write({"src/a.txt": "a\n", "batchit.yaml": MINIMAL})
    result = project.run("build", "--flag", "loud=true", "--no-progress")
    assert result.code == 2, result.describe()
    assert "error: batchit.yaml: --flag loud: unknown flag" in result.stderr, result.describe()
    assert "fix: declare it in batchit.yaml (flags: {loud: true}), then --flag changes it" in result.stderr
    assert project.snapshot(".batchit", "_build") == {}


def test_matrix_placeholder_keeps_its_type_when_params_are_checked(tmp_path: Path) -> None:
    text = """\
        rules:
          trim:
            inputs: ["*.txt"]
            matrix: {n: [1, 2], label: [a]}
            output: "{path}-{n}-{label}.txt"
            steps: [text.replace: {pattern: x, replacement: "{label}", count: "{n}"}]
    """
    config = load(tmp_path, text)
    assert config.rules["trim"].steps[0].params == {"pattern": "x", "replacement": "{label}", "count": "{n}"}
    with pytest.raises(ConfigError, match=r"parameter 'count' must be an integer, not a string \('a'\)"):
        load(tmp_path, text.replace('count: "{n}"', 'count: "{label}"'))


def test_path_and_runtime_placeholders_are_allowed_in_params(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        rules:
          stamp:
            inputs: ["*.txt"]
            output: "{path}.txt"
            steps:
              - shell: {argv: [cat, "{in}"]}
              - text.replace: {pattern: x, replacement: "{stem}.{ext}", when: "input.ext == 'txt'"}
        """,
    )
    assert config.rules["stamp"].steps[1].when == "input.ext == 'txt'"
    assert "when" not in config.rules["stamp"].steps[1].params


def test_partition_names_are_placeholders_of_an_aggregate(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        rules:
          days:
            inputs: ["logs/*.log"]
            aggregate: {partition: '(?P<day>\\d{4}-\\d{2}-\\d{2})'}
            output: "daily/{day}.log"
            steps: [shell: {argv: [echo, "{day}"]}]
          dirs:
            inputs: ["logs/**/*.log"]
            aggregate: {by: "{dir}"}
            output: "{dir}/index.txt"
            steps: [cdn.manifest: {}]
        """,
    )
    assert config.rules["days"].aggregate == Aggregate(partition=r"(?P<day>\d{4}-\d{2}-\d{2})")
    assert config.rules["dirs"].aggregate == Aggregate(by="{dir}")


def test_resources_default_to_io_only_when_every_step_is_io(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        rules:
          run: {inputs: ["*.txt"], output: "{path}", steps: [shell: {argv: ["true"]}]}
          copy: {inputs: ["*.txt"], output: "{path}.c", steps: [text.load: {}, file.copy: {}]}
          mixed: {inputs: ["*.md"], output: "{path}.h", steps: [shell: {argv: ["true"]}, markdown.render: {}]}
          pinned: {inputs: ["*.md"], output: "{path}.x", resources: io, steps: [file.copy: {}]}
        """,
    )
    assert [rule.resources for rule in config.rules.values()] == ["io", "cpu", "cpu", "io"]


def test_rules_come_after_the_rules_they_read_from(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        rules:
          site: {inputs: {rule: pages}, aggregate: true, output: index.html, steps: [cdn.manifest: {}]}
          notes: {inputs: ["*.txt"], output: "{path}", steps: [file.copy: {}]}
          pages: {inputs: ["*.md"], output: "{path}.html", steps: [file.copy: {}]}
        """,
    )
    assert list(config.rules) == ["pages", "site", "notes"]


def test_output_and_paths_are_normalised(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        out: ./site//out/
        rules:
          copy:
            inputs: [./src/*.txt]
            deps: [./a.txt]
            output: ./img//{path}.txt
            steps: [file.copy: {}]
        """,
    )
    rule = config.rules["copy"]
    assert (config.out, rule.globs, rule.deps, rule.output) == (
        "site/out",
        ("src/*.txt",),
        ("a.txt",),
        "img/{path}.txt",
    )


PRESETS = """\
    presets:
      pages:
        params: {limit: 2}
        inputs: ["${src}"]
        output: "${prefix}/{path}.html"
        concurrency: "${limit}"
        steps:
          - text.replace: {pattern: "$${env:X}", replacement: "${prefix}-${limit}"}
"""


def test_preset_fills_typed_params_and_rule_keys_override(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        include: [presets/site.yaml]
        rules:
          docs:
            preset: pages
            with: {src: "docs/*.md", prefix: site}
            output: "other/{path}.htm"
        """,
        **{"presets/site.yaml": PRESETS},
    )
    docs = config.rules["docs"]
    assert (docs.globs, docs.output, docs.concurrency) == (("docs/*.md",), "other/{path}.htm", 2)
    assert docs.steps[0].params == {"pattern": "${env:X}", "replacement": "site-2"}


def test_preset_param_without_a_value_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            "include: [presets/site.yaml]\nrules:\n  docs: {preset: pages, with: {src: '*.md'}}\n",
            **{"presets/site.yaml": PRESETS},
        )
    assert str(caught.value).startswith(
        "batchit.yaml:3:10: rule 'docs': preset 'pages' needs a value for ${prefix}"
    )


def test_preset_with_unknown_param_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="preset 'pages' has no parameter 'prefx'") as caught:
        load(
            tmp_path,
            "include: [presets/site.yaml]\nrules:\n  docs: {preset: pages, with: {src: a, prefx: c}}\n",
            **{"presets/site.yaml": PRESETS},
        )
    assert caught.value.hint == "did you mean 'prefix'?"


def test_bundled_markdown_pages_preset(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        include: [batchit:pages]
        rules:
          pages: {preset: markdown_pages, with: {template: templates/page.html.j2}}
        """,
    )
    pages = config.rules["pages"]
    assert (pages.globs, pages.output) == (("pages/**/*.md",), "{path}.html")
    assert [step.operator for step in pages.steps] == ["text.load", "markdown.render", "template.render"]
    assert pages.steps[2].params == {"template": "templates/page.html.j2"}


def test_config_hash_covers_included_files(tmp_path: Path) -> None:
    text = "include: [presets/site.yaml]\nrules:\n  docs: {preset: pages, with: {src: a, prefix: b}}\n"
    first = load(tmp_path, text, **{"presets/site.yaml": PRESETS}).config_hash
    again = load(tmp_path, text, **{"presets/site.yaml": PRESETS}).config_hash
    changed = load(tmp_path, text, **{"presets/site.yaml": PRESETS + "\n# edited\n"}).config_hash
    assert first == again != changed
