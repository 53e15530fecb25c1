"""`batchit.yaml` errors through the real command: exit 2, file:line, the rule, a fix, nothing written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import ConfigMistake as Case
from conftest import Project, assert_refused

from batchit.config import load_config
from batchit.errors import ConfigError

RULE_HEAD = """\
version: 1
rules:
  pages:
    inputs: ["pages/**/*.md"]
"""


def rule(body: str) -> str:
    """A config whose rule `pages` reads Markdown files and has `body` as its other keys."""
    return RULE_HEAD + textwrap.indent(textwrap.dedent(body), "    ")


ONE_RULE = "rules:\n  pages: {inputs: ['*.md'], output: '{path}', steps: [file.copy: {}]}\n"
"""A valid `rules:` section, for cases about the top-level keys."""


CASES = [
    Case("bad_yaml_syntax", "version: 1\nrules: [\n", "batchit.yaml:3", "invalid YAML", "YAML syntax", None),
    Case(
        "tab_for_indentation",
        "version: 1\nrules:\n\tpages: {}\n",
        "batchit.yaml:3:1",
        "found character '\\t' that cannot start any token",
        "replace the tab with spaces",
        None,
    ),
    Case(
        "duplicate_key",
        rule('output: "{path}.html"\nsteps: [text.load: {}]\noutput: "{path}.htm"\n'),
        "batchit.yaml:7:5",
        "duplicate key 'output' (lines 5 and 7)",
        "remove one",
        None,
    ),
    Case(
        "unknown_top_level_key",
        "version: 1\nruels: {}\n",
        "batchit.yaml:2:1",
        "unknown key 'ruels'",
        "did you mean 'rules'?",
        None,
    ),
    Case(
        "unknown_rule_key_suggests",
        rule('ouput: "{path}.html"\nsteps: [text.load: {}]\n'),
        "batchit.yaml:5:5",
        "unknown key 'ouput'",
        "did you mean 'output'?",
    ),
    Case(
        "wrong_type",
        rule('output: "{path}.html"\nsteps: [text.load: {}]\nconcurrency: four\n'),
        "batchit.yaml:7:5",
        "'concurrency' must be an integer, not a string ('four')",
        "At most this many",
    ),
    Case(
        "missing_required_key",
        rule("steps: [text.load: {}]\n"),
        "batchit.yaml:3:3",
        "missing required key 'output'",
        "add 'output:'",
    ),
    Case(
        "version_not_1",
        "version: 2\nrules: {}\n",
        "batchit.yaml:1:1",
        "'version' must be 1, not 2",
        "format version",
        None,
    ),
    Case(
        "unknown_operator_suggests",
        rule('output: "{path}.html"\nsteps:\n  - text.lod: {}\n'),
        "batchit.yaml:7:9",
        "step 1: unknown operator 'text.lod'",
        "did you mean 'text.load'?",
    ),
    Case(
        "bad_operator_param_type",
        rule('output: "{path}.html"\nsteps:\n  - text.replace: {pattern: a, replacement: b, count: many}\n'),
        "batchit.yaml:7:",
        "step 1 (text.replace) parameter 'count' must be an integer, not a string ('many')",
        "at most this many matches",
    ),
    Case(
        "missing_operator_param",
        rule('output: "{path}.html"\nsteps:\n  - text.replace: {pattern: a}\n'),
        "batchit.yaml:7:",
        "step 1 (text.replace): missing required parameter 'replacement'",
        "add 'replacement:'",
    ),
    Case(
        "unknown_operator_param_suggests",
        rule('output: "{path}.html"\nsteps:\n  - text.replace: {patern: a, replacement: b}\n'),
        "batchit.yaml:7:",
        "step 1 (text.replace): unknown parameter 'patern'",
        "did you mean 'pattern'?",
    ),
    Case(
        "bad_regex_param",
        rule('output: "{path}.html"\nsteps:\n  - text.replace: {pattern: "(", replacement: b}\n'),
        "batchit.yaml:7:",
        "parameter 'pattern' is not a valid regex",
        "Python regular expression",
    ),
    Case(
        "cycle_between_rules",
        "version: 1\nrules:\n  a:\n    inputs: {rule: b}\n    aggregate: true\n    output: a.txt\n"
        "    steps: [cdn.manifest: {}]\n  b:\n    inputs: {rule: a}\n    aggregate: true\n    output: b.txt\n"
        "    steps: [cdn.manifest: {}]\n",
        "batchit.yaml:4:5",
        "cycle: a -> b -> a",
        "remove one of the {rule: ...} inputs",
        "a",
    ),
    Case(
        "rule_reads_itself",
        "version: 1\nrules:\n  pages:\n    inputs: [{rule: pages}]\n    output: '{path}.x'\n"
        "    steps: [file.copy: {}]\n",
        "batchit.yaml:4:15",
        "the rule reads its own outputs",
        "another rule",
    ),
    Case(
        "unknown_upstream_rule",
        "version: 1\nrules:\n  pages:\n    inputs: {rule: thumb}\n    output: '{path}.x'\n"
        "    steps: [file.copy: {}]\n  thumbs:\n    inputs: ['*.jpg']\n    output: '{path}.x'\n"
        "    steps: [file.copy: {}]\n",
        "batchit.yaml:4:14",
        "inputs name unknown rule 'thumb'",
        "did you mean 'thumbs'?",
    ),
    Case(
        "output_escapes_out_by_parent",
        rule('output: "../{path}.html"\nsteps: [text.load: {}]\n'),
        "batchit.yaml:5:5",
        "output '../{path}.html' escapes out: it names a parent folder (..)",
        "relative to out",
    ),
    Case(
        "output_escapes_out_absolute",
        rule('output: "/tmp/{path}.html"\nsteps: [text.load: {}]\n'),
        "batchit.yaml:5:5",
        "output '/tmp/{path}.html' escapes out: it is absolute",
        "relative to out",
    ),
    Case(
        "output_with_a_backslash",
        rule('output: "p\\\\{path}.html"\nsteps: [text.load: {}]\n'),
        "batchit.yaml:5:5",
        "escapes out: it holds a backslash (folders are separated by /)",
        "relative to out",
    ),
    Case(
        "input_escapes_project",
        "version: 1\nrules:\n  pages:\n    inputs: ['pages/*.md', '../secrets/*.txt']\n"
        "    output: '{path}.x'\n    steps: [file.copy: {}]\n",
        "batchit.yaml:4:28",
        "input '../secrets/*.txt' escapes the project",
        "relative to the project root",
    ),
    Case(
        "input_glob_inside_out",
        "version: 1\nrules:\n  pages:\n    inputs: ['pages/*.md', '_build/*.html']\n"
        "    output: '{path}.x'\n    steps: [file.copy: {}]\n",
        "batchit.yaml:4:28",
        "input '_build/*.html' starts inside _build/, where globs never match",
        "inputs: {rule: NAME}",
    ),
    Case(
        "input_glob_inside_state_dir",
        "version: 1\nrules:\n  pages:\n    inputs: ['./.batchit/keys/*']\n"
        "    output: '{path}.x'\n    steps: [file.copy: {}]\n",
        "batchit.yaml:4:14",
        "input '.batchit/keys/*' starts inside .batchit/, where globs never match",
        "never an input",
    ),
    Case(
        "out_holding_the_inputs",
        "version: 1\nout: pages\nrules:\n  pages:\n    inputs: ['pages/**/*.md']\n"
        "    output: '{path}.x'\n    steps: [file.copy: {}]\n",
        "batchit.yaml:5:14",
        "input 'pages/**/*.md' starts inside pages/",
        "move `out`",
    ),
    Case(
        "deps_glob_inside_out",
        rule('deps: [_build/site.css]\noutput: "{path}.x"\nsteps: [file.copy: {}]\n'),
        "batchit.yaml:5:",
        "deps '_build/site.css' starts inside _build/",
        "inputs: {rule: NAME}",
    ),
    Case(
        "python_parameter_named_like_an_argument",
        rule('output: "{path}.x"\nsteps: [python: {function: "m:f", version: "1", ctx: 3}]\n'),
        "batchit.yaml:6:",
        "step 1 (python): invalid name 'ctx'",
        "the function's first two arguments",
    ),
    Case(
        "unknown_placeholder_in_output",
        rule('output: "{pth}.html"\nsteps: [text.load: {}]\n'),
        "batchit.yaml:5:5",
        "unknown placeholder {pth} in output",
        "did you mean {path}?",
    ),
    Case(
        "with_without_a_preset",
        rule('output: "{path}.html"\nwith: {template: t.j2}\nsteps: [text.load: {}]\n'),
        "batchit.yaml:6:5",
        "'with' means nothing without 'preset'",
        "add 'preset:', or remove 'with:'",
    ),
    Case(
        "number_matrix_value_for_a_text_parameter",
        rule(
            'output: "{path}-{n}.html"\nmatrix: {n: [1, 2]}\n'
            'steps: [text.load: {}, text.replace: {pattern: a, replacement: "{n}"}]\n'
        ),
        "batchit.yaml:6:18",
        "step 2 (text.replace) parameter 'replacement' must be a string, not an integer (1)",
        "quote {n}'s values in matrix: ('1'), which makes them strings",
    ),
    Case(
        "number_matrix_value_in_a_list_of_text",
        rule('output: "{path}-{n}.txt"\nmatrix: {n: [1, 2]}\nsteps: [shell: {argv: [echo, "{n}"]}]\n'),
        "batchit.yaml:7:",
        "step 1 (shell) parameter 'argv[1]' must be a string, not an integer (1)",
        "quote {n}'s values in matrix: ('1'), which makes them strings",
    ),
    Case(
        "malformed_placeholder_in_output",
        rule('output: "{path.upper}.html"\nsteps: [text.load: {}]\n'),
        "batchit.yaml:5:5",
        "output '{path.upper}.html' holds a brace that is not part of a placeholder",
        "write {{ and }} for literal braces",
    ),
    Case(
        "unknown_placeholder_in_params",
        rule(
            'matrix: {width: [1, 2]}\noutput: "{path}-{width}.txt"\nsteps:\n'
            '  - text.load: {}\n  - text.replace: {pattern: x, replacement: "{widht}"}\n'
        ),
        "batchit.yaml:9:36",
        "step 2 (text.replace): unknown placeholder {widht}",
        "did you mean {width}?",
    ),
    Case(
        "key8_in_params",
        rule('output: "{key8}.txt"\nsteps:\n  - text.replace: {pattern: x, replacement: "{key8}"}\n'),
        "batchit.yaml:7:",
        "unknown placeholder {key8}",
        "only in output",
    ),
    Case(
        "matrix_of_too_many_combinations",
        rule(
            "matrix: {"
            + ", ".join(f"k{n}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" for n in range(8))
            + '}\noutput: "{path}'
            + "".join(f"-{{k{n}}}" for n in range(8))
            + '.txt"\nsteps: [file.copy: {}]\n'
        ),
        "batchit.yaml:5:",
        "the matrix makes 100,000,000 combinations (10 x 10 x 10 x 10 x 10 x 10 x 10 x 10), over 10,000",
        "use fewer values, or a rule per group of them",
    ),
    Case(
        "matrix_key_missing_from_output",
        rule('matrix: {width: [320, 640]}\noutput: "{path}.webp"\nsteps: [file.copy: {}]\n'),
        "batchit.yaml:6:5",
        "output does not use matrix key {width}: two jobs would write one output",
        "add {width} to output",
    ),
    Case(
        "output_without_input_placeholder",
        rule("output: all.html\nsteps: [file.copy: {}]\n"),
        "batchit.yaml:5:5",
        "every input would write one output",
        "add {path}",
    ),
    Case(
        "path_placeholder_in_aggregate_output",
        rule('aggregate: true\noutput: "{dir}/index.html"\nsteps: [cdn.manifest: {}]\n'),
        "batchit.yaml:6:5",
        "unknown placeholder {dir} in output",
        "aggregate: {by: '{dir}'}",
    ),
    Case(
        "out_outside_project",
        "version: 1\nout: ../site\n" + ONE_RULE,
        "batchit.yaml:2:1",
        "out '../site' is absolute or names a parent (..)",
        "_build",
        None,
    ),
    Case(
        "out_inside_state_dir",
        "version: 1\nout: .batchit/out\n" + ONE_RULE,
        "batchit.yaml:2:1",
        "out may not be inside .batchit",
        "_build",
        None,
    ),
    Case(
        "whole_float_cache_size",
        "version: 1\ncache: {max_size: 20.0}\n" + ONE_RULE,
        "batchit.yaml:2:9",
        "'cache.max_size' is not valid: 20.0",
        "no decimal point",
        None,
    ),
    Case(
        "whole_float_jobs",
        "version: 1\njobs: 2.0\n" + ONE_RULE,
        "batchit.yaml:2:1",
        "'jobs' is not valid: 2.0",
        "without a decimal point",
        None,
    ),
    Case(
        "whole_float_runs_keep",
        "version: 1\nruns: {keep: 2.0}\n" + ONE_RULE,
        "batchit.yaml:2:8",
        "'runs.keep' must be an integer, not a number (2.0)",
        "without a decimal point",
        None,
    ),
    Case(
        "whole_float_expect_size",
        rule('output: "{path}.x"\nexpect: {min_size: 1.0}\nsteps: [file.copy: {}]\n'),
        "batchit.yaml:6:",
        "'expect.min_size' is not valid: 1.0",
        "no decimal point",
    ),
    Case(
        "bad_class_in_input_glob",
        "version: 1\nrules:\n  pages: {inputs: ['pages/[z-a].md'], output: x, steps: [file.copy: {}]}\n",
        "batchit.yaml:3:",
        "input: invalid character class in glob 'pages/[z-a].md': bad character range z-a",
        "[a-z] (low to high)",
    ),
    Case(
        "bad_class_in_exclude_glob",
        rule('exclude: ["pages/[z-a]*"]\noutput: "{path}.x"\nsteps: [file.copy: {}]\n'),
        "batchit.yaml:5:",
        "exclude: invalid character class in glob",
        "[a-z] (low to high)",
    ),
    Case(
        "bad_class_in_deps_glob",
        rule('deps: ["pages/[b-a]*"]\noutput: "{path}.x"\nsteps: [file.copy: {}]\n'),
        "batchit.yaml:5:",
        "deps: invalid character class in glob",
        "[a-z] (low to high)",
    ),
    Case(
        "float_too_big_to_be_finite",
        "version: 1\nflags: {x: 1e400}\n" + ONE_RULE,
        "batchit.yaml:2:12",
        "1e400 is not a finite number",
        "write a finite number",
        None,
    ),
    Case(
        "missing_expect_schema_file",
        rule('output: "{path}.x"\nexpect: {schema: nope.json}\nsteps: [file.copy: {}]\n'),
        "batchit.yaml:3",
        "expect.schema names nope.json, which does not exist",
        "create the file or correct the path",
    ),
    Case(
        "missing_validate_checksums_file",
        rule('output: "{path}.x"\nvalidate: {checksums: SUMS}\nsteps: [file.copy: {}]\n'),
        "batchit.yaml:3",
        "validate.checksums names SUMS, which does not exist",
        "create the file or correct the path",
    ),
    Case(
        "unknown_markdown_extension",
        rule(
            'output: "{path}.html"\nsteps: [text.load: {}, markdown.render: {extensions: [toc, nosuchext]}]\n'
        ),
        "batchit.yaml:6:64",
        "step 2 (markdown.render) parameter 'extensions' names Markdown extension 'nosuchext', which is "
        "not installed",
        "install the package that provides it",
    ),
    Case(
        "unknown_markdown_extension_module",
        rule('output: "{path}.html"\nsteps: [markdown.render: {extensions: ["markdown.extensions.tok"]}]\n'),
        "batchit.yaml:6:44",
        "names Markdown extension 'markdown.extensions.tok', which is not installed",
        "install the package that provides it",
    ),
    Case(
        "python_module_missing",
        rule('output: "{path}.x"\nsteps: [python: {function: "tools.pages:parse", version: "1"}]\n'),
        "batchit.yaml:6",
        "step 1 (python): cannot import module tools.pages: No module named 'tools.pages'",
        "put tools/pages.py under the project root",
        files={"tools/__init__.py": ""},
    ),
    Case(
        "python_function_missing",
        rule('output: "{path}.x"\nsteps: [python: {function: "tools:prase", version: "1"}]\n'),
        "batchit.yaml:6",
        "step 1 (python): module tools (tools.py) defines no function prase",
        "correct the name in 'tools:prase'",
        files={"tools.py": "import re\n\ndef parse(value, ctx):\n    return value\n"},
    ),
    Case(
        "when_syntax_error",
        rule('output: "{path}.x"\nsteps:\n  - file.copy: {when: "flags.a and"}\n'),
        "batchit.yaml:7:",
        "step 1 (file.copy): invalid condition",
        "Jinja2 expression",
    ),
    Case(
        "when_reads_unknown_flag",
        "flags: {watermark: true}\n"
        + rule('output: "{path}.x"\nsteps:\n  - file.copy: {when: "flags.watermak"}\n'),
        "batchit.yaml:8:",
        "condition reads unknown flag 'watermak'",
        "did you mean 'watermark'?",
    ),
    Case(
        "when_writes_a_placeholder_in_a_string",
        rule(
            'matrix: {w: ["1", "2"]}\noutput: "{path}-{w}.x"\nsteps:\n'
            "  - file.copy: {when: \"'{w}' == '1'\"}\n"
        ),
        "batchit.yaml:8:21",
        "condition holds the placeholder {w} in a string, where nothing fills it",
        "read the matrix key as a variable: w == ..., not '{w}'",
    ),
    Case(
        "when_reads_unknown_input_attribute",
        rule('output: "{path}.x"\nsteps:\n  - file.copy: {when: "input.nope.x"}\n'),
        "batchit.yaml:7:",
        "condition reads unknown attribute 'input.nope'",
        "input has size, path and ext",
    ),
    Case(
        "presets_in_main_file",
        "version: 1\npresets: {}\nrules: {}\n",
        "batchit.yaml:2:1",
        "presets are allowed only in included files",
        "include:",
        None,
    ),
    Case(
        "unknown_preset",
        "version: 1\ninclude: [batchit:pages]\nrules:\n  pages: {preset: markdown_page}\n",
        "batchit.yaml:4:",
        "unknown preset 'markdown_page'",
        "did you mean 'markdown_pages'?",
    ),
    Case(
        "missing_include",
        "version: 1\ninclude: [presets/mine.yaml]\nrules:\n  pages: {preset: x}\n",
        "batchit.yaml:2:11",
        "included file 'presets/mine.yaml' not found",
        "relative to the project root",
        None,
    ),
    Case(
        "include_of_a_folder",
        "version: 1\ninclude: [presets]\nrules:\n  pages: {preset: x}\n",
        "batchit.yaml:2:11",
        "include 'presets' is a folder, not a file",
        "name the preset file in it, such as presets/mine.yaml",
        None,
        {"presets/mine.yaml": "presets: {}\n"},
    ),
    Case(
        "not_utf8_on_a_later_line",
        "",
        "batchit.yaml:3:6",
        "not valid UTF-8 at byte 17",
        "save it as UTF-8",
        None,
        {"batchit.yaml": b"version: 1\n\n# caf\xe9\n" + ONE_RULE.encode()},
    ),
    Case(
        "not_utf8_in_an_included_file",
        "version: 1\ninclude: [presets/mine.yaml]\nrules:\n  pages: {preset: x}\n",
        "presets/mine.yaml:2:1",
        "not valid UTF-8 at byte 12",
        "save it as UTF-8",
        None,
        {"presets/mine.yaml": b"presets: {}\n\xff\n"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_config_error_exits_2_with_location_rule_and_fix(project: Project, case: Case) -> None:
    assert_refused(project, case, {"pages/a.md": "# A\n"})


def test_missing_config_file_exits_2_with_a_fix(project: Project) -> None:
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert f"batchit.yaml: not found in {project.root}" in result.stderr
    assert "fix: run batchit in the project directory" in result.stderr
    assert project.snapshot(".batchit", "_build") == {}


def test_a_config_path_that_is_a_folder_exits_2_with_a_fix(project: Project) -> None:
    project.write({"conf/batchit.yaml": ONE_RULE})
    result = project.run("-f", "conf", "build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "error: conf: a folder, not a file" in result.stderr, result.describe()
    assert "fix: name the config file itself, such as -f conf/batchit.yaml" in result.stderr, (
        result.describe()
    )
    assert project.snapshot(".batchit", "_build") == {}


def test_error_leaves_previous_build_untouched(project: Project) -> None:
    project.write(
        {"pages/a.md": "# A\n", "batchit.yaml": rule('output: "{path}.txt"\nsteps: [file.copy: {}]\n')}
    )
    project.build()
    before = project.snapshot(".batchit", "_build")
    project.config(rule('output: "{path}.txt"\nsteps: [file.cpy: {}]\n'))
    assert project.run("build", "--no-progress").code == 2
    assert project.snapshot(".batchit", "_build") == before


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "mine.yaml").write_text("presets:\n  copy:\n    ouput: x\n")
    (tmp_path / "batchit.yaml").write_text(
        "version: 1\ninclude: [presets/mine.yaml]\nrules:\n  pages: {preset: copy}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value).startswith("presets/mine.yaml:3:5: preset 'copy': unknown key 'ouput'")
    assert "did you mean 'output'?" in str(caught.value)


def test_operator_that_cannot_be_imported_is_a_config_error(tmp_path: Path) -> None:
    from batchit.operators.registry import OperatorRegistry

    (tmp_path / "batchit.yaml").write_text(rule('output: "{path}"\nsteps: [x.broken: {}]\n'))
    registry = OperatorRegistry({"x.broken": "no_such_module_anywhere:Broken"})
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, registry=registry)
    assert str(caught.value).startswith(
        "batchit.yaml:6:13: rule 'pages': step 1: operator 'x.broken' cannot be loaded"
    )


FILLED_PER_JOB = [
    Case(
        "quality-from-the-stem",
        'version: 1\nrules:\n  pages:\n    inputs: ["in/*"]\n    output: "{stem}.webp"\n'
        '    steps:\n      - image.load: {}\n      - image.save: {format: webp, quality: "{stem}"}\n',
        "batchit.yaml:8",
        "parameter 'quality' ('{stem}') is 'a' for the input in/a.json",
        "narrow the rule's inputs",
    ),
    Case(
        "format-from-the-extension",
        'version: 1\nrules:\n  pages:\n    inputs: ["in/*"]\n    output: "{stem}.{ext}"\n'
        '    steps:\n      - data.load: {}\n      - data.dump: {format: "{ext}"}\n',
        "batchit.yaml:8",
        "parameter 'format' ('{ext}') is 'yml' for the input in/b.yml: 'yml' is not one of",
        "narrow the rule's inputs",
    ),
    Case(
        "mode-from-the-stem",
        'version: 1\nrules:\n  pages:\n    inputs: ["in/*.json"]\n    output: "{stem}.json"\n'
        "    steps:\n      - data.load: {}\n"
        '      - data.mask: {fields: [a], mode: "{stem}"}\n      - data.dump: {}\n',
        "batchit.yaml:8",
        "parameter 'mode' ('{stem}') is 'a' for the input in/a.json: 'a' is not one of ['redact', 'hash']",
        "narrow the rule's inputs",
    ),
]


@pytest.mark.parametrize("case", FILLED_PER_JOB, ids=[c.id for c in FILLED_PER_JOB])
def test_a_choice_a_per_job_placeholder_fills_is_checked_for_every_input(
    project: Project, case: Case
) -> None:
    """The load-time check sees `{ext}` only as a sample; each input's value is checked as it plans."""
    assert_refused(project, case, {"in/a.json": '{"a": 1}', "in/b.yml": "a: 1\n"})


def refusal(root: Path, config: str) -> str:
    """The message of the ConfigError that loading `config` (as batchit.yaml in `root`) raises."""
    (root / "batchit.yaml").write_text(config)
    with pytest.raises(ConfigError) as caught:
        load_config(root)
    return str(caught.value)


@pytest.mark.parametrize(
    ("code", "said"), [(0, "must be at least 1, not 0"), (300, "must be at most 255, not 300")]
)
def test_transient_exit_codes_are_codes_a_failing_command_can_exit_with(
    tmp_path: Path, code: int, said: str
) -> None:
    assert said in refusal(
        tmp_path,
        rule(
            f'output: "{{path}}"\nsteps: [shell: {{argv: [cat, "{{in}}"], transient_exit_codes: [{code}]}}]\n'
        ),
    )


@pytest.mark.parametrize(
    ("step", "said"),
    [
        (
            "image.watermark: {opacity: 0.3}",
            "step 2 (image.watermark) needs exactly one of 'text', 'image'\n  fix: add 'text:', or 'image:'",
        ),
        (
            "image.watermark: {text: hi, image: logo.png}",
            "exactly one of 'text', 'image'\n  fix: keep only one of 'text', 'image': they are alternatives",
        ),
        (
            "image.resize: {}",
            "(image.resize) needs at least one of 'width', 'height'\n  fix: add 'width:', or 'height:'",
        ),
        (
            "image.crop: {box: [0, 0, 1, 1], width: 3}",
            "needs exactly one of 'box', 'width' or 'height'\n  fix: keep only one of 'box', 'width'",
        ),
        # the alternative `width or height` inside crop's choice is not the whole choice
        (
            "image.crop: {gravity: top}",
            "needs exactly one of 'box', 'width' or 'height'\n  fix: add 'box:', or 'width:' or 'height:'",
        ),
        (
            "shell: {argv: [cat], transient_exit_codes: [0]}",
            "fix: Exit codes (1 to 255) that mean 'retry later'",
        ),
    ],
    ids=["watermark", "watermark-both", "resize", "crop", "crop-neither", "hint-of-the-enclosing-list"],
)
def test_a_step_missing_one_of_its_alternatives_is_told_which(tmp_path: Path, step: str, said: str) -> None:
    """The fix says which keys to add (or that only one of them may stay), not the operator's
    description."""
    assert said in refusal(tmp_path, rule(f'output: "{{path}}"\nsteps: [image.load: {{}}, {step}]\n'))


def test_a_worker_count_no_machine_can_start_is_a_config_error(tmp_path: Path) -> None:
    assert "'jobs' must be at most 1024, not 100000" in refusal(
        tmp_path, "version: 1\njobs: 100000\n" + ONE_RULE
    )


@pytest.mark.parametrize("key", ["backoff", "max_backoff"])
def test_a_retry_delay_longer_than_a_build_waits_is_a_config_error(tmp_path: Path, key: str) -> None:
    """A backoff of 1e308 seconds would sleep for ever on the first transient failure."""
    assert f"'retry.{key}' must be at most 300" in refusal(
        tmp_path,
        rule(f'output: "{{path}}"\nretry: {{attempts: 2, {key}: 1e308}}\nsteps: [file.copy: {{}}]\n'),
    )


@pytest.mark.parametrize("key", ["validate", "expect"])
def test_a_size_range_no_file_can_pass_is_a_config_error(tmp_path: Path, key: str) -> None:
    assert f"{key}.min_size (2KB) is over {key}.max_size (1KB)" in refusal(
        tmp_path,
        rule(f'output: "{{path}}"\n{key}: {{max_size: 1KB, min_size: 2KB}}\nsteps: [file.copy: {{}}]\n'),
    )


@pytest.mark.parametrize(
    ("top", "said"),
    [
        ("version: 1.0\n", "'version' must be an integer, not a number (1.0)"),
        ("version: 1\nalerts: {webhook: 'http://'}\n", "'alerts.webhook' is not valid: 'http://'"),
    ],
    ids=["version-with-a-decimal-point", "webhook-without-a-host"],
)
def test_a_top_level_value_that_only_looks_right_is_refused(tmp_path: Path, top: str, said: str) -> None:
    assert said in refusal(tmp_path, top + ONE_RULE)


def test_an_empty_list_of_accepted_extensions_is_refused(tmp_path: Path) -> None:
    assert "'validate.extensions' must not be empty" in refusal(
        tmp_path, rule('output: "{path}"\nvalidate: {extensions: []}\nsteps: [file.copy: {}]\n')
    )


@pytest.mark.parametrize(
    ("include", "said"),
    [
        ("[batchit.yaml]", "include 'batchit.yaml' is the config file itself"),
        ("[presets/my.yaml, ./presets//my.yaml]", "is the same file as include 'presets/my.yaml'"),
    ],
    ids=["the-config-itself", "one-file-twice"],
)
def test_including_a_file_twice_or_the_config_itself_says_so(tmp_path: Path, include: str, said: str) -> None:
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets/my.yaml").write_text(
        "presets:\n  copier: {output: '{path}', steps: [file.copy: {}]}\n"
    )
    assert said in refusal(tmp_path, f"version: 1\ninclude: {include}\n" + ONE_RULE)
