"""Shared fixtures: a throwaway project on disk and a way to run the real `batchit` command in it."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import pytest

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # Tests press Ctrl-C by sending SIGINT to `batchit build`, `watch` and `serve`. A suite started
    # in the background by a non-interactive shell (`pytest &`) has SIGINT ignored, and every child
    # would inherit that and ignore the test's Ctrl-C, as a background job should. A handler of our
    # own is reset to the default in each child instead.
    signal.signal(signal.SIGINT, signal.default_int_handler)

COPY_AND_UPPER = """\
version: 1
out: _build
rules:
  copy:
    inputs: ["src/**/*.txt"]
    output: "copy/{path}.txt"
    steps:
      - file.copy: {}
  upper:
    inputs: ["src/**/*.txt"]
    output: "upper/{path}.txt"
    steps:
      - text.load: {}
      - text.replace: {pattern: "a", replacement: "A"}
  index:
    inputs: {rule: upper}
    aggregate: true
    output: index.txt
    steps:
      - python: {function: "tools:join", version: "1"}
"""
"""Three rules over src/**/*.txt: a 1:1 copy, a 1:1 transform, and an aggregate of the transform."""

TOOLS = """\
def join(value, ctx, **params):
    return "".join(item.read_text() for item in value)
"""
"""`tools.py` for the aggregate of COPY_AND_UPPER: the inputs' texts, joined."""

MARKDOWN_RULE = """\
  pages:
    inputs: ["pages/*.md"]
    output: "{stem}.html"
    steps:
      - text.load: {}
      - markdown.render: {}
"""
"""A rule (to follow a config's `rules:`) rendering pages/*.md to HTML fragments."""

PAGES_RULE = MARKDOWN_RULE + "      - template.render: {template: t/page.html.j2}\n"
"""MARKDOWN_RULE with each fragment put through the template t/page.html.j2."""

PICKY_MODULE = """\
from batchit.errors import PermanentError

def parse(value, ctx):
    if value.startswith(b"bad"):
        raise PermanentError("cannot parse " + ctx.input)
    print("parsed", ctx.input)
    return value.upper()
"""
"""`picky.py` for a `python: {function: "picky:parse"}` step: a permanent error for input starting
with "bad" (so the input is quarantined), the input upper-cased otherwise."""

PICKY = """\
version: 1
rules:
  parse:
    inputs: ["in/*.txt"]
    output: "{stem}.txt"
    steps:
      - python: {function: "picky:parse", version: "1"}
"""
"""One 1:1 rule whose `python` step is PICKY_MODULE's parser."""


HOLD = """\
import time

def hold(value, ctx):
    (ctx.root / f"started-{ctx.output}").touch()
    while not (ctx.root / f"release-{ctx.output}").exists():
        time.sleep(0.01)
    return value
"""
"""A step that says it started its job, then waits until the test lets that job go."""


HOLD_CONFIG = """\
version: 1
out: _build
jobs: 1
rules:
  hold:
    inputs: ["src/*.txt"]
    output: "{stem}.txt"
    steps:
      - python: {function: "hold:hold", version: "1"}
"""
"""One rule whose jobs run one at a time and each wait for the test to let them go."""


@dataclass
class Project:
    """A project directory with helpers to write files and run `python -m batchit` inside it."""

    root: Path

    def write(self, files: dict[str, str | bytes]) -> None:
        """Write files (text is dedented) at project-relative paths, creating directories."""
        for rel, content in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content), encoding="utf-8")

    def config(self, text: str) -> None:
        """Write `batchit.yaml`."""
        self.write({"batchit.yaml": text})

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        """Run `python -m batchit ARGS` in the project, without a progress bar, and capture output."""
        full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "batchit", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def build(self, *args: str, expect: int = 0) -> Result:
        """Run `batchit build ARGS --no-progress` and assert its exit code."""
        result = self.run("build", "--no-progress", *args)
        assert result.code == expect, result.describe()
        return result

    def manifest(self) -> dict[str, Any]:
        """The latest run's manifest."""
        runs = self.root / ".batchit" / "runs"
        latest = (runs / "LATEST").read_text().strip()
        return json.loads((runs / latest / "manifest.json").read_text())  # type: ignore[no-any-return]

    def read(self, rel: str) -> str:
        """A project file's text."""
        return (self.root / rel).read_text(encoding="utf-8")

    def snapshot(self, *dirs: str) -> dict[str, bytes]:
        """Every file under the given project directories with its bytes, to prove nothing changed."""
        found: dict[str, bytes] = {}
        for top in dirs:
            base = self.root / top
            if base.exists():
                for path in sorted(base.rglob("*")):
                    if path.is_file():
                        found[path.relative_to(self.root).as_posix()] = path.read_bytes()
        return found

    def recorded(self) -> dict[str, bytes]:
        """`_build` and `.batchit` with their bytes, but SQLite's -wal and -shm companions, which a
        read-only open of the state store may create (its content stays in state.db): what a
        refused command must leave as it was."""
        files = self.snapshot("_build", ".batchit")
        return {path: data for path, data in files.items() if not path.endswith(("-wal", "-shm"))}


def plan_event(project: Project) -> dict[str, Any]:
    """The latest run's `plan` event (whether its plan was replayed or patched from a snapshot)."""
    run = project.root / ".batchit" / "runs" / (project.root / ".batchit/runs/LATEST").read_text().strip()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    return next(e for e in events if e["event"] == "plan")


@dataclass
class Result:
    """A finished command: exit code and captured streams."""

    code: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """Everything about the run, for assertion messages."""
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """An empty project directory; tests write a config and files into it and run the CLI there."""
    root = tmp_path / "project"
    root.mkdir()
    yield Project(root)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A bare project root, for tests that call operators directly (no config, no CLI): the images,
    logos and fonts they read are written into it."""
    path = tmp_path / "project"
    path.mkdir()
    return path


COPY_CONFIG = """\
version: 1
out: _build
rules:
  copy:
    inputs: ["src/**/*.txt"]
    output: "{path}.txt"
    steps:
      - file.copy: {}
"""
"""One 1:1 copy rule: the smallest config whose build leaves a full run record."""

THREE_SOURCES = {"src/a.txt": "alpha\n", "src/b.txt": "beta\n", "src/sub/c.txt": "gamma\n"}
"""Three small inputs, one in a subfolder."""


@pytest.fixture
def copies(project: Project) -> Project:
    """Three text files copied into `_build` by COPY_CONFIG, not yet built."""
    project.config(COPY_CONFIG)
    project.write(THREE_SOURCES)
    return project


@pytest.fixture
def picky(project: Project) -> Project:
    """Three inputs, one of which the `parse` step of PICKY rejects permanently (it is quarantined)."""
    project.config(PICKY)
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "bad\n", "in/c.txt": "c\n"})
    return project


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting to be reaped by its new parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait for an observable condition (a file, a committed row), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def blocked_on_pipe(pid: int, direction: str) -> bool:
    """True while the main thread of process `pid` sleeps in a `direction` ("read" or "write") on
    a pipe: an empty one, or a full one nobody reads (Linux tells through /proc; the name of the
    kernel function it sleeps in varies: `pipe_write`, `anon_pipe_write`, or `pipe_wait` on old
    kernels)."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return wchan.endswith(f"pipe_{direction}") or wchan == "pipe_wait"


def fill_pipe(write_end: int) -> None:
    """Fill the pipe `write_end` belongs to, so that the next write to it, by any process, blocks
    until the reader takes some out. The filler is NUL bytes (`drain` leaves them out). It goes
    through a file description of its own: making `write_end` non-blocking would make the other
    process's writes to that same description fail instead of waiting."""
    filler = os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY | os.O_NONBLOCK)
    try:
        with contextlib.suppress(BlockingIOError):
            os.write(filler, bytes(1 << 20))  # non-blocking: as much as fits
        with contextlib.suppress(BlockingIOError):
            while True:  # what a page left half full still takes, a byte at a time
                os.write(filler, b"\0")
    finally:
        os.close(filler)


def drain(read_end: int, timeout: float = 60) -> str:
    """Read the pipe until every writer has closed it (failing after `timeout` seconds), and
    return what was written to it but `fill_pipe`'s filler."""
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(read_end, 1 << 16) if ready else b""
        if not chunk:
            text = b"".join(chunks).replace(b"\0", b"").decode()
            assert ready, f"timed out reading a pipe:\n{text}"
            return text
        chunks.append(chunk)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], path: str) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering with `handler`, while the block runs: its URL for `path`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()


class ConfigMistake(NamedTuple):
    """A config error a test makes: the config (and other files), and what its message must say."""

    id: str
    config: str
    where: str
    """`file:line[:column]` the message must start with."""
    message: str
    fix: str
    rule: str | None = "pages"
    files: dict[str, str | bytes] = {}  # noqa: RUF012 (NamedTuple default, never mutated)


def assert_refused(project: Project, mistake: ConfigMistake, inputs: dict[str, str]) -> None:
    """Build `project` with `mistake`'s config beside `inputs`: exit 2 with no traceback, the message
    at its place, naming the rule and the fix, and nothing written to `.batchit` or `_build`."""
    project.write({"batchit.yaml": mistake.config, **inputs, **mistake.files})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert f"error: {mistake.where}" in result.stderr, result.describe()
    assert mistake.message in result.stderr, result.describe()
    assert "fix:" in result.stderr and mistake.fix in result.stderr.split("fix:", 1)[1], result.describe()
    if mistake.rule:
        assert f"rule '{mistake.rule}':" in result.stderr, result.describe()
    assert project.snapshot(".batchit", "_build") == {}


class Hooks(BaseHTTPRequestHandler):
    """Records every POST it receives, and when; answers with `status`, or first with the answers
    (status, headers) in `script`."""

    received: ClassVar[list[tuple[dict[str, str], dict[str, object]]]] = []
    times: ClassVar[list[float]] = []
    status: ClassVar[int] = 200
    script: ClassVar[list[tuple[int, dict[str, str]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.received.append((dict(self.headers), json.loads(body)))
        Hooks.times.append(time.monotonic())
        status, headers = Hooks.script.pop(0) if Hooks.script else (Hooks.status, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what was received, not the server's log."""


@pytest.fixture
def webhook() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that records the alerts POSTed to it."""
    Hooks.received, Hooks.times, Hooks.script = [], [], []
    Hooks.status = 200
    with serving(Hooks, "/hook") as url:
        yield url
