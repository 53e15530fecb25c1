"""`build --executor dask[=ADDRESS]`: `cpu` jobs on a Dask cluster, `io` jobs in the coordinator, one
state store (SPEC section 10). Every build runs the real CLI against a real `distributed` cluster."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HOLD, HOLD_CONFIG, Project, wait_until

distributed = pytest.importorskip("distributed")  # the `dask` extra, in `test` too

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("dask-cluster"),  # one test process runs them all: one cluster
]

CONFIG = """\
version: 1
out: _build
rules:
  shout:
    inputs: ["src/*.txt"]
    output: "shout/{stem}.txt"
    steps:
      - python: {function: "tools:shout", version: "1"}
  fetch:
    inputs: ["src/*.txt"]
    output: "fetch/{stem}.txt"
    resources: io
    steps:
      - python: {function: "tools:shout", version: "1"}
  index:
    inputs: {rule: shout}
    aggregate: true
    output: index.txt
    steps:
      - python: {function: "tools:join", version: "1"}
"""
"""A `cpu` rule, an `io` rule, and an aggregate of the `cpu` rule's outputs."""

TOOLS = """\
import threading

def shout(value, ctx):
    ctx.log.info("ran in thread %s", threading.current_thread().name)
    return value.decode().upper()

def join(value, ctx):
    return "".join(item.read_text() for item in value)
"""
"""Steps that log which thread ran them: a Dask worker's (`Dask-Default-Threads`) or batchit's own."""

SOURCES = {f"src/{name}.txt": f"{name} is a file\n" for name in ("a", "b", "c", "d", "e")}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A real Dask cluster (two single-threaded worker processes on 127.0.0.1), shared by the module's
    tests because starting one takes seconds: its scheduler's address."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},  # a free port, not 8787 (a warning if taken)
        silence_logs=logging.CRITICAL,
    ) as local:
        yield local.scheduler_address


@pytest.fixture
def shouting(project: Project) -> Project:
    """CONFIG with its tools and five inputs, not yet built."""
    project.write({"batchit.yaml": CONFIG, "tools.py": TOOLS, **SOURCES})
    return project


def twin(project: Project, tmp_path: Path) -> Project:
    """A copy of `project` (not yet built) in a folder of its own, to build with another executor."""
    copy = Project(tmp_path / "twin")
    shutil.copytree(project.root, copy.root)
    return copy


def outputs(project: Project) -> list[dict[str, Any]]:
    """The latest manifest's outputs, but for the manifest copies' own entries."""
    return project.manifest()["outputs"]  # type: ignore[no-any-return]


def job_log(project: Project, output: str) -> str:
    """What the job writing `output` (relative to `out`) logged in the latest run."""
    runs = project.root / ".batchit" / "runs"
    return (runs / (runs / "LATEST").read_text().strip() / "logs" / f"{output}.log").read_text()


def test_a_build_on_a_cluster_writes_what_a_local_build_writes(
    shouting: Project, cluster: str, tmp_path: Path
) -> None:
    local = twin(shouting, tmp_path)
    shouting.build("--executor", f"dask={cluster}")
    local.build("--executor", "local")
    built = shouting.snapshot("_build")
    assert built.pop("_build/batchit-manifest.json") and built.pop("_build/batchit-manifest.json.sig")
    expected = local.snapshot("_build")
    del expected["_build/batchit-manifest.json"], expected["_build/batchit-manifest.json.sig"]
    assert built == expected
    assert built["_build/index.txt"] == b"".join(built[f"_build/shout/{n}.txt"] for n in "abcde")
    assert outputs(shouting) == outputs(local)
    assert shouting.manifest()["summary"]["built"] == 11


def test_cpu_jobs_run_on_the_cluster_and_io_jobs_in_the_coordinator(shouting: Project, cluster: str) -> None:
    shouting.build("--executor", f"dask={cluster}")
    assert "-Dask-Default-Threads-" in job_log(shouting, "shout/a.txt")
    assert "thread batchit-io" in job_log(shouting, "fetch/a.txt")


def test_a_local_build_after_a_cluster_build_builds_nothing(shouting: Project, cluster: str) -> None:
    shouting.build("--executor", f"dask={cluster}")
    before = outputs(shouting)
    shouting.build()
    assert shouting.manifest()["summary"]["built"] == 0
    assert shouting.manifest()["summary"]["up_to_date"] == 11
    after = outputs(shouting)
    assert {o["status"] for o in after} == {"up_to_date"}
    assert [{**o, "status": "built"} for o in after] == before


def test_dask_alone_starts_a_local_cluster_for_the_build(shouting: Project) -> None:
    shouting.build("--executor", "dask", "-j", "2")
    assert shouting.read("_build/shout/a.txt") == "A IS A FILE\n"
    assert "Dask-Default-Threads" in job_log(shouting, "shout/a.txt")
    assert shouting.manifest()["summary"]["built"] == 11


def spawned_children(pid: int) -> list[int]:
    """The processes `pid` started through multiprocessing's spawn (a local cluster's nannies and
    workers; not its resource tracker), read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # it ended meanwhile
        if parent == pid and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def group_alive(group: int) -> bool:
    """True while any process of the process group `group` runs."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_while_the_local_cluster_starts_stops_it_and_exits_130_without_tracebacks(
    shouting: Project,
) -> None:
    """A Ctrl-C reaches the terminal's whole process group, the cluster's processes too while they
    are still starting: they ignore it, and the build takes it once the cluster is up, stops the
    cluster and exits 130 having built nothing."""
    build = subprocess.Popen(
        [sys.executable, "-m", "batchit", "build", "--no-progress", "--executor", "dask", "-j", "2"],
        cwd=shouting.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a group of its own, as a terminal gives a command
    )  # fmt: skip
    try:
        wait_until(lambda: bool(spawned_children(build.pid)), "the cluster's first process to start")
        os.killpg(build.pid, signal.SIGINT)  # Ctrl-C
        _, stderr = build.communicate(timeout=120)
    finally:
        build.kill()
    assert build.returncode == 130, stderr
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    assert not (shouting.root / "_build").exists()
    wait_until(lambda: not group_alive(build.pid), "the cluster's processes to end")


def test_a_permanent_failure_on_a_cluster_quarantines_as_locally(
    picky: Project, cluster: str, tmp_path: Path
) -> None:
    local = twin(picky, tmp_path)
    picky.build("--executor", f"dask={cluster}", expect=1)
    local.build("--executor", "local", expect=1)
    copies = [p.snapshot(".batchit/quarantine")[".batchit/quarantine/parse/in/b.txt"] for p in (picky, local)]
    assert copies == [b"bad\n", b"bad\n"]
    listed = [json.loads(p.run("quarantine", "list", "--json").stdout) for p in (picky, local)]
    for quarantined in listed:
        for entry in quarantined:
            for changing in ("run_id", "time"):
                entry.pop(changing, None)
    assert listed[0] == listed[1] != []
    assert [f["class"] for f in picky.manifest()["failures"]] == ["PermanentError"]
    assert outputs(picky) == outputs(local)


def test_an_unreachable_scheduler_exits_2_naming_it_and_writes_nothing(shouting: Project) -> None:
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    result = shouting.run(
        "build", "--no-progress", "--executor", f"dask={address}",
        env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"},
    )  # fmt: skip
    assert result.code == 2, result.describe()
    assert f"cannot connect to the Dask scheduler at {address}" in result.stderr, result.describe()
    assert "fix:" in result.stderr and "--executor dask" in result.stderr, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert shouting.snapshot(".batchit", "_build") == {}


def test_a_scheduler_with_no_worker_exits_2_naming_it_instead_of_waiting_forever(shouting: Project) -> None:
    with distributed.LocalCluster(
        n_workers=0,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
        silence_logs=logging.CRITICAL,
    ) as empty:
        result = shouting.run(
            "build", "--no-progress", "--executor", f"dask={empty.scheduler_address}",
            env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"},
            timeout=60,
        )  # fmt: skip
    assert result.code == 2, result.describe()
    assert f"the Dask cluster at {empty.scheduler_address} has no worker" in result.stderr, result.describe()
    assert "dask worker" in result.stderr and "Traceback" not in result.stderr, result.describe()
    assert shouting.snapshot(".batchit", "_build") == {}


def test_without_distributed_the_dask_executor_exits_2_naming_the_extra(shouting: Project) -> None:
    hide = "import sys; sys.modules['distributed'] = None; from batchit.cli import main; sys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", hide, "build", "--no-progress", "--executor", "dask"],
        cwd=shouting.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'batchit[dask]'" in proc.stderr
    assert shouting.snapshot(".batchit", "_build") == {}


def test_ctrl_c_cancels_batches_not_started_and_commits_running_ones(project: Project) -> None:
    project.write(
        {
            "batchit.yaml": HOLD_CONFIG,
            "hold.py": HOLD,
            **SOURCES,
        }
    )
    build = subprocess.Popen(
        [sys.executable, "-m", "batchit", "build", "--no-progress", "--executor", "dask", "-j", "1",
         "--batch-size", "1"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: (project.root / "started-a.txt").exists(), "the first job to start")
        build.send_signal(signal.SIGINT)
        wait_until(
            lambda: any(
                "interrupted" in log.read_text() for log in project.root.glob(".batchit/runs/*/*.jsonl")
            ),
            "the build to take the interrupt",
        )
        (project.root / "release-a.txt").touch()
        _, stderr = build.communicate(timeout=60)
    finally:
        build.kill()
    assert build.returncode == 130, stderr
    assert project.read("_build/a.txt") == SOURCES["src/a.txt"]  # it ran on: committed
    assert sorted(p.name for p in project.root.glob("started-*")) == ["started-a.txt"]  # b was cancelled
    assert [o["path"] for o in outputs(project)] == ["a.txt"]


def test_ctrl_c_starts_no_further_job_of_a_batch_a_worker_runs(project: Project, cluster: str) -> None:
    project.write({"batchit.yaml": HOLD_CONFIG.replace("jobs: 1\n", ""), "hold.py": HOLD, **SOURCES})
    build = subprocess.Popen(
        [sys.executable, "-m", "batchit", "build", "--no-progress", "--executor", f"dask={cluster}",
         "-j", "2", "--batch-size", "3"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def started() -> list[str]:
        return sorted(path.name for path in project.root.glob("started-*"))

    try:
        wait_until(lambda: len(started()) == 2, "both workers to start a batch's first job")
        build.send_signal(signal.SIGINT)
        assert build.stderr is not None
        said = build.stderr.readline()  # the warning comes once the workers were told
        assert "interrupted (SIGINT)" in said, said
        for name in started():
            (project.root / name.replace("started-", "release-")).touch()
        out, err = build.communicate(timeout=60)
    finally:
        build.kill()
    assert build.returncode == 130, said + err
    assert len(started()) == 2, "no job started after the stop"
    assert "2 built, 3 not finished" in out, out + err


@pytest.mark.parametrize("value", ["dask=", "local=tcp://127.0.0.1:8786", "spark"])
def test_an_executor_that_is_not_local_thread_dask_or_dask_address_is_a_usage_error(
    shouting: Project, value: str
) -> None:
    result = shouting.run("build", "--no-progress", "--executor", value)
    assert result.code == 2, result.describe()
    assert f"{value!r} is not local, thread, dask or dask=ADDRESS" in result.stderr, result.describe()
    assert shouting.snapshot(".batchit", "_build") == {}
