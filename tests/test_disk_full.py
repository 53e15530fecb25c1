"""A write batchit must make fails (SPEC section 7, README's exit code 1): as on a full disk, here by
a file size limit on the `batchit` process (writes past it fail with EFBIG, as they would with
ENOSPC), the build stops with one line naming the file, no traceback, and what it committed stays
committed: the next build, given room, finishes the rest and leaves what a clean build leaves."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import COPY_CONFIG, Project, Result

LOUD = """\
version: 1
out: _build
rules:
  loud:
    inputs: ["src/*.txt"]
    output: "{stem}.txt"
    steps:
      - python: {function: "loud:loud", version: "1"}
"""
"""One 1:1 rule whose `python` step logs 300 KB for an input that says "loud", nothing otherwise."""

LOUD_MODULE = """\
def loud(value, ctx):
    if value.startswith(b"loud"):
        ctx.log.info("x" * 300_000)
    return value.upper()
"""


def limited(project: Project, limit: int, *args: str) -> Result:
    """Run `batchit ARGS` in the project with no file of its growing past `limit` bytes."""
    return limited_run([sys.executable, "-m", "batchit", *args], project.root, limit)


def limited_run(command: list[str], cwd: Path, limit: int) -> Result:
    """Run `command` in `cwd` with no file of its growing past `limit` bytes."""

    def cap_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails instead of killing

    proc = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=120,
        check=False,
        preexec_fn=cap_file_size,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def integrity(project: Project) -> list[tuple[str]]:
    """What SQLite's own check says of the state store."""
    db = sqlite3.connect(project.root / ".batchit/state.db")
    try:
        return db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()


def test_a_job_log_that_cannot_be_written_stops_the_build_cleanly(project: Project) -> None:
    """The jobs already running end before batchit does: none of its own worker threads is
    mistaken for a step's, and nothing is half written."""
    project.config(LOUD)
    project.write({"loud.py": LOUD_MODULE, "src/b.txt": "loud\n"})
    project.write({f"src/{name}.txt": f"{name}\n" for name in "acdef"})
    stopped = limited(project, 200_000, "build", "--no-progress")
    assert stopped.code == 1, stopped.describe()
    assert "File too large: " in stopped.stderr and "/logs/b.txt.log" in stopped.stderr, stopped.describe()
    assert "thread" not in stopped.stderr and "Traceback" not in stopped.stderr, stopped.describe()
    assert not list((project.root / "_build").glob(".batchit-tmp-*"))
    assert integrity(project) == [("ok",)]
    project.build()
    assert {p.name: p.read_text() for p in (project.root / "_build").glob("?.txt")} == {
        f"{name}.txt": ("LOUD\n" if name == "b" else f"{name.upper()}\n") for name in "abcdef"
    }
    assert "x" * 300_000 in next((project.root / ".batchit/runs").glob("*/logs/b.txt.log")).read_text()
    assert project.build().stdout.startswith("batchit: ok: 6 up to date")


def test_an_event_log_that_cannot_be_written_is_named(project: Project) -> None:
    """A deferred job's 300 KB message goes to the run's events.jsonl, not to the state store."""
    project.config(LOUD.replace("loud:loud", "far:far"))
    far = (
        "from batchit.errors import ServiceUnreachable\n\ndef far(value, ctx):\n"
        "    if value.startswith(b'far'):\n        raise ServiceUnreachable('x' * 300_000)\n"
        "    return value.upper()\n"
    )
    project.write({"far.py": far, "src/a.txt": "a\n", "src/b.txt": "far\n"})
    stopped = limited(project, 200_000, "build", "--no-progress")
    assert stopped.code == 1, stopped.describe()
    assert stopped.stderr.startswith("batchit: error: File too large: "), stopped.describe()
    assert stopped.stderr.splitlines()[0].endswith("/events.jsonl"), stopped.describe()
    assert "Traceback" not in stopped.stderr
    assert integrity(project) == [("ok",)]
    project.build()
    assert project.read("_build/a.txt") == "A\n"
    assert project.manifest()["summary"]["deferred"] == 1


def test_reading_commands_work_on_a_full_disk(copies: Project) -> None:
    """A reader of the state store needs a shared-memory file beside it (32 KB, here past the
    limit): `plan`, `verify`, `explain` and the rest only read, and on a full disk (or a read-only
    file system) they still say what they know."""
    copies.build()
    for command in (["plan"], ["verify"], ["reconcile"], ["explain", "a.txt"], ["audit", "verify"]):
        said = limited(copies, 20_000, *command)
        assert said.code == 0, said.describe()
    assert "0 of 3 jobs to do" in limited(copies, 20_000, "plan").stdout
    assert limited(copies, 20_000, "build").code == 1, "a build must write"


def test_a_commit_waiting_in_the_wal_is_never_read_past(copies: Project) -> None:
    """Without its shared-memory file, a store whose -wal holds a commit cannot be read whole on a
    full disk: the command says the store cannot be written, rather than plan from stale rows."""
    copies.build()
    db = copies.root / ".batchit/state.db"
    commit_and_die = (
        "import os, sqlite3, sys\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "db.execute(\"UPDATE outputs SET action_key = '0' WHERE path = 'a.txt'\")\nos._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", commit_and_die, str(db)], check=True)
    db.with_name("state.db-shm").unlink()
    db.with_name("plan-snapshot.json").unlink()  # a plan from the store's rows, not the last build's
    refused = limited(copies, 20_000, "plan")
    assert refused.code == 1, refused.describe()
    assert "state.db cannot be written: disk I/O error" in refused.stderr
    assert "1 of 3 jobs to do" in copies.run("plan").stdout


def test_a_doit_sub_task_that_cannot_write_fails_with_one_line(tmp_path: Path) -> None:
    """Under doit too: the sub-task fails naming the file, as `batchit build` does, not with a
    traceback; the others run, and the next build does the rest."""
    project = Project(tmp_path / "site")
    project.config(LOUD)
    project.write({"loud.py": LOUD_MODULE, "src/a.txt": "a\n", "src/b.txt": "loud\n"})
    (tmp_path / "dodo.py").write_text('import batchit.doit\n\ntask_site = batchit.doit.tasks("site")\n')
    stopped = limited_run([sys.executable, "-m", "doit"], tmp_path, 200_000)
    said = stopped.stdout + stopped.stderr
    assert stopped.code != 0, stopped.describe()
    assert "TaskFailed - taskid:site:b.txt" in said and "batchit: File too large: " in said, said
    assert "/logs/b.txt.log" in said and "Traceback" not in said, said
    assert project.read("_build/a.txt") == "A\n"
    project.build()
    assert project.read("_build/b.txt") == "LOUD\n"


def test_a_lock_whose_pid_cannot_be_written_is_held_all_the_same(copies: Project) -> None:
    """The pid in `.batchit/lock` only tells the next taker who holds it: where not even it can be
    written, a command goes on to the write it needs, and names that file if it fails."""
    copies.build()
    refused = limited(copies, 0, "clean")
    assert refused.code == 1, refused.describe()
    assert refused.stderr.startswith("batchit: error: the state store "), refused.describe()
    assert "state.db cannot be written" in refused.stderr, refused.describe()
    assert copies.run("clean").code == 0
    assert not (copies.root / "_build/a.txt").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs), for what a file size limit cannot show: space that deleting
    files gives back. Skipped where this process may not mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_gc_on_a_full_disk_frees_old_runs_first(small_disk: Path) -> None:
    """On a disk so full that SQLite cannot open the state store, `gc` still removes the run
    records past `runs.keep` (then does the rest), as it is what a user runs to make room."""
    project = Project(small_disk)
    project.config(COPY_CONFIG.replace("version: 1\n", "version: 1\nruns: {keep: 5}\n"))
    project.write({f"src/{n}.txt": os.urandom(20_000) for n in range(40)})
    for _ in range(5):
        project.build("--force")
    project.config(COPY_CONFIG.replace("version: 1\n", "version: 1\nruns: {keep: 1}\n"))
    with (small_disk / "filler").open("wb") as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()
    full = project.run("plan")
    assert full.code == 0, "reading still works on the full disk"
    collected = project.run("gc")
    assert collected.code == 0, collected.describe()
    assert collected.stdout.startswith("gc: removed 4 run record(s)"), collected.describe()
    assert len([p for p in (small_disk / ".batchit" / "runs").iterdir() if p.is_dir()]) == 1
    (small_disk / "filler").unlink()
    assert project.build().stdout.startswith("batchit: ok: 40 up to date")
    audited = project.run("audit", "verify")
    assert audited.code == 0 and "gc" in (small_disk / ".batchit" / "audit.log").read_text(), (
        audited.describe()
    )
