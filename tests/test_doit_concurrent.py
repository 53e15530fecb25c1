"""Two `doit` runs on one batchit project at once (SPEC sections 7 and 9), through the real command:
each job runs once, and both runs end well and are recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Project, wait_until
from test_doit import DODO
from test_doit_records import kept_runs

from batchit.state.lock import DOIT_LOCK, ProjectLock
from batchit.state.store import StateStore

pytestmark = pytest.mark.slow  # each doit and batchit run is a fresh interpreter

HELD = """\
import time


def work(value, ctx):
    with open(ctx.root / "ran.log", "a") as log:
        log.write(ctx.output + "\\n")
    while not (ctx.root / "release").exists():  # until the test lets the job go
        time.sleep(0.01)
    return value
"""
"""A step that notes each time a job runs, then holds it until the file `release` exists."""

CONFIG = """\
version: 1
out: _build
rules:
  copy:
    inputs: ["src/*.txt"]
    output: "{name}"
    steps: [python: {function: "held:work", version: "1"}]
"""


def waiting_for_a_lock(pid: int) -> bool:
    """True while process `pid` waits to take a file lock: Linux lists such requests in
    /proc/locks, marked `->`, with the waiting process's pid."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and fields[fields.index("->") + 4] == str(pid):
            return True
    return False


@pytest.mark.parametrize("parallel", [(), ("-n", "2", "-P", "thread")], ids=["serial", "threads"])
def test_a_second_doit_run_waits_for_the_job_the_first_runs_and_both_record(
    tmp_path: Path, parallel: tuple[str, ...]
) -> None:
    """The second run's sub-task waits for the job's lock (in doit's process: serial, or a thread)."""
    (tmp_path / "dodo.py").write_text(DODO, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(CONFIG)
    site.write({"held.py": HELD, "src/a.txt": "alpha\n"})
    log = site.root / "ran.log"

    def ran() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    def start(*options: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "doit", *options]
        return subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    runs = [start()]
    try:
        wait_until(lambda: ran() == ["a.txt"], "the first run to start the job")
        runs.append(start(*parallel))
        pid = runs[1].pid
        wait_until(lambda: waiting_for_a_lock(pid) or len(ran()) > 1, "the second run to reach the job")
        (site.root / "release").touch()
        outcomes = [(*run.communicate(timeout=120), run.returncode) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    for out, err, code in outcomes:
        assert code == 0, f"exit {code}\n{out}\n{err}"
    assert ran() == ["a.txt"], "the second run found the job up to date once the first had run it"
    assert len(kept_runs(site)) in (1, 2)  # the second records too when it gets there first
    assert site.manifest()["summary"]["built"] + site.manifest()["summary"]["up_to_date"] == 1
    assert site.run("verify").code == 0


TWO_RULES = """\
version: 1
out: {out}
rules:
  a:
    inputs: ["src/a.txt"]
    output: "{{name}}"
    steps: [file.copy: {{}}]
  b:
    inputs: ["src/b.txt"]
    output: "{{name}}"
    steps: [file.copy: {{}}]
"""


def readying_the_store(pid: int) -> bool:
    """True while doit's process `pid` waits for the state store to be readied by someone else:
    waiting for a file lock, or asleep between two looks (its main thread in `nanosleep`)."""
    try:
        sleeping = "nanosleep" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        sleeping = False
    return sleeping or waiting_for_a_lock(pid)


def test_a_sub_task_goes_on_once_the_store_is_ready_though_another_holds_the_doit_lock(
    tmp_path: Path,
) -> None:
    """A sub-task that finds the state store not ready for its `out` readies it under the doit lock
    held alone; while another doit run's sub-task holds that lock for a long job (here, the test),
    it must go on as soon as someone has readied the store, not wait for that job to end. (With
    `-P thread` on a project never built, a sub-task's own sibling was that other holder.)"""
    (tmp_path / "dodo.py").write_text(DODO, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(TWO_RULES.format(out="_build"))
    site.write({"src/a.txt": "alpha\n", "src/b.txt": "beta\n"})
    site.build()
    site.config(TWO_RULES.format(out="_site"))  # the store's rows are _build's: not ready for _site
    command = [sys.executable, "-m", "doit"]
    with ProjectLock(site.root / ".batchit" / DOIT_LOCK, shared=True, wait=True):  # a long job of another run
        run = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_until(lambda: readying_the_store(run.pid), "doit's first sub-task to wait for the store")
            store = StateStore.open(site.root / ".batchit/state.db")  # as that other sub-task does
            try:
                store.adopt_out("_site")
            finally:
                store.close()
            wait_until(lambda: (site.root / "_site/b.txt").exists(), "the sub-tasks to run", timeout=30)
        except BaseException:
            run.kill()
            raise
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, f"{out}\n{err}"
    assert (site.read("_site/a.txt"), site.read("_site/b.txt")) == ("alpha\n", "beta\n")
