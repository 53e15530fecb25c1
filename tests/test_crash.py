"""Crash safety and the project lock (SPEC section 7): SIGKILL loses nothing, one build at a time."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from blake3 import blake3
from conftest import (
    COPY_CONFIG,
    HOLD,
    HOLD_CONFIG,
    Project,
    blocked_on_pipe,
    drain,
    fill_pipe,
    process_gone,
    wait_until,
)

from batchit.errors import BuildInterrupted
from batchit.execute.pools import PROCESSES_FROM
from batchit.record.runs import UNFINISHED_RUN

GATED = """\
version: 1
rules:
  work:
    inputs: ["in/*.txt"]
    output: "{stem}.txt"
    steps:
      - python: {function: "gated:work", version: "1"}
"""

GATE_MODULE = """\
import os
import select

def work(value, ctx):
    if value.startswith(b"block") and os.path.exists("gate"):
        open("started", "w").close()
        with open("gate") as gate:  # a FIFO: blocks until the test opens it for writing
            gate.read()
    return value.upper()
"""


def committed_blake3(project: Project, output: str) -> str | None:
    """The content hash the state store has committed for an output (what a restarted build trusts)."""
    db = sqlite3.connect(f"file:{project.root / '.batchit/state.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT blake3 FROM outputs WHERE path = ?", (output,)).fetchone()
    finally:
        db.close()
    return None if row is None or row[0] is None else str(row[0])


@pytest.fixture
def gated(project: Project) -> Iterator[Project]:
    """Five inputs; `c` blocks its job on a FIFO named `gate` while that FIFO exists."""
    project.config(GATED)
    project.write(
        {"gated.py": GATE_MODULE, **{f"in/{n}.txt": f"{n}\n" for n in "abde"}, "in/c.txt": "block\n"}
    )
    yield project


def start_build(project: Project) -> subprocess.Popen[str]:
    """Start `batchit build` in the background: one worker thread, so jobs run in input order."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "1", "--executor", "thread"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def open_gate(project: Project) -> None:
    """Let the blocked job go on."""
    with open(project.root / "gate", "w") as gate:
        gate.write("go")


@pytest.mark.parametrize(
    "second_command",
    [("build", "--no-progress"), ("keygen", "--force")],
    ids=["build", "keygen_replacing_the_key_the_first_build_will_sign_with"],
)
def test_second_concurrent_run_exits_3_naming_the_holder(
    gated: Project, second_command: tuple[str, ...]
) -> None:
    os.mkfifo(gated.root / "gate")
    first = start_build(gated)
    try:
        wait_until(lambda: (gated.root / "started").exists(), "the blocking job to start")
        second = gated.run(*second_command)
        assert second.code == 3, second.describe()
        assert f"pid {first.pid}" in second.stderr
    finally:
        open_gate(gated)
        first.communicate(timeout=60)
    assert first.returncode == 0


def test_sigkill_mid_build_loses_nothing_and_resumes_with_the_rest(gated: Project) -> None:
    gated.build()  # a complete first build: every output exists
    gated.write({"in/a.txt": "a2\n", "in/b.txt": "b2\n", "in/c.txt": "block v2\n", "in/d.txt": "d2\n"})
    os.mkfifo(gated.root / "gate")
    build = start_build(gated)
    wait_until(lambda: (gated.root / "started").exists(), "the blocking job to start")
    wait_until(lambda: committed_blake3(gated, "b.txt") == blake3(b"B2\n").hexdigest(), "b to commit")
    build.send_signal(signal.SIGKILL)
    build.communicate(timeout=60)

    assert gated.read("_build/c.txt") == "BLOCK\n", "the killed job's previous output is intact"
    assert gated.read("_build/d.txt") == "D\n", "a job that never ran keeps its previous output"
    assert not [p for p in (gated.root / "_build").rglob("*") if ".batchit-tmp-" in p.name]
    killed_run = max(p for p in (gated.root / ".batchit/runs").iterdir() if p.is_dir())
    events = [json.loads(line) for line in (killed_run / "events.jsonl").read_text().splitlines()]
    plan = {"event": "plan", "jobs": 5, "total": 4, "replayed": False, "patched": False}
    assert plan in events, "a non-job event is written at once"

    stray = gated.root / ".batchit/cache/ab" / ("ab" + "0" * 62)  # a cache copy whose row never came
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"C")
    (gated.root / "gate").unlink()
    gated.build()
    assert not stray.exists(), "the next build sweeps what the killed one wrote but never indexed"
    statuses = {o["path"]: o["status"] for o in gated.manifest()["outputs"]}
    assert statuses == {
        "a.txt": "up_to_date",
        "b.txt": "up_to_date",
        "c.txt": "built",
        "d.txt": "built",
        "e.txt": "up_to_date",
    }
    assert gated.read("_build/c.txt") == "BLOCK V2\n"


SLOW_MODULE = """\
import time

def work(value, ctx):
    if (ctx.root / "slow").exists():
        time.sleep(0.3)  # a slow job: the build measures how long its jobs take
    if value.startswith(b"hold"):
        (ctx.root / "started").touch()
        while not (ctx.root / "release").exists():
            time.sleep(0.01)
    return value.upper()
"""


def test_a_build_killed_during_a_slow_job_keeps_the_slow_jobs_finished_before_it(project: Project) -> None:
    """Results come back, and are committed, a batch at a time: a batch of slow jobs holds no more
    than finish in about half a second. Sized from the queue alone, 20 jobs on one worker went five
    to a batch, and a build killed in the fifth lost the four finished before it."""
    project.config(GATED.replace("gated:work", "slow_jobs:work"))
    inputs = {f"in/{n:02}.txt": f"{n}\n" for n in range(20)}
    project.write({"slow_jobs.py": SLOW_MODULE, **inputs, "in/04.txt": "hold\n", "slow": ""})
    build = start_build(project)
    try:
        wait_until(lambda: (project.root / "started").exists(), "the fifth job to start")
        for n in range(4):
            wait_until(lambda n=n: committed_blake3(project, f"{n:02}.txt") is not None, f"job {n} to commit")
    finally:
        build.kill()
        build.communicate(timeout=60)

    (project.root / "slow").unlink()
    (project.root / "release").touch()
    project.build()
    assert project.manifest()["summary"]["up_to_date"] == 4


def test_report_of_a_killed_run_says_it_never_wrote_its_record(gated: Project) -> None:
    gated.build()
    gated.write({"in/c.txt": "block v2\n"})
    os.mkfifo(gated.root / "gate")
    build = start_build(gated)
    wait_until(lambda: (gated.root / "started").exists(), "the blocking job to start")
    build.send_signal(signal.SIGKILL)
    build.communicate(timeout=60)
    runs = gated.root / ".batchit/runs"
    killed = max(p.name for p in runs.iterdir() if p.is_dir())

    shown = gated.run("report", killed)
    assert shown.code == 2, shown.describe()
    assert f"run {killed} has no record: it stopped before writing it" in shown.stderr, shown.describe()
    assert f".batchit/runs/{killed}/events.jsonl" in shown.stderr, "what it did is there"
    assert "Traceback" not in shown.stderr


def test_input_changed_while_its_job_ran_is_not_recorded_up_to_date(gated: Project) -> None:
    os.mkfifo(gated.root / "gate")
    build = start_build(gated)
    wait_until(lambda: (gated.root / "started").exists(), "the blocking job to start")
    gated.write({"in/c.txt": "block, edited while its job ran\n"})
    open_gate(gated)
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == 0
    assert "in/c.txt changed while the job of _build/c.txt ran" in stderr

    (gated.root / "gate").unlink()
    gated.build()
    statuses = {o["path"]: o["status"] for o in gated.manifest()["outputs"]}
    assert statuses["c.txt"] == "built"
    assert gated.read("_build/c.txt") == "BLOCK, EDITED WHILE ITS JOB RAN\n"


REMOVER = """\
import os

def work(value, ctx):
    if ctx.input == "in/a.txt":  # jobs run in input order: b's has not read its input yet
        os.rename("in/b.txt", "b.txt.away")  # as a checkout or an editor's save would
    return value.upper()
"""


def test_an_input_gone_before_its_job_read_it_is_not_quarantined(project: Project) -> None:
    """Its bytes were never seen: neither at fault nor in quarantine, whose copy would be missing
    and which would hold the file back once it is back as it was."""
    project.config(GATED.replace("gated:work", "remover:work"))
    project.write({"remover.py": REMOVER, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    build = start_build(project)
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == 1, stderr
    assert "quarantined" not in stderr and not (project.root / ".batchit/quarantine").exists(), stderr

    (project.root / "b.txt.away").rename(project.root / "in/b.txt")  # back, the same bytes
    project.write({"remover.py": REMOVER.replace('"in/a.txt"', '"none"')})
    project.build()
    assert project.read("_build/b.txt") == "B\n"


def read_stderr_until(process: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    """Read a running process's stderr until `text` appears (or fail after `timeout`)."""
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    fd = process.stderr.fileno()
    while text not in seen:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        if not ready:
            raise AssertionError(f"timed out waiting for {text!r}; stderr so far:\n{seen}")
        chunk = os.read(fd, 4096).decode()
        if not chunk:
            raise AssertionError(f"stderr closed before {text!r}:\n{seen}")
        seen += chunk
    return seen


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_lets_running_jobs_finish_and_exits_130(gated: Project, signum: signal.Signals) -> None:
    os.mkfifo(gated.root / "gate")
    build = start_build(gated)
    wait_until(lambda: (gated.root / "started").exists(), "the blocking job to start")
    build.send_signal(signum)
    read_stderr_until(build, f"interrupted ({signum.name})")
    open_gate(gated)  # the running job finishes within the grace period
    build.communicate(timeout=60)
    assert build.returncode == 130

    manifest = gated.manifest()
    assert manifest["status"] == "interrupted"
    assert {o["path"] for o in manifest["outputs"]} == {"a.txt", "b.txt", "c.txt"}
    assert not (gated.root / "_build/d.txt").exists()

    (gated.root / "gate").unlink()
    gated.build()
    assert gated.manifest()["summary"]["built"] == 2
    assert gated.manifest()["summary"]["up_to_date"] == 3


STOP_AFTER_THE_JOBS = """\
import os, signal, sys

from batchit.cli import main

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever started us
where, signum = sys.argv[1], getattr(signal, sys.argv[2])

def stop_there(frame, event, arg):
    if event == "call" and frame.f_code.co_name == where:
        sys.setprofile(None)
        os.kill(os.getpid(), signum)

sys.setprofile(stop_there)
sys.exit(main(["build", "--no-progress"]))
"""
"""`batchit build`, sent `argv[2]` by itself once its jobs have run, as it enters function `argv[1]`."""


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(
    "where",
    ["forget_failures_of_current", "prune", "write_replay", "render_manifest", "remember_plan"],
)
def test_a_stop_signal_once_the_jobs_ran_still_records_the_run(
    copies: Project, where: str, signum: str
) -> None:
    """Between the last job and the run's record (committing, pruning, rendering a manifest of many
    outputs) a Ctrl-C ended the build with no manifest or report, and results not yet committed
    were lost; the run is recorded first, then the build exits 130."""
    copies.build()
    copies.write({"src/a.txt": "alpha, edited\n"})
    (copies.root / "src/sub/c.txt").unlink()  # an output to prune
    script = copies.root / "stop.py"
    script.write_text(STOP_AFTER_THE_JOBS)
    stopped = subprocess.run(
        [sys.executable, str(script), where, signum],
        cwd=copies.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    manifest = copies.manifest()
    assert (manifest["summary"]["built"], manifest["summary"]["pruned"]) == (1, 1), manifest["summary"]
    assert (copies.root / ".batchit/runs/LATEST").read_text().strip() == manifest["run_id"]
    assert copies.run("verify").code == 0
    assert copies.run("audit", "verify").code == 0
    assert copies.build().stdout.startswith("batchit: ok: 2 up to date"), "nothing is built again"


def test_a_second_sigint_exits_at_once_keeping_what_was_committed(gated: Project) -> None:
    os.mkfifo(gated.root / "gate")
    build = start_build(gated)
    wait_until(lambda: (gated.root / "started").exists(), "the blocking job to start")
    wait_until(lambda: committed_blake3(gated, "b.txt") is not None, "b to commit")
    build.send_signal(signal.SIGINT)
    read_stderr_until(build, "interrupted (SIGINT)")
    build.send_signal(signal.SIGINT)  # the blocked job is still running: leave without waiting for it
    build.communicate(timeout=60)
    assert build.returncode == 130
    assert not (gated.root / "_build/c.txt").exists()

    (gated.root / "gate").unlink()
    gated.build()
    statuses = {o["path"]: o["status"] for o in gated.manifest()["outputs"]}
    assert statuses["a.txt"] == statuses["b.txt"] == "up_to_date"
    assert statuses["c.txt"] == "built"


def test_ctrl_c_while_a_slow_reader_holds_a_log_line_stops_the_build_cleanly(gated: Project) -> None:
    """The first Ctrl-C's warning goes through the event log to stderr; landing while the build is
    blocked writing the line before it there (`batchit build --log-format json 2>&1 | slow-reader`),
    it waits for that line instead of re-entering the stream's write, which raised "reentrant
    call": exit 1 and a traceback instead of a clean stop."""
    os.mkfifo(gated.root / "gate")
    read_end, write_end = os.pipe()
    command = [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "1", "--executor", "thread"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stderr buffered, as usual
    build = subprocess.Popen([*command, "--log-format", "json"], cwd=gated.root, stderr=write_end, env=env)
    os.close(write_end)
    try:
        wait_until(lambda: (gated.root / "started").exists(), "the blocking job to start")
        fill_pipe(read_end)  # the reader stops reading: c's job line will wait for room
        open_gate(gated)
        wait_until(lambda: blocked_on_pipe(build.pid, "write"), "the build to block writing c's line")
        stderr = interrupt_and_drain(build, read_end)  # the reader goes on
    finally:
        reap(build, read_end)
    assert build.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = [json.loads(line) for line in stderr.splitlines()]
    said = [line.get("message", "") for line in lines if line["event"] == "warning"]
    assert any(message.startswith("interrupted (SIGINT)") for message in said), stderr
    manifest = gated.manifest()
    assert manifest["status"] == "interrupted"
    assert {"a.txt", "b.txt", "c.txt"} <= {o["path"] for o in manifest["outputs"]}


SLOW_IMPORT = """\
import os

open("importing", "w").close()
with open("gate") as gate:  # a FIFO: the import blocks until the test opens it for writing
    gate.read()

def work(value, ctx):
    return value.upper()
"""


def test_worker_threads_wait_for_a_module_another_one_is_importing(project: Project) -> None:
    project.config(GATED.replace("gated:work", "slow:work"))
    project.write({"slow.py": SLOW_IMPORT, **{f"in/{n}.txt": f"{n}\n" for n in "abcd"}})
    os.mkfifo(project.root / "gate")
    command = [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "4", "--executor", "thread"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    build = subprocess.Popen(command, cwd=project.root, text=True, **pipes)
    wait_until(lambda: (project.root / "importing").exists(), "the first job to start importing")
    open_gate(project)
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == 0, stderr
    assert [project.read(f"_build/{n}.txt") for n in "abcd"] == [f"{n.upper()}\n" for n in "abcd"]


def test_a_forked_worker_names_its_temporary_files_apart_from_its_parent() -> None:
    from batchit.fsutil import temp_name_for

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, temp_name_for("out.txt").encode())
        os._exit(0)
    os.close(write_end)
    child_name = os.read(read_end, 4096).decode()
    os.waitpid(pid, 0)
    parent_name = temp_name_for("out.txt")
    assert child_name.startswith(".batchit-tmp-") and child_name.endswith("-out.txt")
    assert child_name.split("-")[2] != parent_name.split("-")[2], "the process tokens differ"


GATED_SHELL = GATED.replace(
    'python: {function: "gated:work", version: "1"}',
    'shell: {argv: ["sh", "-c", "case {in} in *c.txt) touch started; cat gate;; esac; cat {in}"]}',
)
"""Five inputs copied by a command; the one for `c` first waits on the FIFO `gate` (when it exists)."""


def test_ctrl_c_during_a_command_interrupts_the_build_and_quarantines_nothing(project: Project) -> None:
    project.config(GATED_SHELL)
    project.write({f"in/{n}.txt": f"{n}\n" for n in "abcde"})
    os.mkfifo(project.root / "gate")
    command = [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "1"]
    build = subprocess.Popen(command, cwd=project.root, start_new_session=True, stderr=subprocess.PIPE)
    wait_until(lambda: (project.root / "started").exists(), "the blocking command to start")
    os.killpg(build.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the command gets it too
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == 130, stderr
    manifest = project.manifest()
    assert manifest["status"] == "interrupted"
    assert manifest["failures"] == []
    assert not (project.root / ".batchit/quarantine").exists()

    (project.root / "gate").unlink()
    project.build()
    assert project.read("_build/c.txt") == "c\n"


def test_sigterm_to_the_build_alone_stops_its_running_commands(project: Project) -> None:
    """A CI runner cancelling a job signals batchit's pid only: the commands it runs stop with it."""
    project.config(GATED_SHELL.replace("touch started; cat gate", "echo $$ > started; cat gate & wait"))
    project.write({f"in/{n}.txt": f"{n}\n" for n in "abcde"})
    os.mkfifo(project.root / "gate")
    build = start_build(project)
    started = project.root / "started"
    wait_until(lambda: started.exists() and started.read_text().strip().isdigit(), "the command to start")
    command_pid = int(project.read("started"))
    build.send_signal(signal.SIGTERM)
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == 130, stderr
    wait_until(lambda: process_gone(command_pid), "the command to be stopped")
    assert project.manifest()["failures"] == []
    assert not (project.root / ".batchit/quarantine").exists()


def test_sigterm_before_the_jobs_run_exits_130_saying_so(project: Project) -> None:
    """Outside the job loop (here: reading the config) SIGTERM ends batchit as Ctrl-C does."""
    fifo = project.root / "batchit.yaml"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "batchit", "build", "--no-progress"]
    build = subprocess.Popen(command, cwd=project.root, stderr=subprocess.PIPE, text=True)
    writer = None

    def reading() -> bool:  # opening a FIFO's write end without blocking works once a reader has it
        nonlocal writer
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        return True

    try:
        wait_until(reading, "batchit to read its config")
        build.send_signal(signal.SIGTERM)
        # A signal landing just before the blocking read is handled once the read returns (Python
        # runs handlers between bytecodes), so give it something to return: either way, SIGTERM
        # wins before the config is used.
        assert writer is not None
        with contextlib.suppress(BrokenPipeError):  # batchit may be gone already
            os.write(writer, COPY_CONFIG.encode())
        os.close(writer)
        writer = None
        _, stderr = build.communicate(timeout=60)
    finally:
        if writer is not None:
            os.close(writer)
    assert build.returncode == 130, stderr
    assert "interrupted" in stderr


def test_a_second_ctrl_c_while_batchit_says_interrupted_prints_no_traceback(project: Project) -> None:
    """Outside the job loop, the first Ctrl-C ends batchit with 130 and 'batchit: interrupted'; a
    second, landing while that line is being written (to a reader slower than batchit, here one
    that reads nothing until then), changes nothing. It escaped as a KeyboardInterrupt traceback."""
    fifo = project.root / "batchit.yaml"
    os.mkfifo(fifo)
    read_end, write_end = os.pipe()
    fill_pipe(write_end)  # batchit's first line to stderr waits until the test reads
    command = [sys.executable, "-m", "batchit", "build", "--no-progress"]
    build = subprocess.Popen(command, cwd=project.root, stderr=write_end)
    os.close(write_end)
    writer = None

    def reading() -> bool:  # opening a FIFO's write end without blocking works once a reader has it
        nonlocal writer
        with contextlib.suppress(OSError):
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        return writer is not None

    try:
        wait_until(reading, "batchit to read its config")
        build.send_signal(signal.SIGINT)
        assert writer is not None
        with contextlib.suppress(BrokenPipeError):  # batchit may have stopped reading already
            os.write(writer, COPY_CONFIG.encode())  # else the read returns: the Ctrl-C is handled
        os.close(writer)
        wait_until(lambda: blocked_on_pipe(build.pid, "write"), "batchit to say it was interrupted")
        stderr = interrupt_and_drain(build, read_end)
    finally:
        reap(build, read_end)
    assert build.returncode == 130, stderr
    assert stderr == "batchit: interrupted\n"


STOP_AT_START = """\
import importlib.abc, os, runpy, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever started us
where, signum = sys.argv[1], getattr(signal, sys.argv[2])

class StopWhileImporting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if where == "import" and name == "batchit.cli.parser":  # a module `batchit.cli` imports
            os.kill(os.getpid(), signum)
        return None

def stop_while_parsing(frame, event, arg):
    if where == "parse" and event == "call" and frame.f_code.co_name == "build_parser":
        os.kill(os.getpid(), signum)

sys.meta_path.insert(0, StopWhileImporting())
sys.setprofile(stop_while_parsing)
sys.argv = ["batchit", "build"]
runpy.run_module("batchit", run_name="__main__", alter_sys=True)
"""
"""`python -m batchit build`, sent `argv[2]` (SIGINT, SIGTERM) by itself as it starts: while it
imports its command line (`import`) or while it parses the arguments (`parse`)."""


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("where", ["import", "parse"])
def test_a_stop_signal_as_batchit_starts_exits_130_saying_so(
    project: Project, where: str, signum: str
) -> None:
    """A Ctrl-C or a CI runner's SIGTERM landing in the first tenth of a second printed a
    traceback, and the build ended as killed by SIGINT (-2) or SIGTERM (-15) instead of 130."""
    script = project.root / "start.py"
    script.write_text(STOP_AT_START)
    started = subprocess.run(
        [sys.executable, str(script), where, signum],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 130 == BuildInterrupted.exit_code, started.stderr
    assert started.stderr == "batchit: interrupted\n"
    assert not (project.root / ".batchit").exists()


def test_a_stopped_build_starts_no_further_command_of_a_batch(project: Project) -> None:
    """Jobs travel in batches: once stopped, a worker thread finishing one job's command must not
    start the next job's."""
    project.config(
        'version: 1\nrules:\n  slow:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [shell: {argv: [sh, -c, "echo $$ >> started; sleep 300; cat {in}"]}]\n'
    )
    project.write({f"in/{n:02}.txt": f"{n}\n" for n in range(20)})
    command = [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "2", "--batch-size", "10"]
    build = subprocess.Popen(command, cwd=project.root, stderr=subprocess.PIPE, text=True)
    started = project.root / "started"

    def pids() -> list[int]:
        return [int(line) for line in started.read_text().split()] if started.exists() else []

    wait_until(lambda: len(pids()) == 2, "both worker threads to start a command")
    build.send_signal(signal.SIGINT)
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == 130, stderr
    assert len(pids()) == 2, "no command started after the stop"
    for pid in pids():
        wait_until(lambda pid=pid: process_gone(pid), f"command {pid} to stop")
    assert project.manifest()["failures"] == []


@pytest.mark.parametrize("inputs", [6, PROCESSES_FROM], ids=["threads", "processes"])
def test_a_stopped_build_starts_no_further_job_of_a_batch(project: Project, inputs: int) -> None:
    """Not only commands: once stopped, a worker starts none of its batch's other jobs, and the
    summary says how many jobs the stop left for the next build."""
    project.config(
        HOLD_CONFIG.replace("jobs: 1\n", "").replace("    steps:", "    resources: cpu\n    steps:")
    )
    project.write({"hold.py": HOLD, **{f"src/{n:03}.txt": f"{n}\n" for n in range(inputs)}})
    command = [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "2", "--batch-size", "3"]
    build = subprocess.Popen(
        command,
        cwd=project.root,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def started() -> list[str]:
        return sorted(path.name.removeprefix("started-") for path in project.root.glob("started-*"))

    try:
        wait_until(lambda: len(started()) == 2, "both workers to start a job")
        os.killpg(build.pid, signal.SIGINT)  # Ctrl-C: the build and its workers
        assert build.stderr is not None
        said = build.stderr.readline()  # the build's warning comes once it has passed the stop on
        assert "interrupted (SIGINT)" in said, said  # and nothing before it: no process died of it
        for name in started():
            (project.root / f"release-{name}").touch()  # the running jobs may finish
        out, err = build.communicate(timeout=60)
    finally:
        if build.poll() is None:  # a failed check: leave no build running behind the test
            os.killpg(build.pid, signal.SIGKILL)
            build.communicate()

    assert build.returncode == 130, said + err
    assert len(started()) == 2, "no job started after the stop"
    assert f"2 built, {inputs - 2} not finished (the next build runs them)" in out, out + err
    assert project.manifest()["failures"] == []


def start_commands_in_workers(project: Project, stderr: int) -> tuple[subprocess.Popen[str], list[int]]:
    """Start a build in a session of its own whose two worker processes each run a command that
    sleeps; return it once both run, with the pids of both commands and both worker processes."""
    project.config(
        'version: 1\nrules:\n  slow:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        "    resources: cpu\n"
        '    steps: [shell: {argv: [sh, -c, "echo $$ $PPID >> started; sleep 300; cat {in}"]}]\n'
    )
    project.write({f"in/{n:03}.txt": f"{n}\n" for n in range(PROCESSES_FROM)})
    command = [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "2"]
    build = subprocess.Popen(command, cwd=project.root, start_new_session=True, stderr=stderr, text=True)
    started = project.root / "started"

    def pids() -> list[int]:
        return [int(pid) for pid in started.read_text().split()] if started.exists() else []

    wait_until(lambda: len(pids()) == 4, "both worker processes to start a command")
    return build, pids()


def test_no_command_a_worker_process_runs_outlives_a_stopped_build(project: Project) -> None:
    """A `shell` rule declared `cpu` runs in worker processes, which leave Ctrl-C to the coordinator
    but pass it on to their commands, and kill them when they are terminated."""
    build, pids = start_commands_in_workers(project, subprocess.PIPE)
    os.killpg(build.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == 130, stderr
    for pid in pids:
        wait_until(lambda pid=pid: process_gone(pid), f"process {pid} to stop")


GATED_PRELOAD = """\
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from batchit.operators.base import JobContext, Operator

if sys.argv[:1] == ["-c"]:  # the forkserver preloading it ('python -c'), not batchit loading the rule
    Path("preloading").touch()
    while not Path("release").exists():
        time.sleep(0.01)


class Same(Operator):
    name = "test.same"
    version = "1"
    resources = "cpu"
    params_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        return value
"""
"""An installed operator whose module holds up the forkserver that preloads it until `release` exists."""


@contextlib.contextmanager
def build_waiting_for_its_forkserver(project: Project, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A first build of PROCESSES_FROM `cpu` jobs, in a session of its own, once its main thread is
    inside the process pool's first `submit`, waiting for the forkserver to fork the workers while
    the forkserver still imports the build's operators (GATED_PRELOAD). Released at the end."""
    site = tmp_path / "site"
    info = site / "same_op-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "gated_preload.py").write_text(GATED_PRELOAD)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: same-op\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[batchit.operators]\ntest.same = gated_preload:Same\n")
    project.config(
        'version: 1\nrules:\n  same:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        "    steps: [test.same: {}]\n"
    )
    project.write({f"in/{n:03}.txt": f"{n}\n" for n in range(PROCESSES_FROM)})
    build = subprocess.Popen(
        [sys.executable, "-m", "batchit", "build", "--no-progress", "-j", "2"],
        cwd=project.root,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])},
    )
    try:
        wait_until(lambda: (project.root / "preloading").exists(), "the forkserver to preload the operator")
        wait_until(lambda: blocked_on_pipe(build.pid, "read"), "the build to wait for its first worker")
        yield build
    finally:
        if build.poll() is None:  # a failed check: leave no build running behind the test
            os.killpg(build.pid, signal.SIGKILL)
        (project.root / "release").touch()  # the forkserver then sees its build gone, and ends
        build.communicate(timeout=60)  # its pipes close once the forkserver has ended too


def test_a_second_ctrl_c_while_the_workers_start_exits_at_once(project: Project, tmp_path: Path) -> None:
    """The main thread holds the process pool's lock while it starts the workers (in `submit`): the
    second Ctrl-C's handler waited for that lock, inside its holder, and the build hung for good."""
    with build_waiting_for_its_forkserver(project, tmp_path) as build:
        build.send_signal(signal.SIGINT)
        read_stderr_until(build, "interrupted (SIGINT)")
        build.send_signal(signal.SIGINT)
        assert build.wait(timeout=60) == 130  # the forkserver still holds up the workers


def test_ctrl_c_while_the_forkserver_preloads_spares_it(project: Project, tmp_path: Path) -> None:
    """The forkserver starts with SIGINT ignored: a Ctrl-C to the whole process group while it
    imports the build's operators would end it with a KeyboardInterrupt (or, earlier in its start,
    a 'Fatal Python error'), and the build with it. The build itself stops as on any Ctrl-C."""
    with build_waiting_for_its_forkserver(project, tmp_path) as build:
        os.killpg(build.pid, signal.SIGINT)  # Ctrl-C: the build, the forkserver, the resource tracker
        said = read_stderr_until(build, "interrupted (SIGINT)")
        (project.root / "release").touch()
        out, err = build.communicate(timeout=60)
    assert build.returncode == 130, said + err
    assert "Traceback" not in said + err and "Fatal Python error" not in said + err
    assert "not finished (the next build runs them)" in out, out


SIGNAL_INSIDE_FORWARDING = """\
import os, signal, sys
from pathlib import Path

from batchit.execute.pools import _leave_interrupts_to_the_coordinator
from batchit.operators.commands import CommandStopped, run_command

_leave_interrupts_to_the_coordinator()  # a worker process's handlers
lines = 0

def forwarding(frame, event, arg):
    global lines
    if event == "line":
        lines += 1
        if lines == int(sys.argv[1]):  # a second Ctrl-C lands here, inside the first one's forwarding
            os.kill(os.getpid(), signal.SIGINT)
    return forwarding

def outermost(frame, event, arg):
    return forwarding if frame.f_code.co_name == "signal_commands" and lines == 0 else None

sys.settrace(outermost)
try:
    # The command asks for the first Ctrl-C itself, and ends at the next: trapped, so that one
    # landing before its loop starts is not lost.
    loop = "trap 'exit 130' INT; kill -INT $PPID; while :; do sleep 0.05; done"
    done = run_command(["sh", "-c", loop], b"", Path.cwd(), None, None)
    print("ended", done.returncode)
except CommandStopped:
    print("stopped")
"""


@pytest.mark.parametrize("line", range(1, 5))
def test_a_second_ctrl_c_inside_the_forwarding_of_the_first_never_hangs_a_worker(
    tmp_path: Path, line: int
) -> None:
    """A terminal's Ctrl-C reaches a worker process, and so does the coordinator's forwarding of
    it: the second can land while the worker's handler is still passing the first on."""
    script = tmp_path / "worker.py"
    script.write_text(SIGNAL_INSIDE_FORWARDING)
    worker = subprocess.run(
        [sys.executable, str(script), str(line)], capture_output=True, text=True, timeout=30, check=False
    )
    assert worker.stdout in ("ended 130\n", "stopped\n"), worker.stderr


FORKSERVER_DIES = """\
import os, signal, sys
from multiprocessing import forkserver

from batchit.cli import main

real = forkserver.read_signed

def read_signed(fd):  # the forkserver reports a worker it started: it is killed just before
    forkserver.read_signed = real
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)
    return real(fd)

if __name__ == "__main__":  # not in the processes the forkserver starts
    forkserver.read_signed = read_signed
    sys.exit(main(["build", "--no-progress", "-j", "2", "--executor", "local"]))
"""


def test_a_forkserver_killed_as_it_starts_the_workers_is_started_again(project: Project) -> None:
    """The process that forks the worker processes (the out-of-memory killer's pick, say) died
    while the pool started them: the build crashed with an EOFError traceback, recording nothing."""
    project.config(
        'version: 1\nrules:\n  work:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        "    resources: cpu\n    steps: [text.load: {}, text.replace: {pattern: a, replacement: A}]\n"
    )
    project.write({f"in/{n:03}.txt": f"a{n}\n" for n in range(PROCESSES_FROM)})
    (project.root / "build.py").write_text(FORKSERVER_DIES)
    build = subprocess.run(
        [sys.executable, "build.py"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    assert "Traceback" not in build.stderr
    assert project.read("_build/007.txt") == "A7\n"
    assert project.build().stdout.startswith(f"batchit: ok: {PROCESSES_FROM} up to date")


def test_a_killed_build_leaves_no_worker_process_or_command_running(project: Project) -> None:
    """SIGKILL (the out-of-memory killer, a CI runner's hard stop) gives the coordinator no chance
    to stop anything: its worker processes notice it is gone, and end with their commands."""
    # stderr: the resource tracker left behind reports the killed coordinator's semaphores
    build, pids = start_commands_in_workers(project, subprocess.DEVNULL)
    build.kill()
    build.wait(timeout=60)
    for pid in pids:
        wait_until(lambda pid=pid: process_gone(pid), f"process {pid} to end")


def test_a_store_a_killed_first_build_left_half_made_is_completed_by_the_next(copies: Project) -> None:
    """Before the store was made in one transaction, a build killed while making it left some
    tables and not others; planning then failed on every later command."""
    state = copies.root / ".batchit" / "state.db"
    state.parent.mkdir()
    with contextlib.closing(sqlite3.connect(state)) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
        db.execute("INSERT INTO meta VALUES ('schema', '1')")
        db.commit()
    copies.build()
    assert copies.manifest()["summary"]["built"] == 3
    assert copies.build().stdout.startswith("batchit: ok: 3 up to date")


def test_what_an_unfinished_run_left_is_named_by_its_path_when_swept(copies: Project) -> None:
    copies.build()
    state = copies.root / ".batchit"
    (state / "build-in-progress").write_text("")  # as a run killed before its end leaves it
    stray = copies.root / "_build" / ".batchit-tmp-0123456789ab-7-a.txt"
    stray.write_text("cut short")
    result = copies.build()
    assert f"removed {stray.relative_to(copies.root)}, left by a run that did not finish" in result.stderr
    assert not stray.exists()


def test_many_files_an_unfinished_run_left_are_named_a_few_and_counted(copies: Project) -> None:
    """A build killed amid thousands of small jobs leaves hundreds of temporary and cache files: a
    line each would bury the build's own output, so the first ten are named and the rest counted."""
    copies.build()
    (copies.root / ".batchit" / "build-in-progress").write_text("")
    strays = [copies.root / "_build" / f".batchit-tmp-0123456789ab-{n}-a.txt" for n in range(30)]
    for stray in strays:
        stray.write_text("cut short")
    result = copies.build()
    removed = [line for line in result.stderr.splitlines() if line.startswith("warning: removed")]
    assert len(removed) == 11, result.describe()
    assert removed[-1] == f"warning: removed 20 more files left by {UNFINISHED_RUN}", result.describe()
    assert not any(stray.exists() for stray in strays)


def interrupt_and_drain(build: subprocess.Popen[bytes], read_end: int) -> str:
    """Send `build` a Ctrl-C, read its stderr (the pipe `read_end` reads) until it ends, and wait
    for it to exit; return what it said."""
    build.send_signal(signal.SIGINT)
    said = drain(read_end)
    build.wait(timeout=60)
    return said


def reap(build: subprocess.Popen[bytes], read_end: int) -> None:
    """Close the test's end of `build`'s stderr pipe and kill `build` if it is still running."""
    os.close(read_end)
    if build.poll() is None:
        build.kill()
        build.wait()
