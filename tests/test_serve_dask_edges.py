"""Edge cases of `batchit serve` and `build --executor dask=ADDRESS`, through the real CLI and real
processes: a Ctrl-C in the server's terminal, a chunked request body, an address that accepts
connections but is no Dask scheduler, a worker of another batchit version joining mid-build, a
scheduler lost mid-build."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from batchit.serve.api import ApiServer
from batchit.serve.queue import BuildQueue
from tests.conftest import HOLD, HOLD_CONFIG, Project, wait_until


def started_serve(project: Project) -> tuple[subprocess.Popen[str], str]:
    """`batchit serve --port 0` as a terminal's foreground job would run it (a process group of its
    own, which a Ctrl-C signals as a whole), and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "batchit", "serve", "--port", "0"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert "listening on http://" in first, first + process.communicate(timeout=30)[1]
    return process, first.split("listening on ")[1].split()[0]


def test_ctrl_c_in_the_terminal_lets_the_running_build_finish_and_record_its_run(project: Project) -> None:
    project.write({"batchit.yaml": HOLD_CONFIG, "hold.py": HOLD, "src/a.txt": "a\n", "src/b.txt": "b\n"})
    process, url = started_serve(project)
    try:
        httpx.post(f"{url}/runs", timeout=30).raise_for_status()
        wait_until(lambda: any(project.root.glob("started-*")), "the first job to start")
        running = next(project.root.glob("started-*")).name.removeprefix("started-")

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the server and everything in its group
        (project.root / f"release-{running}").touch()  # the running job may finish in its grace
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, err
    assert "batchit serve: stopped" in out
    # The build got one interrupt, not two: it finished its running job and recorded the run.
    assert (project.root / ".batchit/runs/LATEST").is_file(), err
    recorded = [entry["path"] for entry in project.manifest()["outputs"]]
    assert recorded == [running]  # the job that ran; the other was never started


def test_a_chunked_body_is_refused_not_read_as_an_empty_one(project: Project) -> None:
    project.write({"batchit.yaml": HOLD_CONFIG, "hold.py": HOLD})
    process, url = started_serve(project)
    try:
        port = int(url.rsplit(":", 1)[1])
        body = b'{"rules": ["nothing"]}'
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(
                b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
            )  # fmt: skip
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        status = answer.split(b"\r\n", 1)[0]
        assert b" 411 " in status, answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert httpx.get(f"{url}/runs", timeout=30).json()["requests"] == []  # no build was queued
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err


def test_a_body_that_stalls_is_answered_408_and_frees_its_connection(project: Project) -> None:
    project.write({"batchit.yaml": HOLD_CONFIG, "hold.py": HOLD})
    queue = BuildQueue(project.root, "batchit.yaml")  # never started: no build may be queued
    server = ApiServer(("127.0.0.1", 0), queue, project.root / ".batchit/runs", None, idle_seconds=0.5)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        port = int(server.server_address[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b'POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{"rules"')
            answer = b""
            while chunk := conn.recv(65536):  # the server closes the connection after its answer
                answer += chunk
        assert b" 408 " in answer.split(b"\r\n", 1)[0], answer
        assert "did not arrive" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert queue.requests() == []
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json() == {"status": "ok"}
    finally:
        server.shutdown()
        server.server_close()


def test_a_report_read_slowly_arrives_whole_past_the_idle_limit(project: Project) -> None:
    """The idle limit is on silence, not on the time one answer takes to send."""
    project.write({"batchit.yaml": HOLD_CONFIG, "hold.py": HOLD})
    run_dir = project.root / ".batchit/runs/20260101T000000000Z-abcdef"
    run_dir.mkdir(parents=True)
    report = bytes(range(256)) * 64 * 1024  # 16 MiB: more than the kernel's socket buffers hold
    (run_dir / "report.html").write_bytes(report)
    (run_dir / "manifest.json").write_text("{}", encoding="utf-8")
    server = ApiServer(("127.0.0.1", 0), BuildQueue(project.root, "batchit.yaml"), run_dir.parent, None, 0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.socket() as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no kernel autotuning
            conn.settimeout(30)
            conn.connect(("127.0.0.1", int(server.server_address[1])))
            conn.sendall(f"GET /runs/{run_dir.name}/report HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = b""
            started = time.monotonic()
            while len(answer) < len(report) + 100 and (chunk := conn.recv(65536)):
                answer += chunk
                time.sleep(0.005)  # a slow reader: the whole answer takes longer than the idle limit
        assert time.monotonic() - started > 0.5  # it did outlast the idle limit
        assert answer.split(b"\r\n\r\n", 1)[1] == report
    finally:
        server.shutdown()
        server.server_close()


def server_threads(pid: int) -> int:
    """How many threads the server process runs (Linux tells through /proc)."""
    return sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())


@pytest.mark.parametrize("when", ["reading_the_body", "sending_the_answer"])
def test_a_client_resetting_its_connection_leaves_no_traceback(project: Project, when: str) -> None:
    """A client that goes away mid-request (killed, timed out, cut by a proxy) is no fault of the
    server's; each one printed a socketserver traceback on serve's terminal."""
    project.write({"batchit.yaml": HOLD_CONFIG, "hold.py": HOLD})
    run_dir = project.root / ".batchit/runs/20260101T000000000Z-abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "report.html").write_bytes(bytes(16 << 20))  # more than the kernel's socket buffers hold
    (run_dir / "manifest.json").write_text("{}", encoding="utf-8")
    process, url = started_serve(project)
    try:
        idle = 2  # the server's own threads: the one serving and the build queue's
        wait_until(lambda: server_threads(process.pid) == idle, "the server to start its threads")
        with socket.socket() as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no kernel autotuning
            conn.settimeout(30)
            conn.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
            if when == "reading_the_body":  # the server says it waits for the body, which never comes
                conn.sendall(
                    b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
                )
                assert conn.recv(65536).startswith(b"HTTP/1.1 100 ")
            else:  # the server sends a report nobody reads
                conn.sendall(f"GET /runs/{run_dir.name}/report HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: reset
        wait_until(lambda: server_threads(process.pid) == idle, "the server to be done with the connection")
        assert httpx.get(f"{url}/healthz", timeout=30).json() == {"status": "ok"}
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err == ""


class NotAScheduler(NamedTuple):
    """A server at the Dask address that is no scheduler: what it says to whoever connects
    (nothing: connections wait in its backlog), the connect timeout, and the words batchit must say."""

    greeting: bytes | None
    timeout: str
    said: str


@pytest.mark.parametrize(
    "server",
    [
        pytest.param(NotAScheduler(None, "1s", "handshake"), id="silent", marks=pytest.mark.slow),
        # an SSH server greets whoever connects: Dask would read the banner as a message's length
        pytest.param(NotAScheduler(b"SSH-2.0-OpenSSH_9.6\r\n", "5s", "not as a Dask scheduler"), id="ssh"),
    ],
)
def test_an_address_whose_server_is_no_dask_scheduler_exits_2_without_hanging_or_a_traceback(
    project: Project, server: NotAScheduler
) -> None:
    pytest.importorskip("distributed")
    project.write({"batchit.yaml": HOLD_CONFIG, "hold.py": HOLD, "src/a.txt": "a\n"})
    (project.root / "release-a.txt").touch()
    with socket.create_server(("127.0.0.1", 0)) as listening:

        def greet() -> None:
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = listening.accept()
                    with connection:
                        connection.sendall(server.greeting or b"")
                        connection.recv(1024)

        if server.greeting is not None:
            threading.Thread(target=greet, daemon=True).start()
        address = f"tcp://127.0.0.1:{listening.getsockname()[1]}"
        result = project.run(
            "build", "--no-progress", "--executor", f"dask={address}",
            env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": server.timeout},
            timeout=90,
        )  # fmt: skip

    assert result.code == 2, result.describe()
    assert f"cannot connect to the Dask scheduler at {address}" in result.stderr, result.describe()
    assert server.said in result.stderr, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert not (project.root / "_build").exists()


class DaskProcesses:
    """A Dask scheduler and workers as `dask scheduler` and `dask worker` processes of their own,
    which a test can kill one by one (a LocalCluster's nannies would restart a killed worker)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        scheduler_file = folder / "scheduler.json"
        self.scheduler = self._start("dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                     "--no-dashboard", "--scheduler-file", str(scheduler_file))  # fmt: skip
        wait_until(lambda: _address(scheduler_file) is not None, "the Dask scheduler to start")
        self.address = str(_address(scheduler_file))
        self.workers: list[subprocess.Popen[bytes]] = []

    def _start(self, program: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", f"distributed.cli.{program}", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def add_worker(self, *args: str) -> subprocess.Popen[bytes]:
        """Start one single-threaded worker and wait until the scheduler counts it."""
        worker = self._start("dask_worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                             *args)  # fmt: skip
        self.workers.append(worker)
        distributed = pytest.importorskip("distributed")
        with distributed.Client(self.address, set_as_default=False, timeout=60) as client:
            client.wait_for_workers(len(self.workers), timeout=60)
        return worker

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            process.kill()
            process.wait(timeout=30)


def _address(scheduler_file: Path) -> str | None:
    try:
        return str(json.loads(scheduler_file.read_text())["address"])
    except (OSError, ValueError, KeyError):
        return None  # not written (whole) yet


@pytest.fixture
def dask_processes(tmp_path: Path) -> Iterator[DaskProcesses]:
    """A scheduler with one worker, in processes of their own."""
    pytest.importorskip("distributed")
    cluster = DaskProcesses(tmp_path)
    try:
        cluster.add_worker()
        yield cluster
    finally:
        cluster.stop()


def hold_build(project: Project, address: str) -> subprocess.Popen[str]:
    """`build --executor dask=ADDRESS` of HOLD_CONFIG over a, b and c, one job per batch, saying
    each event on stderr as it happens (`--log-format json`)."""
    project.write({"batchit.yaml": HOLD_CONFIG, "hold.py": HOLD, **{f"src/{n}.txt": f"{n}\n" for n in "abc"}})
    return subprocess.Popen(
        [sys.executable, "-m", "batchit", "build", "--no-progress", "--executor", f"dask={address}",
         "--batch-size", "1", "--log-format", "json"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_a_worker_of_another_batchit_that_joins_mid_build_refuses_its_jobs(
    project: Project, dask_processes: DaskProcesses, tmp_path: Path
) -> None:
    """The build checked the cluster's workers when it connected; a worker that joins later is
    checked by each batch it gets, before any job of it runs."""
    other = tmp_path / "other_batchit.py"  # a worker whose batchit is another release
    other.write_text("import batchit\nbatchit.__version__ = '0.0.0+other'\n", encoding="utf-8")
    build = hold_build(project, dask_processes.address)
    try:
        wait_until(lambda: (project.root / "started-a.txt").exists(), "the first job to start")
        dask_processes.add_worker("--preload", str(other))
        dask_processes.workers[0].kill()  # its batches go to the worker that joined
        for name in "abc":
            (project.root / f"release-{name}.txt").touch()
        out, err = build.communicate(timeout=120)
    finally:
        build.kill()
    assert build.returncode == 1, out + err
    assert sorted(path.name for path in project.root.glob("started-*")) == ["started-a.txt"], out + err
    failures = project.manifest()["failures"]
    assert [f["input"] for f in failures] == ["src/a.txt", "src/b.txt", "src/c.txt"], failures
    for failure in failures:
        assert failure["class"] == "WrongWorker" and failure["quarantine"] is None, failure
        assert "runs batchit 0.0.0+other; this build runs batchit" in failure["message"], failure
        assert "install this batchit version on every worker" in failure["message"], failure
    assert not (project.root / ".batchit/quarantine").exists()
    assert all(line.startswith("{") for line in err.splitlines()), err  # no traceback


@pytest.mark.slow
def test_a_scheduler_lost_mid_build_fails_the_jobs_not_back_and_records_the_run(
    project: Project, dask_processes: DaskProcesses
) -> None:
    build = hold_build(project, dask_processes.address)
    try:
        (project.root / "release-a.txt").touch()
        assert build.stderr is not None
        while (said := json.loads(build.stderr.readline())).get("output") != "_build/a.txt":
            assert said["event"] != "summary", said  # the build took a's result in
        wait_until(lambda: (project.root / "started-b.txt").exists(), "the second job to start")
        dask_processes.scheduler.kill()
        for name in "bc":
            (project.root / f"release-{name}.txt").touch()
        out, err = build.communicate(timeout=120)
    finally:
        build.kill()
    assert build.returncode == 1, out + err
    assert all(line.startswith("{") for line in err.splitlines()), err  # no traceback
    manifest = project.manifest()
    assert [o["path"] for o in manifest["outputs"]] == ["a.txt"]
    assert [(f["input"], f["class"]) for f in manifest["failures"]] == [
        ("src/b.txt", "ClusterLost"),
        ("src/c.txt", "ClusterLost"),
    ]
    assert "the scheduler went away" in manifest["failures"][0]["message"]
    assert not (project.root / ".batchit/build-in-progress").exists()  # the run ended in order
    assert not (project.root / ".batchit/quarantine").exists()
    project.build("--executor", "local")  # the next build goes on from there
    assert [o["path"] for o in project.manifest()["outputs"]] == ["a.txt", "b.txt", "c.txt"]
