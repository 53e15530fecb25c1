"""Specifications of the first built-in operators, called directly on real files in a project directory.

Each test builds the value the engine would pass (an `InputFile`, a list of them for an aggregate, or
an earlier step's bytes) and a real `JobContext`, and pins down one behaviour of one operator.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import pickle
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import pytest
from conftest import process_gone, wait_until

from batchit.errors import PermanentError, RecipeError, TransientError
from batchit.operators.base import InputFile, JobContext, Operator
from batchit.operators.cdn import CdnManifest
from batchit.operators.code import PythonCall, ShellCommand
from batchit.operators.files import FileCopy
from batchit.operators.registry import BUILTIN_OPERATORS, load_target
from batchit.operators.template import TemplateRender
from batchit.operators.text import MarkdownRender, TextLoad, TextReplace

PY = sys.executable


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty project root, the directory operators resolve project-relative paths against."""
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what the `python` operator does to the interpreter: its sys.path entry and the modules."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(root: Path, files: dict[str, str | bytes]) -> None:
    """Write project files (text is dedented), creating their directories."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")


def infile(root: Path, rel: str, content: str | bytes) -> InputFile:
    """An input file written into the project, as the engine hands it to a pipeline."""
    write(root, {rel: content})
    return InputFile(rel, root / rel)


def job(root: Path, input: str | list[str] = "src/a.txt", output: str = "a.txt") -> JobContext:
    """A job context for a rule named `site`."""
    return JobContext(input=input, output=output, rule="site", key="ab" * 32, root=root)


# file.copy


def test_copy_passes_an_input_file_through_for_the_writer_to_stream(root: Path) -> None:
    source = infile(root, "src/a.bin", b"\x00\xff")
    assert FileCopy().run(source, job(root)) is source


def test_copy_returns_bytes_unchanged(root: Path) -> None:
    assert FileCopy().run(b"\x00\xff\xfe", job(root)) == b"\x00\xff\xfe"


# text.load and text.replace


def test_text_load_decodes_utf8(root: Path) -> None:
    assert TextLoad().run(infile(root, "src/a.txt", "héllo"), job(root)) == "héllo"


def test_text_load_rejects_invalid_utf8_naming_the_file(root: Path) -> None:
    with pytest.raises(PermanentError, match=r"src/bad\.txt is not valid utf-8"):
        TextLoad().run(infile(root, "src/bad.txt", b"ok \xff"), job(root))


def test_text_load_decodes_with_the_declared_encoding(root: Path) -> None:
    source = infile(root, "src/a.txt", "café".encode("latin-1"))
    assert TextLoad().run(source, job(root), encoding="latin-1") == "café"


class ReplaceCase(NamedTuple):
    params: dict[str, Any]
    expected: str


@pytest.mark.parametrize(
    "case",
    [
        ReplaceCase({"pattern": "o", "replacement": "0"}, "f00 b00"),
        ReplaceCase({"pattern": "o", "replacement": "0", "count": 3}, "f00 b0o"),
        ReplaceCase({"pattern": r"(\w+) (\w+)", "replacement": r"\2 \1"}, "boo foo"),
    ],
    ids=["all-by-default", "count-limits", "group-references"],
)
def test_replace_substitutes_regex_matches(root: Path, case: ReplaceCase) -> None:
    assert TextReplace().run("foo boo", job(root), **case.params) == case.expected


def test_replace_with_an_invalid_pattern_is_permanent(root: Path) -> None:
    with pytest.raises(PermanentError, match="bad pattern"):
        TextReplace().run("text", job(root), pattern="(", replacement="")


# markdown.render


def test_markdown_renders_a_heading_and_a_table(root: Path) -> None:
    text = "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    html = MarkdownRender().run(text, job(root))
    assert '<h1 id="title">Title</h1>' in html
    assert "<table>" in html and "<td>1</td>" in html


def test_markdown_with_an_unknown_extension_is_permanent(root: Path) -> None:
    with pytest.raises(PermanentError, match="no_such_extension"):
        MarkdownRender().run("# x", job(root), extensions=["no_such_extension"])


# template.render


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("t/page.html", "<p>&lt;b&gt;</p>\n"),
        ("t/page.html.j2", "<p>&lt;b&gt;</p>\n"),
        ("t/page.txt", "<p><b></p>\n"),
    ],
)
def test_template_autoescapes_html_templates_only(root: Path, template: str, expected: str) -> None:
    write(root, {template: "<p>{{ content }}</p>\n"})
    assert TemplateRender().run(b"<b>", job(root), template=template) == expected


def test_template_records_every_template_it_loads_but_its_own_as_discovered(root: Path) -> None:
    """Its own `template` is a parameter file, in the key before the job runs."""
    write(
        root,
        {
            "t/base.html": "<main>{% block body %}{% endblock %}</main>",
            "t/nav.html": "<nav></nav>",
            "t/page.html": '{% extends "t/base.html" %}'
            '{% block body %}{% include "t/nav.html" %}{% endblock %}',
        },
    )
    ctx = job(root)
    assert TemplateRender().run("", ctx, template="t/page.html") == "<main><nav></nav></main>"
    assert ctx.discovered == {"t/base.html", "t/nav.html"}


def test_template_records_an_optional_include_that_is_missing(root: Path) -> None:
    write(root, {"t/page.txt": '{% include "t/extra.txt" ignore missing %}done'})
    ctx = job(root)
    assert TemplateRender().run("", ctx, template="t/page.txt") == "done"
    assert ctx.discovered == {"t/extra.txt"}


def test_template_sees_the_job_and_its_vars(root: Path) -> None:
    write(
        root,
        {"t/p.txt": "{{ rule }} {{ input }} {{ output }} [{{ relroot }}] {{ title }} {{ params.title }}"},
    )
    ctx = job(root, input="docs/a.md", output="docs/guide/a.html")
    rendered = TemplateRender().run("", ctx, template="t/p.txt", vars={"title": "Hi"})
    assert rendered == "site docs/a.md docs/guide/a.html [../../] Hi Hi"


def test_template_undefined_variable_is_permanent_naming_template_and_line(root: Path) -> None:
    write(root, {"t/page.txt": "first line\n{{ missing }}\n"})
    with pytest.raises(PermanentError, match=r"t/page\.txt:2: 'missing' is undefined"):
        TemplateRender().run("", job(root), template="t/page.txt")


def test_template_failing_in_an_expression_names_the_template_and_line(root: Path) -> None:
    write(root, {"t/part.txt": "{{ 100 // content|int }}", "t/page.txt": 'x\n{% include "t/part.txt" %}'})
    with pytest.raises(RecipeError, match=r"^t/part\.txt:1: ZeroDivisionError: integer division"):
        TemplateRender().run("0", job(root), template="t/page.txt")


def test_template_missing_include_is_permanent_naming_it(root: Path) -> None:
    write(root, {"t/page.txt": '{% include "t/gone.txt" %}'})
    with pytest.raises(PermanentError, match=r"template t/gone\.txt not found .*loaded from t/page\.txt:1"):
        TemplateRender().run("", job(root), template="t/page.txt")


def test_aggregate_template_gets_items_in_order_with_urls(root: Path) -> None:
    inputs = [infile(root, f"public/img/{name}", name) for name in ("a.webp", "b.webp")]
    write(
        root,
        {"t/g.html": "{% for i in items %}<a href='{{ i.url }}'>{{ i.stem }}:{{ i.text }}</a>{% endfor %}"},
    )
    ctx = job(root, input=[i.path for i in inputs], output="gallery/index.html")
    ctx.out = "public"
    rendered = TemplateRender().run(inputs, ctx, template="t/g.html")
    assert rendered == "<a href='../img/a.webp'>a:a.webp</a><a href='../img/b.webp'>b:b.webp</a>"


def test_aggregate_item_urls_are_percent_encoded_for_href_and_srcset(root: Path) -> None:
    inputs = [infile(root, f"public/img/{name}", name) for name in ("my photo #1.webp", "a,b.webp")]
    write(root, {"t/g.html": "{% for i in items %}{{ i.url }} {{ i.name }}|{% endfor %}"})
    ctx = job(root, input=[i.path for i in inputs], output="index.html")
    ctx.out = "public"
    rendered = TemplateRender().run(inputs, ctx, template="t/g.html")
    assert rendered == "img/my%20photo%20%231.webp my photo #1.webp|img/a%2Cb.webp a,b.webp|"


# cdn.manifest


def test_cdn_manifest_urls_are_percent_encoded(root: Path) -> None:
    inputs = [infile(root, "public/img/my photo #1.webp", b"RIFF")]
    ctx = job(root, input=[i.path for i in inputs], output="cdn.json")
    ctx.out = "public"
    document = json.loads(CdnManifest().run(inputs, ctx, base_url="https://cdn.example/"))
    assert (
        document["public/img/my photo #1.webp"][0]["url"] == "https://cdn.example/img/my%20photo%20%231.webp"
    )


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("https://cdn.example", "https://cdn.example/img/a.webp"),
        ("https://example.com/assets", "https://example.com/assets/img/a.webp"),
        ("https://example.com/assets/", "https://example.com/assets/img/a.webp"),
        ("", "img/a.webp"),
    ],
    ids=["host", "folder", "folder-with-slash", "relative"],
)
def test_cdn_manifest_base_url_is_a_folder_with_or_without_its_slash(
    root: Path, base_url: str, url: str
) -> None:
    inputs = [infile(root, "public/img/a.webp", b"RIFF")]
    ctx = job(root, input=[i.path for i in inputs], output="cdn.json")
    ctx.out = "public"
    document = json.loads(CdnManifest().run(inputs, ctx, base_url=base_url))
    assert document["public/img/a.webp"][0]["url"] == url


# python


def test_python_calls_the_function_with_bytes_ctx_and_extra_params(root: Path, clean_imports: None) -> None:
    write(
        root,
        {
            "steps/shout.py": """
                def shout(value, ctx, times):
                    return value.upper() * times + ctx.key[:4].encode()
            """
        },
    )
    params = {"function": "steps.shout:shout", "version": "1", "times": 2}
    assert PythonCall().run(infile(root, "src/a.txt", "hi"), job(root), **params) == b"HIHIabab"


def test_python_passes_an_aggregates_input_files_unchanged(root: Path, clean_imports: None) -> None:
    write(root, {"agg_paths.py": "def paths(value, ctx):\n    return ','.join(f.path for f in value)\n"})
    inputs = [infile(root, f"src/{n}.txt", n) for n in "ab"]
    ctx = job(root, input=[i.path for i in inputs], output="all.txt")
    assert PythonCall().run(inputs, ctx, function="agg_paths:paths", version="1") == "src/a.txt,src/b.txt"


def test_python_key_files_name_the_functions_module(root: Path, clean_imports: None) -> None:
    write(root, {"keyed/__init__.py": "", "keyed/mod.py": "def f(value, ctx):\n    return value\n"})
    files = PythonCall().key_files({"function": "keyed.mod:f", "version": "1"}, root)
    assert files == {"python:keyed.mod": root / "keyed" / "mod.py"}


def test_python_key_files_add_the_project_modules_its_module_imports(root: Path, clean_imports: None) -> None:
    write(
        root,
        {
            "app/__init__.py": "",
            "app/steps/__init__.py": "",
            "app/steps/mod.py": """
                import json, yaml
                from . import local
                from .. import shared
                from app.util import helper as h

                def f(value, ctx):
                    import app.lazy
                    return value
            """,
            "app/steps/local.py": "import app.steps.mod\n",
            "app/shared.py": "",
            "app/util.py": "import app.deeper\n\ndef helper():\n    pass\n",
            "app/deeper.py": "",
            "app/lazy.py": "",
            "app/unused.py": "",
        },
    )
    files = PythonCall().key_files({"function": "app.steps.mod:f", "version": "1"}, root)
    imported = [
        "app/__init__.py",
        "app/deeper.py",
        "app/lazy.py",
        "app/shared.py",
        "app/steps/__init__.py",
        "app/steps/local.py",
        "app/util.py",
    ]
    assert files == {
        "python:app.steps.mod": root / "app/steps/mod.py",
        **{f"python:app.steps.mod imports {path}": root / path for path in imported},
    }


@pytest.mark.parametrize(
    ("function", "message"),
    [("no_such_module:f", "cannot import module no_such_module"), ("present:nope", "has no function nope")],
)
def test_python_unresolvable_function_is_permanent(
    root: Path, clean_imports: None, function: str, message: str
) -> None:
    write(root, {"present.py": "def f(value, ctx):\n    return value\n"})
    with pytest.raises(PermanentError, match=message):
        PythonCall().run(b"", job(root), function=function, version="1")


# shell

COPY = ["import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])"]


def test_shell_reads_back_what_the_command_wrote_to_out(root: Path) -> None:
    source = infile(root, "src/a.txt", "payload")
    assert ShellCommand().run(source, job(root), argv=[PY, "-c", *COPY, "{in}", "{out}"]) == b"payload"


def test_shell_writes_a_value_from_an_earlier_step_to_a_temporary_in_file(root: Path) -> None:
    assert (
        ShellCommand().run("from a step", job(root), argv=[PY, "-c", *COPY, "{in}", "{out}"])
        == b"from a step"
    )


def test_shell_without_out_returns_stdout_and_feeds_the_value_on_stdin(root: Path) -> None:
    argv = [PY, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"]
    assert ShellCommand().run(b"abc", job(root), argv=argv) == b"ABC"


def test_shell_removes_its_temporary_files(root: Path) -> None:
    argv = [PY, "-c", "import sys; print(sys.argv[1], end='')", "{in}"]
    temp_in = Path(ShellCommand().run(b"data", job(root), argv=argv).decode())
    assert not temp_in.exists() and not temp_in.parent.parent.exists()


def test_shell_expands_a_whole_in_argument_to_every_aggregate_input(root: Path) -> None:
    inputs = [infile(root, f"src/{n}.txt", n) for n in "ab"]
    argv = [PY, "-c", "import sys; print(len(sys.argv) - 1, end='')", "{in}"]
    assert ShellCommand().run(inputs, job(root, input=[i.path for i in inputs]), argv=argv) == b"2"


def test_shell_passes_env_and_runs_in_the_project_root(root: Path) -> None:
    argv = [PY, "-c", "import os; print(os.environ['GREETING'], os.getcwd(), end='')"]
    stdout = ShellCommand().run(b"", job(root), argv=argv, env={"GREETING": "hi"})
    assert stdout == f"hi {root}".encode()


def test_shell_logs_the_commands_stderr_at_debug(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="batchit.job")
    ShellCommand().run(b"", job(root), argv=[PY, "-c", "import sys; sys.stderr.write('progress 50%')"])
    assert "progress 50%" in caplog.text


def test_shell_nonzero_exit_is_permanent_quoting_stderr(root: Path) -> None:
    argv = [PY, "-c", "import sys; sys.exit('disk says no')"]
    with pytest.raises(PermanentError, match="exited with code 1: disk says no"):
        ShellCommand().run(b"", job(root), argv=argv)


def test_shell_listed_exit_code_is_transient(root: Path) -> None:
    argv = [PY, "-c", "raise SystemExit(75)"]
    with pytest.raises(TransientError, match="code 75"):
        ShellCommand().run(b"", job(root), argv=argv, transient_exit_codes=[75])


def test_shell_timeout_is_transient(root: Path) -> None:
    with pytest.raises(TransientError, match=r"did not finish within 0\.2 s"):
        ShellCommand().run(b"", job(root), argv=[PY, "-c", "import time; time.sleep(10)"], timeout=0.2)


LEAVES_A_CHILD = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open("child.pid", "w").write(str(child.pid))
"""


def test_shell_timeout_kills_the_processes_the_command_started(root: Path) -> None:
    argv = [PY, "-c", LEAVES_A_CHILD + "import time; time.sleep(300)"]
    with pytest.raises(TransientError, match="was killed, with what it started"):
        ShellCommand().run(b"", job(root), argv=argv, timeout=2)
    child = int((root / "child.pid").read_text())
    wait_until(lambda: process_gone(child), "the child the command left to be killed", timeout=30)


def test_shell_command_leaves_nothing_running_after_it_exits(root: Path) -> None:
    ShellCommand().run(b"", job(root), argv=[PY, "-c", LEAVES_A_CHILD])
    child = int((root / "child.pid").read_text())
    wait_until(lambda: process_gone(child), "the child the command left to be killed", timeout=30)


LEAVES_A_CHILD_HOLDING_ITS_OUTPUT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open("child.pid", "w").write(str(child.pid))
print("started")
"""
"""A command that exits at once, leaving a child that inherited its stdout and stderr pipes."""


@pytest.mark.parametrize("thread", ["main", "worker"])
def test_shell_command_that_exits_is_not_waited_for_past_its_children(root: Path, thread: str) -> None:
    # Its child holds the pipes open: waiting for them to close would last as long as the child.
    argv = [PY, "-c", LEAVES_A_CHILD_HOLDING_ITS_OUTPUT]
    started = time.monotonic()
    if thread == "main":
        stdout = ShellCommand().run(b"", job(root), argv=argv)
    else:
        pool = concurrent.futures.ThreadPoolExecutor(1)
        stdout = pool.submit(ShellCommand().run, b"", job(root), argv=argv).result(timeout=120)
        pool.shutdown()
    assert time.monotonic() - started < 120
    assert stdout == b"started\n"
    child = int((root / "child.pid").read_text())
    wait_until(lambda: process_gone(child), "the child the command left to be killed", timeout=30)


def test_shell_missing_executable_is_permanent_naming_it(root: Path) -> None:
    with pytest.raises(PermanentError, match="cannot run 'batchit-no-such-tool': No such file"):
        ShellCommand().run(b"", job(root), argv=["batchit-no-such-tool", "{in}"])


def test_shell_command_that_writes_no_out_file_is_permanent(root: Path) -> None:
    with pytest.raises(PermanentError, match=r"did not write its \{out\} file"):
        ShellCommand().run(b"", job(root), argv=[PY, "-c", "pass", "{out}"])


# parameter schemas


@pytest.mark.parametrize("name", sorted(BUILTIN_OPERATORS))
def test_params_schema_is_a_valid_json_schema_with_described_params(name: str) -> None:
    operator: type[Operator] = load_target(BUILTIN_OPERATORS[name])
    schema = operator.params_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "additionalProperties" in schema
    assert all("description" in spec for spec in schema.get("properties", {}).values())


@pytest.mark.parametrize("name", sorted(BUILTIN_OPERATORS))
def test_operators_hold_no_state_and_pickle_into_workers(name: str) -> None:
    operator = load_target(BUILTIN_OPERATORS[name])()
    assert vars(operator) == {}
    assert type(pickle.loads(pickle.dumps(operator))) is type(operator)  # noqa: S301 - our own bytes


def test_replace_schema_rejects_an_invalid_regex_at_load_time() -> None:
    validator = jsonschema.Draft202012Validator(
        TextReplace.params_schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert not validator.is_valid({"pattern": "(", "replacement": ""})
    assert validator.is_valid({"pattern": "(a)", "replacement": r"\1"})
