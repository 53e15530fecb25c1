"""Configs no user means but any user can write (found by fuzzing): each is a config error, exit 2,
naming the file, the line, the rule and a fix, with no traceback and nothing written (SPEC section 2).
"""

from __future__ import annotations

import pytest
from conftest import ConfigMistake as Case
from conftest import Project, assert_refused

from batchit.config.yaml12 import MAX_DEPTH

HEAD = """\
version: 1
rules:
  pages:
    inputs: ["src/*.txt"]
"""
"""A config up to the rule `pages`, which reads src/*.txt; a case adds the rest of the rule."""

COPY = HEAD + '    output: "{path}.txt"\n    steps: [file.copy: {}]\n'
"""A valid config, for cases that add something after it."""


def steps(*lines: str) -> str:
    """The rule `pages` writing `{path}.html` with these steps, one YAML flow mapping each."""
    return HEAD + '    output: "{path}.html"\n    steps:\n' + "".join(f"      - {line}\n" for line in lines)


def nested(opening: str, closing: str, levels: int = 2000) -> str:
    """A value nested `levels` deep in flow style, as a fuzzer writes it."""
    return opening * levels + "1" + closing * levels


def block_nested(levels: int = 2000) -> str:
    """A flag value nested `levels` deep in block style: one indented mapping per line."""
    return (
        "flags:\n" + "".join(f"{'  ' * level}a:\n" for level in range(1, levels)) + "  " * levels + "b: 1\n"
    )


DEEP = f"lists and mappings nested more than {MAX_DEPTH} levels deep"

CASES = [
    Case(
        "deep_flow_sequence",
        COPY + f"flags: {{x: {nested('[', ']')}}}\n",
        "batchit.yaml:7:",
        DEEP,
        "flatten it",
        None,
    ),
    Case(
        "deep_flow_mapping",
        COPY + f"flags: {{x: {nested('{a: ', '}')}}}\n",
        "batchit.yaml:7:",
        DEEP,
        "flatten it",
        None,
    ),
    Case("deep_block_mapping", COPY + block_nested(), "batchit.yaml:106:", DEEP, "flatten it", None),
    Case(
        "control_character_in_a_comment",
        COPY + "# a comment with a BEL \a in it\n",
        "batchit.yaml:7:24",
        "invalid YAML: character U+0007 is not allowed, not even in a comment",
        'write it as the escape "\\x07"',
        None,
    ),
    Case(
        "nul_byte_in_an_included_file",
        "version: 1\ninclude: [presets/p.yaml]\n" + COPY.removeprefix("version: 1\n"),
        "presets/p.yaml:2:5",
        "invalid YAML: character U+0000 is not allowed",
        'write it as the escape "\\x00"',
        None,
        {"presets/p.yaml": b"presets: {}\n# a \x00\n"},
    ),
    Case(
        "lone_surrogate_escape",
        HEAD + '    output: "{path}-\\ud800.txt"\n    steps: [file.copy: {}]\n',
        "batchit.yaml:5:13",
        "\\ud800 is half of a UTF-16 surrogate pair, not a character",
        "write the character itself",
        None,
    ),
    Case(
        "lone_surrogate_in_a_key",
        COPY + 'flags: {"\\udc80": 1}\n',
        "batchit.yaml:7:9",
        "\\udc80 is half of a UTF-16 surrogate pair",
        "write the character itself",
        None,
    ),
    Case(
        "nul_in_out",
        COPY + 'out: "_b\\0uild"\n',
        "batchit.yaml:7:1",
        "out '_b\\x00uild' contains a NUL character",
        "remove the \\0",
        None,
    ),
    Case(
        "nul_in_a_matrix_value_used_in_output",
        HEAD + '    matrix: {v: [a, "b\\0c"]}\n    output: "{path}-{v}.txt"\n    steps: [file.copy: {}]\n',
        "batchit.yaml:5:",
        "matrix value 'b\\x00c' of {v}, used in output, contains a NUL character",
        "remove the \\0",
    ),
    Case(
        "nul_in_a_template_path",
        steps("text.load: {}", 'template.render: {template: "t\\0.j2"}'),
        "batchit.yaml:8:",
        "step 2 (template.render) parameter 'template' contains a NUL character",
        "remove the \\0",
    ),
    Case(
        "nul_in_a_matrix_value_used_in_a_template_path",
        HEAD
        + '    matrix: {t: ["a\\0.j2"]}\n    output: "{path}-{t}.html"\n'
        + '    steps: [text.load: {}, template.render: {template: "{t}"}]\n',
        "batchit.yaml:7:",
        "parameter 'template' contains a NUL character (\\0): 'a\\x00.j2'",
        "remove the \\0",
    ),
    Case(
        "nul_in_expect_schema",
        HEAD + '    output: "{path}.txt"\n    expect: {schema: "s\\0.json"}\n    steps: [file.copy: {}]\n',
        "batchit.yaml:6:",
        "expect.schema 's\\x00.json' contains a NUL character",
        "remove the \\0",
    ),
    Case(
        "nul_in_an_input_glob",
        HEAD.replace("src/*.txt", "src/\\0*.txt") + '    output: "{path}.txt"\n    steps: [file.copy: {}]\n',
        "batchit.yaml:4:",
        "contains a NUL character",
        "remove the \\0",
    ),
    Case(
        "over_long_out",
        COPY + f"out: {'x' * 300}\n",
        "batchit.yaml:7:1",
        "has a name of 300 bytes, longer than file systems take",
        "at most 255 bytes",
        None,
    ),
    Case(
        "out_is_a_file",
        COPY + "out: notes.txt\n",
        "batchit.yaml:7:1",
        "out 'notes.txt' cannot be a folder: notes.txt is a file",
        "name a folder for the outputs",
        None,
        {"notes.txt": "mine\n"},
    ),
    Case(
        "out_under_a_file",
        COPY + "out: notes.txt/site\n",
        "batchit.yaml:7:1",
        "out 'notes.txt/site' cannot be a folder: notes.txt is a file",
        "name a folder for the outputs",
        None,
        {"notes.txt": "mine\n"},
    ),
    Case(
        "space_after_out",
        COPY + 'out: "_build "\n',
        "batchit.yaml:7:1",
        "out '_build ' has whitespace at the start or end of a folder name",
        "write out: _build (a folder named '_build ' looks like '_build'",
        None,
    ),
    Case(
        "tab_before_a_folder_of_out",
        COPY + 'out: "site/\\tpublic"\n',
        "batchit.yaml:7:1",
        "out 'site/\\tpublic' has whitespace at the start or end of a folder name",
        "write out: site/public",
        None,
    ),
    Case(
        "over_long_include",
        f"version: 1\ninclude: [{'p' * 300}.yaml]\n" + COPY.removeprefix("version: 1\n"),
        "batchit.yaml:2:11",
        "has a name of 305 bytes, longer than file systems take",
        "at most 255 bytes",
        None,
    ),
    Case(
        "text_replace_count_too_large",
        steps("text.load: {}", 'text.replace: {pattern: o, replacement: "0", count: 99999999999999999999}'),
        "batchit.yaml:8:",
        "parameter 'count' must be at most 2147483647, not 99999999999999999999",
        "at most this many matches",
    ),
    Case(
        "shell_timeout_too_large",
        steps('shell: {argv: [cat, "{in}"], timeout: 1e308}'),
        "batchit.yaml:7:",
        "parameter 'timeout' must be at most 604800, not 1e+308",
        "a week at most",
    ),
    Case(
        "watermark_margin_too_large",
        steps("image.load: {}", "image.watermark: {text: hi, margin: 99999999999999999999}"),
        "batchit.yaml:8:",
        "parameter 'margin' must be at most 2147483647, not 99999999999999999999",
        "Distance in pixels",
    ),
    Case(
        "template_is_a_folder",
        steps("text.load: {}", "template.render: {template: templates}"),
        "batchit.yaml:8:",
        "step 2 (template.render) names templates, which is a directory, not a file",
        "name a file",
        files={"templates/t.j2": "{{ content }}"},
    ),
    Case(
        "template_under_a_file",
        steps("text.load: {}", "template.render: {template: dep.cfg/t.j2}"),
        "batchit.yaml:8:",
        "step 2 (template.render) names dep.cfg/t.j2, which has a file where its path needs a folder",
        "name a file",
        files={"dep.cfg": "x\n"},
    ),
    Case(
        "output_inside_the_manifest_copy_name",
        HEAD + "    aggregate: true\n    output: batchit-manifest.json/x\n    steps: [cdn.manifest: {}]\n",
        "batchit.yaml:6:",
        "output 'batchit-manifest.json/x' is inside batchit-manifest.json, a name reserved for batchit's "
        "manifest copy",
        "choose another output",
    ),
    Case(
        "output_inside_the_manifest_copy_name_by_a_matrix_value",
        HEAD + '    matrix: {v: [batchit-manifest.json.sig]}\n    output: "{v}/{path}"\n'
        "    steps: [file.copy: {}]\n",
        "batchit.yaml:3",
        "output 'batchit-manifest.json.sig/a' is inside batchit-manifest.json.sig, a name reserved",
        "choose another output",
    ),
    Case(
        "matrix_key_named_like_a_shell_placeholder",
        HEAD + '    matrix: {out: [a, b]}\n    output: "{out}/{path}.txt"\n'
        '    steps: [shell: {argv: [cp, "{in}", "{out}"]}]\n',
        "batchit.yaml:5",
        "matrix key 'out' is reserved",
        "rename it",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_config_mistake_exits_2_with_location_rule_and_fix(project: Project, case: Case) -> None:
    assert_refused(project, case, {"src/a.txt": "hello\n"})


@pytest.mark.parametrize("command", ["plan", "build", "clean", "reconcile"])
def test_every_command_that_reads_the_config_refuses_a_control_character(
    project: Project, command: str
) -> None:
    project.write({"batchit.yaml": COPY + "# \x07\n", "src/a.txt": "hello\n"})
    result = project.run(command)
    assert result.code == 2, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert "batchit.yaml:7:3: invalid YAML: character U+0007 is not allowed" in result.stderr


def test_nesting_below_the_limit_builds(project: Project) -> None:
    """The limit leaves room: a parameter nested just below it goes through every later step (the
    schema checks, the action key, the worker) without hitting Python's recursion limit."""
    levels = MAX_DEPTH - 7  # root, rules, pages, steps, the step, its parameters, the innermost value
    project.write(
        {
            "batchit.yaml": steps(
                f'python: {{function: "tools:same", version: "1", deep: {nested("[", "]", levels)}}}'
            ),
            "tools.py": "def same(value, ctx, **params):\n    return value\n",
            "src/a.txt": "hello\n",
        }
    )
    project.build()
    assert project.read("_build/a.html") == "hello\n"
    assert project.run("build", "--no-progress", "--force").code == 0


AGGREGATE = HEAD + "    aggregate: true\n    output: all.txt\n    steps:\n"
"""The rule `pages` as one aggregate job over src/*.txt writing all.txt; a case adds its steps."""

INPUT_MISTAKES = [
    Case(
        "aggregate_starting_with_a_one_file_step",
        AGGREGATE + "      - text.load: {}\n",
        "batchit.yaml:8:9",
        "step 1 (text.load) takes one input file, but gets the list of its input files (an aggregate)",
        "start with a step that takes the list: cdn.manifest, data.load, python, shell, template.render",
    ),
    Case(
        "aggregate_copying_its_files",
        AGGREGATE + "      - file.copy: {}\n",
        "batchit.yaml:8:9",
        "step 1 (file.copy) takes one input file, but gets the list",
        "or remove `aggregate:` for one job per input",
    ),
    Case(
        "image_step_without_image_load",
        steps("image.resize: {width: 10}", "image.save: {format: png}"),
        "batchit.yaml:7:9",
        "step 1 (image.resize) needs a value an earlier step makes, but gets its input file",
        "put image.load before it",
    ),
    Case(
        "record_step_without_data_load",
        steps('http.enrich: {url: "http://127.0.0.1:9/{id}"}', "data.dump: {format: json}"),
        "batchit.yaml:7:9",
        "step 1 (http.enrich) needs a value an earlier step makes, but gets its input file",
        "put a step that reads the input before it: cdn.manifest, data.load,",
    ),
    Case(
        "a_conditional_first_step_hands_the_input_on",
        "version: 1\nflags: {parse: true}\n"
        + AGGREGATE.removeprefix("version: 1\n")
        + "      - data.load: {when: flags.parse}\n      - data.dump: {format: json}\n",
        "batchit.yaml:10:9",
        "step 2 (data.dump) needs a value an earlier step makes, but gets the list of its input files "
        "(an aggregate) when the `when:` of the steps before it skips them",
        "put data.load before it, or remove the `when:` before it",
    ),
]


ENDING_MISTAKES = [
    Case(
        "image_steps_without_image_save",
        steps("image.load: {}", "image.resize: {width: 10}"),
        "batchit.yaml:8:9",
        "step 2 (image.resize) ends the steps, but what it makes cannot be written (only bytes or text can)",
        "end the steps with image.save",
    ),
    Case(
        "a_conditional_last_step_leaves_a_picture",
        "version: 1\nflags: {save: false}\n"
        + steps("image.load: {}", "image.save: {format: png, when: flags.save}").removeprefix("version: 1\n"),
        "batchit.yaml:8:9",
        "step 1 (image.load) ends the steps when the `when:` of the steps after it skips them, but what "
        "it makes cannot be written",
        "end the steps with image.save, or remove the `when:` after it",
    ),
    Case(
        "an_enriched_record_never_dumped",
        steps("data.load: {}", 'http.enrich: {url: "http://127.0.0.1:9/{id}"}'),
        "batchit.yaml:8:9",
        "step 2 (http.enrich) ends the steps, but what it makes cannot be written",
        "end the steps with data.dump",
    ),
    Case(
        "a_loaded_record_never_dumped",
        steps("data.load: {format: json}"),
        "batchit.yaml:7:9",
        "step 1 (data.load) ends the steps, but what it makes cannot be written (only bytes or text can)",
        "end the steps with data.dump",
    ),
    Case(
        "a_masked_record_never_dumped",
        steps("data.load: {format: json}", "data.mask: {fields: [email]}"),
        "batchit.yaml:8:9",
        "step 2 (data.mask) ends the steps, but what it makes cannot be written",
        "end the steps with data.dump",
    ),
    Case(
        "a_validated_record_never_dumped",
        steps("data.load: {format: json}", "data.validate: {schema: src/a.txt}"),
        "batchit.yaml:8:9",
        "step 2 (data.validate) ends the steps, but what it makes cannot be written",
        "end the steps with data.dump",
    ),
]


@pytest.mark.parametrize(
    "case", INPUT_MISTAKES + ENDING_MISTAKES, ids=[case.id for case in INPUT_MISTAKES + ENDING_MISTAKES]
)
@pytest.mark.parametrize("command", ["plan", "build"])
def test_steps_every_job_would_fail_on_are_refused_as_the_config_loads(
    project: Project, case: Case, command: str
) -> None:
    """A step that cannot take what it gets (an aggregate's list handed to text.load, a file to
    image.resize), or a last step whose value cannot be written (a picture, a record): every job
    would fail on it at run time, and the last two would quarantine every input, which is not at
    fault. Refused before anything is built, exit 2, by `plan` as by `build`."""
    project.write({"batchit.yaml": case.config, "src/a.txt": "hello\n", "src/b.txt": "world\n"})
    result = project.run(command, *(["--no-progress"] if command == "build" else []))
    assert result.code == 2, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert f"error: {case.where}: rule 'pages': {case.message}" in result.stderr, result.describe()
    assert case.fix in result.stderr.split("fix:", 1)[1], result.describe()
    assert project.snapshot(".batchit", "_build") == {}


def test_steps_that_take_the_jobs_input_as_it_is_given_still_build(project: Project) -> None:
    """The check refuses only what cannot work: an aggregate starting with data.load (or a step
    skipped in favour of one that takes the files) builds."""
    project.write(
        {
            "batchit.yaml": "version: 1\nflags: {fancy: false}\n"
            + AGGREGATE.removeprefix("version: 1\n").replace("all.txt", "all.json")
            + "      - template.render: {template: t.j2, when: flags.fancy}\n"
            + "      - data.load: {format: json}\n      - data.dump: {format: json, indent: 0}\n",
            "t.j2": "{{ items | length }}",
            "src/a.txt": "1\n",
            "src/b.txt": "2\n",
        }
    )
    project.build()
    assert project.read("_build/all.json") == "[1,2]\n"
