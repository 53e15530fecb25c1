"""Up-to-date semantics (SPEC section 3), each rule one test, through the real `batchit` command."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import COPY_AND_UPPER, PAGES_RULE, PICKY, PICKY_MODULE, TOOLS, Project

from batchit.execute.pools import PROCESSES_FROM


@pytest.fixture
def texts(project: Project) -> Project:
    """A project with three text inputs, a 1:1 copy rule, a 1:1 transform and an aggregate over it."""
    project.config(COPY_AND_UPPER)
    project.write(
        {
            "tools.py": TOOLS,
            "src/a.txt": "alpha\n",
            "src/b.txt": "beta\n",
            "src/sub/c.txt": "gamma\n",
        }
    )
    return project


def summary(project: Project) -> dict[str, int]:
    """The latest run's summary counts."""
    counts: dict[str, int] = project.manifest()["summary"]
    return counts


def test_first_build_writes_every_output(texts: Project) -> None:
    texts.build()
    assert texts.read("_build/copy/sub/c.txt") == "gamma\n"
    assert texts.read("_build/upper/a.txt") == "AlphA\n"
    assert texts.read("_build/index.txt") == "AlphA\nbetA\ngAmmA\n"
    assert summary(texts)["built"] == 7


def test_noop_build_runs_no_job(texts: Project) -> None:
    texts.build()
    texts.build()
    assert summary(texts) == {
        "built": 0,
        "restored": 0,
        "up_to_date": 7,
        "failed": 0,
        "quarantined": 0,
        "deferred": 0,
        "pruned": 0,
    }


def test_touch_only_runs_no_job(texts: Project) -> None:
    texts.build()
    for path in (texts.root / "src").rglob("*.txt"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    texts.build()
    assert summary(texts)["built"] == 0
    assert summary(texts)["up_to_date"] == 7


def test_changed_input_rebuilds_exactly_its_dependants(texts: Project) -> None:
    texts.build()
    texts.write({"src/b.txt": "bravo\n"})
    texts.build()
    outputs = {o["path"]: o["status"] for o in texts.manifest()["outputs"]}
    assert outputs["copy/b.txt"] == "built"
    assert outputs["upper/b.txt"] == "built"
    assert outputs["index.txt"] == "built"
    assert outputs["copy/a.txt"] == outputs["upper/sub/c.txt"] == "up_to_date"
    assert summary(texts)["built"] == 3


def test_upstream_rebuilt_to_same_bytes_leaves_dependants_up_to_date(texts: Project) -> None:
    texts.build()
    texts.write({"src/a.txt": "Alpha\n"})  # upper/a.txt is "AlphA\n" either way
    texts.build()
    outputs = {o["path"]: o["status"] for o in texts.manifest()["outputs"]}
    assert outputs["upper/a.txt"] == "built"
    assert outputs["index.txt"] == "up_to_date"


NORMALISED_CHAIN = """\
version: 1
rules:
  norm:
    inputs: ["src/*.txt"]
    output: "norm/{stem}.txt"
    steps: [text.load: {}, text.replace: {pattern: L, replacement: l}]
  copy:
    inputs: {rule: norm}
    output: "copy/{stem}-{key8}.txt"
    steps: [file.copy: {}]
  upper:
    inputs: {rule: copy}
    output: "upper/{stem}.txt"
    steps: [text.load: {}, text.replace: {pattern: h, replacement: H}]
  excl:
    inputs: {rule: copy}
    output: "excl/{stem}.txt"
    steps: [text.load: {}, text.replace: {pattern: "$", replacement: "!", count: 1}]
"""
"""`norm` lowers every L, so an edit of an L's case changes nothing below it."""


def test_rules_two_levels_below_an_upstream_rebuilt_to_the_same_bytes_stay_as_they_were(
    project: Project,
) -> None:
    project.config(NORMALISED_CHAIN)
    project.write({"src/a.txt": "hello"})
    project.build()
    first = project.snapshot("_build/copy", "_build/upper", "_build/excl")
    project.write({"src/a.txt": "heLlo"})  # norm runs again and writes "hello" again
    project.build()
    assert (summary(project)["built"], summary(project)["up_to_date"]) == (1, 3)
    assert project.snapshot("_build/copy", "_build/upper", "_build/excl") == first
    assert [p.read_text() for p in (project.root / "_build/excl").iterdir()] == ["hello!"]
    assert all("{key8}" not in o["path"] and o["action_key"] for o in project.manifest()["outputs"])
    project.build()
    assert summary(project)["up_to_date"] == 4


def test_changed_parameter_rebuilds_only_that_rules_jobs(texts: Project) -> None:
    texts.build()
    texts.config(COPY_AND_UPPER.replace('replacement: "A"', 'replacement: "4"'))
    texts.build()
    outputs = {o["path"]: o["status"] for o in texts.manifest()["outputs"]}
    assert {p for p, s in outputs.items() if s == "built"} == {
        "upper/a.txt",
        "upper/b.txt",
        "upper/sub/c.txt",
        "index.txt",
    }
    assert texts.read("_build/upper/a.txt") == "4lph4\n"


def test_plan_names_the_changed_parameter(texts: Project) -> None:
    texts.build()
    texts.config(COPY_AND_UPPER.replace('replacement: "A"', 'replacement: "4"'))
    result = texts.run("plan", "--json")
    assert result.code == 0, result.describe()
    jobs = {j["output"]: j for j in json.loads(result.stdout)["jobs"]}
    assert jobs["_build/upper/a.txt"]["action"] == "run"
    assert any("parameter replacement" in r for r in jobs["_build/upper/a.txt"]["reasons"])
    assert jobs["_build/copy/a.txt"]["action"] == "skip"


def test_deleted_input_prunes_its_outputs_and_plan_says_so_first(texts: Project) -> None:
    texts.build()
    (texts.root / "src/sub/c.txt").unlink()
    planned = texts.run("plan")
    assert "  prune    _build/copy/sub/c.txt  (no current job produces it)" in planned.stdout
    assert planned.stdout.rstrip().endswith(", 2 output(s) to prune"), planned.describe()
    listed = json.loads(texts.run("plan", "--json").stdout)
    assert listed["prune"] == ["_build/copy/sub/c.txt", "_build/upper/sub/c.txt"]
    assert listed["summary"]["prune"] == 2
    texts.build()
    assert not (texts.root / "_build/copy/sub").exists()
    assert not (texts.root / "_build/upper/sub/c.txt").exists()
    assert summary(texts)["pruned"] == 2
    assert "copy/sub/c.txt" not in {o["path"] for o in texts.manifest()["outputs"]}
    assert texts.read("_build/index.txt") == "AlphA\nbetA\n"


def test_build_of_one_rule_prunes_nothing_elsewhere(texts: Project) -> None:
    texts.build()
    (texts.root / "src/a.txt").unlink()
    texts.build("copy")
    assert not (texts.root / "_build/copy/a.txt").exists()
    assert (texts.root / "_build/upper/a.txt").exists()


@pytest.mark.parametrize("damage", ["edit", "delete"])
def test_damaged_output_is_restored_from_the_cache(texts: Project, damage: str) -> None:
    texts.build()
    target = texts.root / "_build/upper/b.txt"
    if damage == "edit":
        target.write_text("scribbled\n")
    else:
        target.unlink()
    planned = {job["output"]: job["action"] for job in json.loads(texts.run("plan", "--json").stdout)["jobs"]}
    assert planned["_build/upper/b.txt"] == "restore"
    assert (
        planned["_build/index.txt"] == "skip"
    )  # the restored bytes are the recorded ones: as the build finds
    texts.build()
    assert texts.read("_build/upper/b.txt") == "betA\n"
    assert summary(texts)["restored"] == 1
    assert summary(texts)["built"] == 0


def damage_cache_entry(path: Path, damage: str) -> None:
    """Delete a cache entry, overwrite its bytes, or put a directory in its place."""
    path.unlink()
    if damage == "corrupted":
        path.write_text("scribbled\n")
    elif damage == "a directory":
        path.mkdir()


@pytest.mark.parametrize("damage", ["deleted", "corrupted", "a directory"])
def test_a_damaged_cache_entry_is_a_cache_miss_and_the_job_runs(texts: Project, damage: str) -> None:
    texts.build()
    cached = (texts.root / ".batchit/cache").rglob("*")
    (entry,) = [path for path in cached if path.is_file() and path.read_text() == "betA\n"]
    damage_cache_entry(entry, damage)
    (texts.root / "_build/upper/b.txt").unlink()
    texts.build()
    assert texts.read("_build/upper/b.txt") == "betA\n"
    assert summary(texts)["built"] == 1
    assert texts.manifest()["failures"] == []
    (texts.root / "_build/upper/b.txt").unlink()
    texts.build()
    assert summary(texts)["restored"] == 1, "the run put a good entry back"


def test_a_cache_that_cannot_be_written_fails_no_job(texts: Project) -> None:
    """The cache only saves work: a copy into it that fails (here a file stands where each of its
    folders must go) leaves the job built, blames no input, and promises no restore."""
    cache = texts.root / ".batchit/cache"
    cache.mkdir(parents=True)
    for shard in range(256):
        (cache / f"{shard:02x}").write_text("in the way\n")
    result = texts.build()
    assert result.stderr.count("could not copy _build/") == 1, result.describe()
    assert "into the cache: Not a directory at " in result.stderr
    assert texts.read("_build/upper/b.txt") == "betA\n"
    assert summary(texts)["built"] == 7
    assert texts.manifest()["failures"] == []
    (texts.root / "_build/upper/b.txt").unlink()
    texts.build()
    assert texts.read("_build/upper/b.txt") == "betA\n"
    assert summary(texts)["built"] == 1


def test_damaged_output_is_rebuilt_without_the_cache(texts: Project) -> None:
    texts.build()
    (texts.root / "_build/copy/a.txt").write_text("scribbled\n")
    texts.build("--no-cache")
    assert texts.read("_build/copy/a.txt") == "alpha\n"
    assert summary(texts)["built"] == 1


def test_copied_checkout_with_its_state_rebuilds_nothing(texts: Project, tmp_path: Path) -> None:
    texts.build()
    moved = Project(tmp_path / "elsewhere")
    shutil.copytree(texts.root, moved.root, copy_function=shutil.copy2)  # new inodes, same mtimes
    moved.build()
    assert summary(moved)["built"] == 0
    assert summary(moved)["up_to_date"] == 7


SHOUT = """\
version: 1
rules:
  shout:
    inputs: ["in/*.txt"]
    output: "{stem}.txt"
    steps:
"""
"""A config of one rule, `shout`, from in/*.txt to {stem}.txt: add its steps."""


def test_duplicate_inputs_compute_once(project: Project) -> None:
    project.config(SHOUT + '      - text.load: {}\n      - text.replace: {pattern: "s", replacement: "S"}\n')
    project.write({"in/one.txt": "same\n", "in/two.txt": "same\n", "in/three.txt": "other\n"})
    project.build("-j", "1")
    assert project.read("_build/one.txt") == project.read("_build/two.txt") == "Same\n"
    assert summary(project)["built"] == 2
    assert summary(project)["restored"] == 1


def test_duplicate_inputs_built_without_the_cache_leave_it_empty(project: Project) -> None:
    """The second of two equal inputs gets a copy of the first's output, which is no cache entry:
    with --no-cache nothing may promise a restore from a cache that holds nothing."""
    project.config(SHOUT + '      - text.load: {}\n      - text.replace: {pattern: "s", replacement: "S"}\n')
    project.write({"in/one.txt": "same\n", "in/two.txt": "same\n"})
    project.build("--no-cache")
    for output in ("one.txt", "two.txt"):
        (project.root / "_build" / output).unlink()
    planned = json.loads(project.run("plan", "--json").stdout)
    assert {job["output"]: job["action"] for job in planned["jobs"]} == {
        "_build/one.txt": "run",
        "_build/two.txt": "run",
    }


def test_a_downstream_job_with_the_key_of_a_finished_upstream_job_still_runs(project: Project) -> None:
    project.config(
        """\
        version: 1
        rules:
          stage:
            inputs: ["in/*.txt"]
            output: "staged/{stem}.txt"
            steps:
              - file.copy: {}
          publish:
            inputs: {rule: stage}
            output: "public/{stem}.txt"
            steps:
              - file.copy: {}
        """
    )
    project.write({"in/a.txt": "a\n", "in/b.txt": "b\n"})
    project.build()  # a publish job copies the bytes its stage job copied: one action key
    assert project.read("_build/public/a.txt") == "a\n"
    assert project.read("_build/public/b.txt") == "b\n"
    assert (summary(project)["built"], summary(project)["restored"]) == (2, 2)
    assert {o["path"] for o in project.manifest()["outputs"]} >= {"public/a.txt", "public/b.txt"}


SHOUT_MODULE = """\
import threading

both_running = threading.Barrier(2, timeout=60)
both_printed = threading.Barrier(2, timeout=60)

def shout(value, ctx):
    both_running.wait()  # both jobs are inside their step, on two worker threads of one process
    print("printed by", ctx.input)
    both_printed.wait()  # neither step ends before the other printed
    return value
"""


def test_python_steps_on_threads_print_into_their_own_job_logs(project: Project) -> None:
    project.config(SHOUT + '      - python: {function: "shout:shout", version: "1"}\n')
    project.write({"shout.py": SHOUT_MODULE, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    result = project.build("-j", "2")
    assert result.stdout.startswith("batchit: ok: 2 built"), "the build's own summary reaches stdout"
    logs = project.root / ".batchit/runs" / project.manifest()["run_id"] / "logs"
    for mine, other in (("a", "b"), ("b", "a")):
        log = (logs / f"{mine}.txt.log").read_text()
        assert f"printed by in/{mine}.txt" in log
        assert f"printed by in/{other}.txt" not in log


BELOW_PYTHON_MODULE = """\
import ctypes, os, subprocess

def noisy(value, ctx):
    os.write(1, f"fd 1 of {ctx.input}\\n".encode())
    os.write(2, f"fd 2 of {ctx.input}\\n".encode())
    if ctx.input == "in/000.txt":
        subprocess.run(["sh", "-c", "echo child out; echo child err >&2"], check=True)
        ctypes.CDLL(None).printf(b"printf from C\\n")  # left in the C library's buffer
    return value
"""


def test_what_a_python_step_writes_below_python_goes_to_its_job_log_in_worker_processes(
    project: Project,
) -> None:
    """A worker process runs one job at a time: what its step writes to file descriptors 1 and 2
    (a child process, os.write, C code's printf) is that job's, kept in its log, never shown
    among the build's progress and summary."""
    project.config(SHOUT + '      - python: {function: "below:noisy", version: "1"}\n')
    project.write({"below.py": BELOW_PYTHON_MODULE, **{f"in/{n:03}.txt": "x" for n in range(PROCESSES_FROM)}})
    # buffered, as Python's own streams are unless PYTHONUNBUFFERED is set: so is C's stdout then
    result = project.run("build", "--no-progress", "-j", "2", env={"PYTHONUNBUFFERED": ""})
    assert result.code == 0, result.describe()
    for written in ("fd 1 of", "fd 2 of", "child", "printf"):
        assert written not in result.stdout + result.stderr, result.describe()
    logs = project.root / ".batchit/runs" / project.manifest()["run_id"] / "logs"
    first, second = (logs / "000.txt.log").read_text(), (logs / "001.txt.log").read_text()
    stdout, stderr = first.split("stderr:")
    for text in ("fd 1 of in/000.txt", "child out", "printf from C"):
        assert text in stdout, first
    for text in ("fd 2 of in/000.txt", "child err"):
        assert text in stderr, first
    assert "fd 1 of in/001.txt" in second
    assert "child" not in second and "printf" not in second


STDIN_READER_MODULE = """\
import subprocess, sys

def read(value, ctx):
    typed = sys.stdin.read()
    child = subprocess.run(["cat"], stdout=subprocess.PIPE, check=True).stdout.decode()
    return f"{value.decode()}[{typed}|{child}]"
"""


@pytest.mark.parametrize("runner", ["batchit build", "doit"])
def test_a_python_step_reading_stdin_reads_nothing_rather_than_wait_for_the_terminal(
    project: Project, runner: str
) -> None:
    """batchit's stdin is a terminal nobody types into during a build (here, a pipe held open): a
    step, or a program it starts, that reads it gets an empty input, as in a worker process; in a
    doit sub-task, which runs its job in doit's own process, too."""
    project.config(SHOUT + '      - python: {function: "reader:read", version: "1"}\n')
    project.write({"reader.py": STDIN_READER_MODULE, "in/a.txt": "a"})
    project.write({"dodo.py": 'import batchit.doit\n\ntask_site = batchit.doit.tasks(".")\n'})
    arguments = ["doit"] if runner == "doit" else ["batchit", "build", "--no-progress"]
    command = [sys.executable, "-m", *arguments]
    with subprocess.Popen(command, cwd=project.root, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as build:
        try:
            assert build.wait(timeout=30) == 0
        finally:
            assert build.stdin is not None
            build.stdin.close()
            build.kill()
    assert project.read("_build/a.txt") == "a[|]"


MOVER_MODULE = """\
import os

def move(value, ctx):
    seen = f"{os.path.relpath(os.getcwd(), ctx.root)} {os.environ.get('SET_BY_A_STEP')}"
    (ctx.root / "elsewhere").mkdir(exist_ok=True)
    os.chdir(ctx.root / "elsewhere")
    os.environ["SET_BY_A_STEP"] = ctx.input
    return seen
"""


def test_a_python_step_changing_its_directory_or_environment_changes_nothing_for_the_next_job(
    project: Project,
) -> None:
    """One worker runs both jobs, one after the other: each step finds the project root and
    batchit's environment, whatever the step before it did, so no output depends on job order."""
    project.config(SHOUT + '      - python: {function: "mover:move", version: "1"}\n')
    project.write({"mover.py": MOVER_MODULE, "in/a.txt": "a", "in/b.txt": "b"})
    project.build("-j", "1")
    assert [project.read(f"_build/{stem}.txt") for stem in "ab"] == [". None", ". None"]


STREAM_TAMPERING_MODULE = """\
import os, sys

def tamper(value, ctx):
    print("printed by", ctx.input)
    if ctx.input == "in/a.txt":
        sys.stdout.close()
        sys.stderr.close()
    else:
        sys.stdout = sys.stderr = open(os.devnull, "w")
    return value
"""


def test_a_python_step_closing_or_replacing_its_streams_leaves_the_builds_output_alone(
    project: Project,
) -> None:
    """The steps run in batchit's own process here (on its threads): what they close is their own
    stream, and the streams they set are put back when they return, so the summary is shown."""
    project.config(SHOUT + '      - python: {function: "tamper:tamper", version: "1"}\n')
    project.write({"tamper.py": STREAM_TAMPERING_MODULE, "in/a.txt": "a", "in/b.txt": "b"})
    result = project.build("-j", "1")
    assert result.stdout.startswith("batchit: ok: 2 built"), result.describe()
    logs = project.root / ".batchit/runs" / project.manifest()["run_id"] / "logs"
    assert "printed by in/a.txt" in (logs / "a.txt.log").read_text()


def test_a_build_started_with_its_stdout_closed_builds_and_logs_as_any_other(project: Project) -> None:
    """Started with `>&-` (as cron may start it), batchit has no stdout: what it says there goes
    nowhere, and its jobs build and keep their logs as usual (had descriptor 1 gone to a pipe batchit
    opened, the worker processes capturing a step's stdout would have broken it)."""
    project.config(SHOUT + '      - python: {function: "noisy:f", version: "1"}\n')
    module = 'import os\n\ndef f(value, ctx):\n    os.write(2, b"to fd 2\\n")\n    return value\n'
    project.write({"noisy.py": module, **{f"in/{n:03}.txt": "x" for n in range(PROCESSES_FROM)}})
    command = 'exec "$0" -m batchit build --no-progress -j 2 >&-'
    shell = ["sh", "-c", command, sys.executable]
    done = subprocess.run(shell, cwd=project.root, stderr=subprocess.PIPE, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert project.manifest()["summary"]["built"] == PROCESSES_FROM
    logs = project.root / ".batchit/runs" / project.manifest()["run_id"] / "logs"
    assert "to fd 2" in (logs / "000.txt.log").read_text()


def test_what_a_template_sees_of_its_job_keeps_matrix_variants_and_renamed_rules_apart(
    project: Project,
) -> None:
    config = (
        'version: 1\nrules:\n  pages:\n    inputs: ["src/*.txt"]\n    matrix: {lang: [en, fr]}\n'
        '    output: "{lang}/{stem}.txt"\n'
        "    steps: [text.load: {}, template.render: {template: t/page.txt}]\n"
    )
    project.config(config)
    project.write({"src/a.txt": "hello", "t/page.txt": "{{ rule }} {{ output }}: {{ content }}"})
    project.build()
    assert project.read("_build/en/a.txt") == "pages en/a.txt: hello"
    assert project.read("_build/fr/a.txt") == "pages fr/a.txt: hello"
    project.config(config.replace("  pages:", "  docs:"))
    assert "rule renamed: pages -> docs (its steps see the rule's name)" in project.run("plan").stdout
    project.build()
    assert project.read("_build/fr/a.txt") == "docs fr/a.txt: hello"


def test_python_steps_see_paths_so_paths_enter_their_key(project: Project) -> None:
    project.config(
        """\
        version: 1
        rules:
          label:
            inputs: ["in/*.txt"]
            output: "{stem}.txt"
            steps:
              - python: {function: "labels:label", version: "1"}
        """
    )
    project.write(
        {
            "labels.py": "def label(value, ctx):\n    return ctx.input + ': ' + value.decode()\n",
            "in/one.txt": "same\n",
            "in/two.txt": "same\n",
        }
    )
    project.build()
    assert project.read("_build/one.txt") == "in/one.txt: same\n"
    assert project.read("_build/two.txt") == "in/two.txt: same\n"


def test_a_path_keys_the_same_whether_its_name_is_stored_composed_or_decomposed(project: Project) -> None:
    project.config(
        'version: 1\nrules:\n  tag:\n    inputs: ["in/*.txt"]\n    output: "{stem}.out"\n'
        '    steps: [python: {function: "upper:upper", version: "1"}]\n'
    )
    decomposed, composed = "in/cafe\u0301.txt", "in/caf\u00e9.txt"
    project.write({"upper.py": "def upper(value, ctx):\n    return value.upper()\n", decomposed: "menu\n"})
    project.build()
    (project.root / decomposed).rename(project.root / composed)  # as a checkout on another OS spells it
    project.build()
    assert (summary(project)["built"], summary(project)["restored"]) == (0, 1), "same key: from the cache"
    assert project.read("_build/caf\u00e9.out") == "MENU\n"


@pytest.mark.parametrize("package", ["regular", "namespace"])
def test_edited_helper_module_rebuilds_the_python_steps_that_import_it(
    project: Project, package: str
) -> None:
    project.config(
        'version: 1\nrules:\n  tag:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [python: {function: "steps.tag:tag", version: "1"}]\n'
    )
    tag = "import json\nfrom .words import PREFIX\n\ndef tag(value, ctx):\n"
    tag += "    from steps import deep\n    return PREFIX + deep.SUFFIX + value\n"
    project.write(
        {
            **({"steps/__init__.py": ""} if package == "regular" else {}),  # a folder without one imports too
            "steps/tag.py": tag,
            "steps/words.py": "PREFIX = b'v1:'\n",
            "steps/deep.py": "SUFFIX = b'-'\n",
            "in/a.txt": "a",
        }
    )
    project.build()
    project.write({"steps/words.py": "PREFIX = b'v2:'\n"})
    explained = project.run("explain", "a.txt")
    assert "file changed: python:steps.tag imports steps/words.py" in explained.stdout, explained.describe()
    assert project.build().stdout.startswith("batchit: ok: 1 built")
    assert project.read("_build/a.txt") == "v2:-a"
    project.write({"steps/deep.py": "SUFFIX = b'+'\n"})
    assert project.build().stdout.startswith("batchit: ok: 1 built"), "an import inside the function counts"
    assert project.read("_build/a.txt") == "v2:+a"


@pytest.mark.parametrize("edited", ["steps/tag.py", "steps/words.py"])
def test_a_module_rewritten_within_the_second_of_its_bytecode_runs_as_now_written(
    project: Project, edited: str
) -> None:
    """Python trusts cached bytecode whose source has the recorded mtime (in whole seconds) and size:
    a same-size rewrite in that second, or one given its old mtime back, must still run the new code."""
    project.config(
        'version: 1\nrules:\n  tag:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [python: {function: "steps.tag:tag", version: "1"}]\n'
    )
    project.write(
        {
            "steps/__init__.py": "",
            "steps/tag.py": "from .words import PREFIX\n\ndef tag(value, ctx):\n"
            "    return PREFIX + b'1' + value\n",
            "steps/words.py": "PREFIX = b'v1:'\n",
            "in/a.txt": "a",
        }
    )
    cached = project.root.parent / "pycache"  # batchit's own bytecode goes there too, not into the repo
    writing_bytecode = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(cached)}  # "": unset
    assert project.run("build", "--no-progress", env=writing_bytecode).code == 0
    assert project.read("_build/a.txt") == "v1:1a"
    source = project.root / edited
    compiled = cached / source.parent.relative_to("/") / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
    assert compiled.exists(), "the build's worker cached the module's bytecode"
    before = source.stat()
    source.write_text(source.read_text().replace("1", "2"))
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))  # as an edit in the same second
    built = project.run("build", "--no-progress", env=writing_bytecode)
    assert built.stdout.startswith("batchit: ok: 1 built"), built.describe()
    assert project.read("_build/a.txt") == ("v2:1a" if edited == "steps/words.py" else "v1:2a")


MARKDOWN_EXTENSION = """\
from markdown.extensions import Extension
from markdown.postprocessors import Postprocessor

from signature import SIGNED


class Sign(Postprocessor):
    def run(self, text):
        return text + SIGNED


class SignExtension(Extension):
    def extendMarkdown(self, md):
        md.postprocessors.register(Sign(md), "sign", 0)


def makeExtension(**kwargs):
    return SignExtension(**kwargs)
"""
"""A project's own Python-Markdown extension, `signing.py`: it appends `SIGNED` from `signature.py`."""


@pytest.mark.parametrize("launch", ["python -m batchit", "batchit script"])
def test_a_projects_own_markdown_extension_is_found_and_keyed(project: Project, launch: str) -> None:
    project.config(
        'version: 1\nrules:\n  pages:\n    inputs: ["pages/*.md"]\n    output: "{stem}.html"\n'
        "    steps: [text.load: {}, markdown.render: {extensions: [extra, signing]}]\n"
    )
    project.write(
        {"signing.py": MARKDOWN_EXTENSION, "signature.py": "SIGNED = '<p>v1</p>'\n", "pages/a.md": "# A\n"}
    )
    command = [sys.executable, "-m", "batchit"]
    if launch == "batchit script":  # the console script puts its own folder, not the project, on sys.path
        command = [str(Path(sys.executable).with_name("batchit"))]

    def build() -> subprocess.CompletedProcess[str]:
        run = subprocess.run(
            [*command, "build", "--no-progress"], cwd=project.root, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run

    build()
    assert project.read("_build/a.html") == "<h1>A</h1><p>v1</p>"
    project.write({"signature.py": "SIGNED = '<p>v2</p>'\n"})
    assert build().stdout.startswith("batchit: ok: 1 built"), "a module the extension imports is in the key"
    assert project.read("_build/a.html") == "<h1>A</h1><p>v2</p>"
    project.write({"signing.py": MARKDOWN_EXTENSION.replace("text + SIGNED", "SIGNED + text")})
    assert build().stdout.startswith("batchit: ok: 1 built"), "the extension's own source is in the key"
    assert project.read("_build/a.html") == "<p>v2</p><h1>A</h1>"
    assert build().stdout.startswith("batchit: ok: 1 up to date")


def test_a_python_step_that_changes_its_parameters_changes_them_for_its_job_only(project: Project) -> None:
    """Every job of the rule is called with the step's parameters as the config gives them: a list
    the function appends to must not carry one job's values into the next (same key, other bytes)."""
    project.config(
        'version: 1\nrules:\n  seen:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [python: {function: "seen:seen", version: "1", names: [], counts: {n: 0}}]\n'
    )
    seen = "def seen(value, ctx, names, counts):\n    names.append(ctx.input)\n    counts['n'] += 1\n"
    seen += "    return f'{names} {counts}'\n"
    project.write({"seen.py": seen, **{f"in/{n}.txt": n for n in "abc"}})
    project.build("-j", "1")
    for n in "abc":
        assert project.read(f"_build/{n}.txt") == f"['in/{n}.txt'] {{'n': 1}}"


def build_home_page(project: Project, templates: dict[str, str]) -> None:
    """Build pages/home.md through PAGES_RULE, whose t/page.html.j2 is among `templates`."""
    project.config("version: 1\nrules:\n" + PAGES_RULE)
    project.write({"pages/home.md": "# Home\n", **templates})
    project.build()


def test_a_shell_step_takes_input_names_with_braces_as_they_are(project: Project) -> None:
    project.config(
        'version: 1\nrules:\n  s:\n    inputs: ["src/*.txt"]\n    output: "{stem}.out"\n'
        '    steps: [shell: {argv: [sh, -c, \'echo "$0 $X"\', "{stem}"], env: {X: "{{lit}} {name}"}}]\n'
    )
    project.write({"src/we{ird}.txt": "", "src/a{{b}}.txt": ""})
    project.build()
    assert project.read("_build/we{ird}.out") == "we{ird} {lit} we{ird}.txt\n"
    assert project.read("_build/a{{b}}.out") == "a{{b}} {lit} a{{b}}.txt\n"


def test_edited_included_template_rebuilds_the_page(project: Project) -> None:
    page = "{% include 't/footer.html' %}{{ content | safe }}"
    build_home_page(project, {"t/page.html.j2": page, "t/footer.html": "<footer>v1</footer>"})
    project.write({"t/footer.html": "<footer>v2</footer>"})
    explained = project.run("explain", "home.html")
    assert "discovered dependency changed: t/footer.html" in explained.stdout, explained.describe()
    project.build()
    assert "<footer>v2</footer>" in project.read("_build/home.html")


def test_a_restored_page_still_rebuilds_when_its_base_template_changes(project: Project) -> None:
    page = "{% extends 't/base.html' %}{% block body %}{{ content | safe }}{% endblock %}"
    base = "<main>v1{% block body %}{% endblock %}</main>"
    build_home_page(project, {"t/page.html.j2": page, "t/base.html": base})
    (project.root / "_build/home.html").unlink()
    project.build()
    assert summary(project)["restored"] == 1
    project.write({"t/base.html": "<main>v2{% block body %}{% endblock %}</main>"})
    explained = project.run("explain", "home.html")
    assert "discovered dependency changed: t/base.html" in explained.stdout, explained.describe()
    project.build()
    assert project.read("_build/home.html").startswith("<main>v2")


EXTENDING_PAGE = "{% extends 't/base.html' %}{% block body %}{{ content | safe }}{% endblock %}"


def test_a_page_extending_a_base_is_restored_after_clean_under_its_key8_name(project: Project) -> None:
    """What a job discovered is remembered by its key without them, so a job with no record of its
    own (after `clean`, in a new `out`) is keyed, named and restored as it last ran."""
    project.config("version: 1\nrules:\n" + PAGES_RULE.replace('"{stem}.html"', '"{stem}-{key8}.html"'))
    project.write(
        {
            "pages/home.md": "# Home\n",
            "t/page.html.j2": EXTENDING_PAGE,
            "t/base.html": "<main>{% block body %}{% endblock %}</main>",
        }
    )
    project.build()
    project.build()  # the first build named the page before it knew the base: this one renames it once
    [page] = [o["path"] for o in project.manifest()["outputs"] if o["path"].startswith("home-")]
    assert project.run("clean").code == 0
    project.build()
    assert (summary(project)["built"], summary(project)["restored"]) == (0, 1)
    assert [o["path"] for o in project.manifest()["outputs"] if o["path"].startswith("home-")] == [page]


def test_a_base_edited_after_clean_rebuilds_the_page_rather_than_restoring_it(project: Project) -> None:
    base = "<main>v1{% block body %}{% endblock %}</main>"
    build_home_page(project, {"t/page.html.j2": EXTENDING_PAGE, "t/base.html": base})
    assert project.run("clean").code == 0
    project.write({"t/base.html": base.replace("v1", "v2")})
    project.build()
    assert summary(project)["built"] == 1
    assert project.read("_build/home.html").startswith("<main>v2")


NOTING_STEP = """\
def tag(value, ctx):
    notes = ctx.root / "notes.txt"
    if notes.exists():
        ctx.note_read("notes.txt")
        return value + notes.read_bytes()
    return value
"""


def test_a_job_that_stops_discovering_a_file_is_up_to_date_after_its_rebuild(project: Project) -> None:
    """What it discovered before must not key it once it discovers nothing (a full plan included)."""
    project.config(
        'version: 1\nrules:\n  t:\n    inputs: ["src/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [python: {function: "noting:tag", version: "1"}]\n'
    )
    project.write({"src/a.txt": "a\n", "noting.py": NOTING_STEP, "notes.txt": "n\n"})
    project.build()
    (project.root / "notes.txt").unlink()
    project.build()
    assert summary(project)["built"] == 1
    for snapshot in (project.root / ".batchit").glob("plan-snapshot*"):
        snapshot.unlink()  # the next plan is a full one
    project.build()
    assert summary(project)["built"] == 0, project.run("explain", "a.txt").stdout


def test_what_jobs_discovered_is_forgotten_with_the_last_cache_entry_and_output_that_keep_it(
    project: Project,
) -> None:
    build_home_page(project, {"t/page.html.j2": EXTENDING_PAGE, "t/base.html": "<main></main>"})

    def remembered() -> int:
        with sqlite3.connect(project.root / ".batchit/state.db") as db:
            return int(db.execute("SELECT count(*) FROM discoveries").fetchone()[0])

    assert remembered() == 1
    project.config("version: 1\nrules:\n" + PAGES_RULE + "cache: {max_size: 0}\n")
    assert project.run("gc").code == 0
    assert remembered() == 1, "the output's record still keeps it"
    assert project.run("clean").code == 0
    assert project.run("gc").code == 0
    assert remembered() == 0


def test_plan_reads_a_state_store_from_before_discoveries_were_remembered(project: Project) -> None:
    """`plan` opens the store read-only, so it cannot add the table an older batchit did not make."""
    build_home_page(project, {"t/page.html.j2": EXTENDING_PAGE, "t/base.html": "<main></main>"})
    with sqlite3.connect(project.root / ".batchit/state.db") as db:
        db.execute("DROP TABLE discoveries")
    for snapshot in (project.root / ".batchit").glob("plan-snapshot*"):
        snapshot.unlink()
    planned = project.run("plan")
    assert planned.code == 0 and "0 of 1 jobs to do" in planned.stdout, planned.describe()
    project.build()


def test_key8_rename_prunes_the_old_name(project: Project) -> None:
    project.config(
        """\
        version: 1
        rules:
          hashed:
            inputs: ["*.css"]
            output: "{stem}.{key8}.css"
            steps:
              - file.copy: {}
        """
    )
    project.write({"site.css": "a{}"})
    project.build()
    first = [p.name for p in (project.root / "_build").glob("site.*.css")]
    project.write({"site.css": "b{}"})
    project.build()
    second = [p.name for p in (project.root / "_build").glob("site.*.css")]
    assert len(first) == len(second) == 1
    assert first != second
    assert summary(project)["pruned"] == 1


def test_a_rendered_page_keeps_its_key8_name_and_key_from_plan_to_record(project: Project) -> None:
    """A template that loads no other keys its job fully before it runs: the name it is built
    under stays, the planned key is the recorded one, and a clean build restores it from the cache."""
    project.config(
        'version: 1\nrules:\n  pages:\n    inputs: ["src/*.md"]\n    output: "{stem}-{key8}.html"\n'
        "    steps: [text.load: {}, template.render: {template: t/page.html.j2}]\n"
    )
    project.write({"src/a.md": "hello\n", "t/page.html.j2": "<p>{{ content }}</p>\n"})
    [planned] = json.loads(project.run("plan", "--json").stdout)["jobs"]
    project.build()
    [built] = project.manifest()["outputs"]
    assert built["action_key"] == planned["action_key"]
    project.build()
    assert (summary(project)["built"], summary(project)["restored"], summary(project)["pruned"]) == (0, 0, 0)
    assert [o["path"] for o in project.manifest()["outputs"]] == [built["path"]]
    assert project.run("clean").code == 0
    project.build()
    assert summary(project)["restored"] == 1


KEYED_ASSETS = (
    'version: 1\nrules:\n  pages:\n    inputs: ["src/*.txt"]\n    output: "{stem}.txt"\n'
    "    steps: [text.load: {}]\n"
    '  assets:\n    inputs: {rule: pages}\n    output: "assets/{key8}.txt"\n    steps: [file.copy: {}]\n'
)
"""`assets` names each output by its key alone, known once `pages` has run."""


def test_content_addressed_names_downstream_of_another_rule_build(project: Project) -> None:
    project.config(KEYED_ASSETS)
    project.write({"src/a.txt": "a\n", "src/b.txt": "b\n"})
    assert "run      _build/assets/{key8}.txt" in project.run("plan").stdout
    project.build()
    assert sorted(p.read_text() for p in (project.root / "_build/assets").iterdir()) == ["a\n", "b\n"]
    assert project.build().stdout.startswith("batchit: ok: 4 up to date")


def test_a_file_batchit_did_not_write_at_a_key8_path_stops_the_build_once_its_name_is_known(
    project: Project,
) -> None:
    project.config(KEYED_ASSETS)
    project.write({"src/a.txt": "a\n", "src/b.txt": "b\n"})
    project.build()
    assets = sorted((project.root / "_build/assets").iterdir())
    shutil.rmtree(project.root / ".batchit")  # batchit forgets it wrote them: now they are strangers
    for page in ("a.txt", "b.txt"):
        (project.root / "_build" / page).unlink()
    assets[0].write_text("precious\n")
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "output path(s) hold files batchit did not write" in result.stderr
    assert f"_build/assets/{assets[0].name}" in result.stderr
    assert assets[0].read_text() == "precious\n"
    assert summary(project)["built"] == 2, "the pages that ran before the stop are recorded"
    assert not (project.root / ".batchit/build-in-progress").exists()
    project.build("--overwrite")
    assert sorted(p.read_text() for p in assets) == ["a\n", "b\n"]


def test_byte_identical_upstream_outputs_naming_one_key8_output_stop_the_build_at_that_rule(
    project: Project,
) -> None:
    project.config(KEYED_ASSETS)
    project.write({"src/a.txt": "same\n", "src/b.txt": "same\n"})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "rule 'assets': two jobs write one output _build/assets/" in result.stderr
    assert [o["path"] for o in project.manifest()["outputs"]] == ["a.txt", "b.txt"]
    assert project.manifest()["status"] == "failed", "the stop is a failed run, not an ok one"
    assert not (project.root / ".batchit/build-in-progress").exists()
    project.config(KEYED_ASSETS.replace("assets/{key8}", "assets/{stem}-{key8}"))
    project.build()
    assert len(list((project.root / "_build/assets").iterdir())) == 2


def test_file_batchit_did_not_write_is_never_overwritten(texts: Project) -> None:
    texts.write({"_build/copy/a.txt": "mine\n"})
    planned = texts.run("plan", "--json")
    assert planned.code == 0, "a plan shows what would stop the build; it does not stop itself"
    plan = json.loads(planned.stdout)
    assert plan["summary"]["refuse"] == 1 and plan["summary"]["run"] == 6, plan["summary"]
    refused = [job for job in plan["jobs"] if job["action"] == "refuse"]
    assert [job["output"] for job in refused] == ["_build/copy/a.txt"]
    assert "did not write" in refused[0]["reasons"][0] and "--overwrite" in refused[0]["reasons"][0]
    shown = texts.run("build", "--dry-run")
    assert shown.code == 0 and "refuse   _build/copy/a.txt" in shown.stdout, shown.describe()
    assert "1 refused: a build stops (exit 2)" in shown.stdout, shown.describe()
    overwriting = json.loads(texts.run("plan", "--json", "--overwrite").stdout)
    assert overwriting["summary"]["refuse"] == 0 and overwriting["summary"]["run"] == 7
    result = texts.build(expect=2)
    assert "_build/copy/a.txt" in result.stderr
    assert "--overwrite" in result.stderr
    assert texts.read("_build/copy/a.txt") == "mine\n"
    assert not (texts.root / "_build/copy/b.txt").exists()
    texts.build("--overwrite")
    assert texts.read("_build/copy/a.txt") == "alpha\n"


EVERY_FILE = """\
version: 1
rules:
  copy:
    inputs: ["src/**/*"]
    output: "{path}"
    steps:
      - text.load: {}
"""
"""Each file under src/ copied to the same path under _build/."""


class Flip(NamedTuple):
    """An input path that changes kind between two builds: the files before and after."""

    before: dict[str, str]
    after: dict[str, str]


FLIPS = {
    "a file becomes a directory": Flip({"src/a": "a\n"}, {"src/a/x": "x\n"}),
    "a directory becomes a file": Flip({"src/a/x": "x\n", "src/a/y/z": "z\n"}, {"src/a": "a\n"}),
}


@pytest.mark.parametrize("flip", FLIPS.values(), ids=FLIPS.keys())
def test_a_stale_output_in_the_way_of_a_new_one_is_removed_first(project: Project, flip: Flip) -> None:
    project.config(EVERY_FILE)
    project.write({"src/b": "b\n", **flip.before})
    project.build()
    if (project.root / "src/a").is_dir():
        shutil.rmtree(project.root / "src/a")
    else:
        (project.root / "src/a").unlink()
    project.write(flip.after)
    project.build()
    assert {o["path"] for o in project.manifest()["outputs"]} == {"b", *(p[4:] for p in flip.after)}
    assert all(project.read(f"_build/{p[4:]}") == text for p, text in flip.after.items())
    assert summary(project)["pruned"] == len(flip.before)
    project.build()
    assert summary(project)["up_to_date"] == 2


def test_a_file_of_the_users_in_the_way_of_an_output_is_never_removed(project: Project) -> None:
    project.config(EVERY_FILE)
    project.write({"src/a/x": "x\n"})
    project.build()
    project.write({"_build/a/mine": "mine\n"})
    shutil.rmtree(project.root / "src/a")
    project.write({"src/a": "a\n"})
    result = project.build(expect=2)
    assert "_build/a" in result.stderr
    assert project.read("_build/a/mine") == "mine\n"


def test_force_rebuilds_the_selected_jobs(texts: Project) -> None:
    texts.build()
    texts.build("--force", "copy")
    assert summary(texts)["built"] == 3


def test_process_pool_builds_the_same_bytes(texts: Project, tmp_path: Path) -> None:
    texts.write({f"src/many/{n}.txt": f"line {n}\n" for n in range(PROCESSES_FROM)})  # enough for processes
    texts.build("-j", "2")
    serial = Project(tmp_path / "serial")
    shutil.copytree(texts.root, serial.root, ignore=shutil.ignore_patterns("_build", ".batchit"))
    serial.build("-j", "1", "--executor", "thread")
    assert texts.snapshot("_build/copy", "_build/upper") == serial.snapshot("_build/copy", "_build/upper")


PIDS = """\
version: 1
rules:
  pids:
    inputs: ["in/*.txt"]
    output: "{stem}.pid"
    steps:
      - python: {function: "pids:pid", version: "1"}
"""


def worker_pids(project: Project, inputs: int) -> tuple[int, set[int]]:
    """Build `inputs` jobs with `-j 2`: (the batchit process's pid, the pids that ran the jobs)."""
    project.config(PIDS)
    project.write({"pids.py": "import os\ndef pid(value, ctx):\n    return str(os.getpid())\n"})
    project.write({f"in/{n}.txt": f"{n}\n" for n in range(inputs)})
    command = [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "2"]
    build = subprocess.Popen(command, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = build.communicate(timeout=120)
    assert build.returncode == 0, stderr
    return build.pid, {int(path.read_text()) for path in (project.root / "_build").glob("*.pid")}


def test_a_few_cpu_jobs_run_in_the_coordinator_threads(project: Project) -> None:
    coordinator, workers = worker_pids(project, 5)
    assert workers == {coordinator}


def test_many_cpu_jobs_run_in_worker_processes(project: Project) -> None:
    coordinator, workers = worker_pids(project, PROCESSES_FROM)
    assert workers and coordinator not in workers


def test_failed_job_exits_1_and_keeps_building_the_rest(project: Project) -> None:
    project.config(PICKY)
    project.write({"picky.py": PICKY_MODULE, "in/good.txt": "fine\n", "in/broken.txt": "bad\n"})
    result = project.build(expect=1)
    assert "cannot parse in/broken.txt" in result.stderr + result.stdout
    assert project.read("_build/good.txt") == "FINE\n"
    assert not (project.root / "_build/broken.txt").exists()
    failures = project.manifest()["failures"]
    assert [(f["input"], f["class"]) for f in failures] == [("in/broken.txt", "PermanentError")]


def test_json_log_format_writes_one_object_per_line(texts: Project) -> None:
    result = texts.build("--log-format", "json")
    events = [json.loads(line) for line in result.stderr.splitlines()]
    jobs = [e for e in events if e["event"] == "job"]
    assert len(jobs) == 7
    assert {"rule", "input", "output", "duration", "status"} <= set(jobs[0])
    assert events[-1]["event"] == "summary"


def test_clean_removes_outputs_and_orphans_only_on_request(texts: Project) -> None:
    texts.build()
    texts.write({"_build/stray.txt": "not from a rule\n"})
    dry = texts.run("clean", "--orphans", "--dry-run")
    assert "_build/stray.txt" in dry.stdout
    assert (texts.root / "_build/stray.txt").exists()
    assert texts.run("clean", "--orphans").code == 0
    assert not (texts.root / "_build/stray.txt").exists()
    assert (texts.root / "_build/copy/a.txt").exists()
    assert texts.run("clean").code == 0
    assert not (texts.root / "_build/copy/a.txt").exists()
    texts.build()
    assert summary(texts)["built"] + summary(texts)["restored"] == 7


SUB_COPY = """\
version: 1
rules:
  copy:
    inputs: ["in/*.txt"]
    output: "a/b/{stem}.txt"
    steps:
      - file.copy: {}
"""


@pytest.mark.parametrize(
    ("rule", "name", "said"),
    [
        (
            'inputs: ["pages/*.md"]\n    matrix: {d: ["..", ok]}\n    output: "{d}/{d}/{stem}.txt"\n',
            "a.md",
            "would lead out of `out`: it names a parent folder (..)",
        ),
        (
            'inputs: ["pages/*.md"]\n    matrix: {d: ["/abs"]}\n    output: "{d}/{stem}.txt"\n',
            "a.md",
            "would lead out of `out`: it is absolute",
        ),
        (
            'inputs: ["pages/*.md"]\n    output: "{stem}/pwned.html"\n',
            "...md",
            "a placeholder's value is `..`",
        ),
    ],
    ids=["matrix value", "absolute matrix value", "input name"],
)
def test_an_output_that_a_placeholder_value_leads_out_of_out_exits_2(
    project: Project, rule: str, name: str, said: str
) -> None:
    project.config(f"version: 1\nrules:\n  pages:\n    {rule}    steps: [text.load: {{}}]\n")
    project.write({f"pages/{name}": "hi\n"})
    result = project.build(expect=2)
    assert said in result.stderr, result.describe()
    assert sorted(p.name for p in project.root.iterdir()) == ["batchit.yaml", "pages"]
    assert sorted(p.name for p in project.root.parent.iterdir()) == [project.root.name]


@pytest.mark.parametrize("order", ["file first", "folder first"])
def test_an_output_that_would_be_the_folder_of_another_exits_2(project: Project, order: str) -> None:
    rules = {
        "page": '  page:\n    inputs: ["src/*.txt"]\n    output: "{stem}"\n    steps: [file.copy: {}]\n',
        "index": '  index:\n    inputs: ["src/*.txt"]\n    output: "{stem}/index.html"\n'
        "    steps: [file.copy: {}]\n",
    }
    names = ["page", "index"] if order == "file first" else ["index", "page"]
    project.config("version: 1\nrules:\n" + "".join(rules[name] for name in names))
    project.write({"src/docs.txt": "d\n"})
    result = project.build(expect=2)
    assert "output _build/docs (page:src/docs.txt) would be the folder of output _build/docs/index.html" in (
        result.stderr
    ), result.describe()
    assert not (project.root / "_build").exists()


@pytest.mark.parametrize("link", ["_build/a", "_build/a/b"], ids=["output dir", "nested output dir"])
def test_an_output_path_through_a_symlink_leaving_out_exits_2(
    project: Project, tmp_path: Path, link: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    project.config(SUB_COPY)
    project.write({"in/x.txt": "x\n"})
    (project.root / link).parent.mkdir(parents=True, exist_ok=True)
    (project.root / link).symlink_to(outside)
    result = project.build(expect=2)
    assert "leads outside `out` through a symlink" in result.stderr, result.describe()
    assert f"remove the symlink {link}" in result.stderr, result.describe()
    assert list(outside.iterdir()) == []


def test_an_output_path_through_a_symlink_inside_out_builds(project: Project) -> None:
    project.config(SUB_COPY)
    project.write({"in/x.txt": "x\n"})
    (project.root / "_build/real").mkdir(parents=True)
    (project.root / "_build/a").symlink_to(project.root / "_build/real")
    project.build()
    assert project.read("_build/real/b/x.txt") == "x\n"


def test_an_input_symlink_leaving_the_project_exits_2(project: Project, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    project.config(SUB_COPY)
    (project.root / "in").mkdir()
    (project.root / "in/x.txt").symlink_to(secret)
    result = project.build(expect=2)
    assert "input in/x.txt is a symlink leading outside the project" in result.stderr, result.describe()
    assert not (project.root / "_build").exists()


def test_an_input_folder_symlinked_out_of_the_project_exits_2(project: Project, tmp_path: Path) -> None:
    """`in` linked to a folder elsewhere: the glob `in/*.txt` would read every file there (a symlinked
    file is refused; a symlinked glob base was followed). Refused by plan and build, naming the rule."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("secret\n")
    project.config(SUB_COPY)
    (project.root / "in").symlink_to(elsewhere)
    for command in (["plan"], ["build", "--no-progress"]):
        result = project.run(*command)
        assert result.code == 2, result.describe()
        assert (
            "batchit.yaml:3: rule 'copy': input glob 'in/*.txt' starts in in, which leads outside the "
            "project through a symlink" in result.stderr
        ), result.describe()
    assert not (project.root / "_build").exists()


def test_an_input_folder_symlinked_inside_the_project_builds(project: Project) -> None:
    project.config(SUB_COPY)
    project.write({"real/x.txt": "x\n"})
    (project.root / "in").symlink_to("real")
    project.build()
    assert project.read("_build/a/b/x.txt") == "x\n"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("in", "out 'o' leads through a symlink to in, where rule 'copy' may find inputs ('in/**/*.txt')"),
        (
            "in/sub",
            "out 'o' leads through a symlink to in/sub, where rule 'copy' may find inputs ('in/**/*.txt')",
        ),
        (".batchit", "out 'o' leads through a symlink to .batchit"),
        (".", "out 'o' leads through a symlink to the project root"),
    ],
)
def test_out_leading_through_a_symlink_to_inputs_or_state_exits_2(
    project: Project, target: str, message: str
) -> None:
    """Outputs would land among the inputs (which the globs would then miss, and the next build
    take for inputs) or among batchit's state."""
    project.config(SUB_COPY.replace("version: 1\n", "version: 1\nout: o\n").replace("in/*", "in/**/*"))
    project.write({"in/x.txt": "x\n"})
    (project.root / target).mkdir(exist_ok=True)
    (project.root / "o").symlink_to(target)
    before = project.snapshot("in", ".batchit")
    result = project.build(expect=2)
    assert message in result.stderr, result.describe()
    assert project.snapshot("in", ".batchit") == before


def test_out_may_lead_to_a_project_folder_the_globs_leave_out(project: Project) -> None:
    """A web server's `www`: no rule finds inputs there (here `exclude:` says so), and no glob looks."""
    config = SUB_COPY.replace("version: 1\n", "version: 1\nout: o\n").replace("in/*.txt", "**/*.txt")
    project.config(config.replace("    output:", '    exclude: ["www/**"]\n    output:'))
    project.write({"in/x.txt": "x\n"})
    (project.root / "www").mkdir()
    (project.root / "o").symlink_to("www")
    project.build()
    project.build()
    assert sorted(p.relative_to(project.root).as_posix() for p in (project.root / "www").rglob("*.txt")) == [
        "www/a/b/x.txt"
    ]
    assert project.manifest()["summary"]["up_to_date"] == 1


def test_out_may_lead_through_a_symlink_out_of_the_project(project: Project, tmp_path: Path) -> None:
    elsewhere = tmp_path / "fast-disk"
    elsewhere.mkdir()
    project.config(SUB_COPY.replace("version: 1\n", "version: 1\nout: o\n"))
    project.write({"in/x.txt": "x\n"})
    (project.root / "o").symlink_to(elsewhere)
    project.build()
    assert (elsewhere / "a/b/x.txt").read_text() == "x\n"


LEADING_OUT = [
    (
        "template",
        'steps: [text.load: {}, template.render: {template: "t/page.j2"}]',
        "t/page.j2",
        "step 2 (template.render) names t/page.j2, a symlink leading outside the project",
    ),
    (
        "expect.schema",
        'expect: {schema: "t/page.j2"}\n    steps: [file.copy: {}]',
        "t/page.j2",
        "expect.schema names t/page.j2, a symlink leading outside the project",
    ),
    (
        "include",
        "steps: [file.copy: {}]\ninclude: [t/more.yaml]",
        "t/more.yaml",
        "include 't/more.yaml' is a symlink leading outside the project",
    ),
]


@pytest.mark.parametrize(
    ("rest", "link", "message"), [case[1:] for case in LEADING_OUT], ids=[c[0] for c in LEADING_OUT]
)
def test_a_file_the_config_names_that_a_symlink_leads_out_of_the_project_exits_2(
    project: Project, tmp_path: Path, rest: str, link: str, message: str
) -> None:
    """SPEC section 2: what a build reads resolves inside the project, named files as inputs."""
    secret = tmp_path / "elsewhere"
    secret.write_text("rules: {}\n")
    project.config(SUB_COPY.replace("    steps:\n      - file.copy: {}\n", f"    {rest}\n"))
    project.write({"in/x.txt": "x\n"})
    (project.root / "t").mkdir()
    (project.root / link).symlink_to(secret)
    result = project.build(expect=2)
    assert message in result.stderr, result.describe()
    assert not (project.root / "_build").exists()


def test_a_symlink_leaving_the_project_that_no_glob_takes_is_no_error(
    project: Project, tmp_path: Path
) -> None:
    """A virtualenv's `bin/python` links out of the project: only an input may not."""
    (tmp_path / "secret.txt").write_text("secret\n")
    project.config(
        SUB_COPY.replace('inputs: ["in/*.txt"]', 'inputs: ["in/*.txt"]\n    exclude: ["in/x.txt"]')
    )
    project.write({"in/a.txt": "a\n", ".venv/bin/README": "not an input\n"})
    (project.root / ".venv/bin/python").symlink_to("/usr/bin/env")
    (project.root / "in/x.txt").symlink_to(tmp_path / "secret.txt")
    project.build()
    assert sorted(p.name for p in (project.root / "_build/a/b").iterdir()) == ["a.txt"]
    project.config(project.read("batchit.yaml").replace('inputs: ["in/*.txt"]', 'inputs: ["**/*"]'))
    result = project.build(expect=2)
    assert "input .venv/bin/python is a symlink leading outside the project (glob '**/*'" in result.stderr
