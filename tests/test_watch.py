"""`batchit watch`: the real command in a subprocess, driven by file changes and SIGINT.

The test waits for the lines the command prints (with a deadline), never for a fixed time.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Project

from batchit.state.lock import ProjectLock
from batchit.watch import LOST, _Collector

DEADLINE = 60.0
"""Seconds a test waits for a line before it fails (a rebuild takes well under one)."""

CONFIG = """\
version: 1
out: _build
rules:
  copy:
    inputs: ["src/*.txt"]
    output: "{stem}.txt"
    steps: [file.copy: {}]
"""


class Watch:
    """A running `batchit watch`, its output lines read by a thread into a queue."""

    def __init__(self, project: Project, *args: str, options: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchit", *options, "watch", "--no-progress", *args],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str) -> str:
        """The next line starting with `prefix`; fails after DEADLINE seconds without one."""
        end = time.monotonic() + DEADLINE
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(
            f"no line starting with {prefix!r} within {DEADLINE} s:\n" + "\n".join(self.seen)
        )

    def stop(self) -> int:
        """Send SIGINT (Ctrl-C) and return the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=DEADLINE)

    def close(self) -> None:
        """Kill the command if it still runs, and release its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout=DEADLINE)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def watching(project: Project) -> Iterator[Watch]:
    """`batchit watch` on a one-rule project, started and past its first build."""
    project.config(CONFIG)
    project.write({"src/a.txt": "a"})
    watch = Watch(project, "--debounce", "300")
    try:
        watch.wait_for("batchit watch: watching")
        yield watch
    finally:
        watch.close()


def test_watch_rebuilds_on_a_change_and_ctrl_c_exits_0(project: Project, watching: Watch) -> None:
    assert (project.root / "_build" / "a.txt").read_text() == "a"
    project.write({"src/b.txt": "b"})
    assert (
        watching.wait_for("batchit watch: rebuild 1") == "batchit watch: rebuild 1 after changes to src/b.txt"
    )
    assert watching.wait_for("batchit: ok").startswith("batchit: ok: 1 built, 1 up to date")
    assert (project.root / "_build" / "b.txt").read_text() == "b"
    assert watching.stop() == 0


def test_a_change_while_another_run_holds_the_lock_is_built_once_it_is_free(
    project: Project, watching: Watch
) -> None:
    other_run = ProjectLock(project.root / ".batchit/lock")  # as a `batchit build` elsewhere holds it
    other_run.acquire()
    try:
        project.write({"src/a.txt": "edited"})
        watching.wait_for("batchit watch: rebuild 1")
        assert f"(pid {os.getpid()})" in watching.wait_for("batchit watch: waiting: another batchit run")
    finally:
        other_run.release()
    assert watching.wait_for("batchit: ok").startswith("batchit: ok: 1 built")
    assert (project.root / "_build/a.txt").read_text() == "edited"
    assert watching.stop() == 0


def test_a_burst_of_changes_gives_one_rebuild(project: Project, watching: Watch) -> None:
    project.write({f"src/{n}.txt": n for n in "cdefg"})
    line = watching.wait_for("batchit watch: rebuild")
    assert line.startswith(
        "batchit watch: rebuild 1 after changes to src/c.txt, src/d.txt, src/e.txt and 2 more"
    )
    assert watching.wait_for("batchit: ok").startswith("batchit: ok: 5 built, 1 up to date")
    assert watching.stop() == 0


SERVER_LOGGING = """\
import time
with open("server.log", "a") as log:
    while True:
        log.write("GET /\\n")
        log.flush()
        time.sleep(0.01)
"""
"""A server appending a line to its log in the project every 10 ms, for ever."""


def test_a_file_written_without_pause_does_not_hold_back_an_edit(project: Project) -> None:
    """A log written every few milliseconds never lets the changes go quiet; the edit made
    meanwhile is built within LONGEST_BURST debounce periods all the same."""
    project.config(CONFIG)
    project.write({"src/a.txt": "a"})
    watch = Watch(project, "--debounce", "150")
    server = subprocess.Popen([sys.executable, "-c", SERVER_LOGGING], cwd=project.root)
    try:
        watch.wait_for("batchit watch: watching")
        project.write({"src/a.txt": "edited"})
        assert "src/a.txt" in watch.wait_for("batchit watch: rebuild 1")
        watch.wait_for("batchit: ok")
        assert project.read("_build/a.txt") == "edited"
        assert server.poll() is None, "built while the log is still written"
        assert watch.stop() == 0
    finally:
        server.kill()
        server.wait()
        watch.close()


def test_a_changed_file_whose_name_is_not_utf8_is_named_escaped(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Printed as it is, the name would stop the watch on an output that takes only UTF-8."""
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8")
    project.config(CONFIG)
    project.write({"src/a.txt": "a", "notes/read.me": ""})
    watch = Watch(project, "--debounce", "100")
    try:
        watch.wait_for("batchit watch: watching")
        Path(os.fsdecode(os.fsencode(project.root / "notes") + b"/caf\xe9.md")).write_text("x")
        line = watch.wait_for("batchit watch: rebuild 1")
        assert line == "batchit watch: rebuild 1 after changes to notes/caf\\xe9.md"
        watch.wait_for("batchit: ok")
        assert watch.stop() == 0
    finally:
        watch.close()


def test_writes_to_version_control_caches_and_state_start_no_rebuild(
    project: Project, watching: Watch
) -> None:
    """A commit (`.git`), Python's bytecode and tools' caches, and batchit's own state change
    nothing that is built: written before a real edit, they are neither a rebuild of their own nor
    named in the edit's."""
    project.write(
        {
            ".git/index": "x",
            ".git/objects/ab/cdef": "x",
            "src/__pycache__/tool.cpython-311.pyc": "x",
            ".mypy_cache/3.11/tool.data.json": "{}",
            ".pytest_cache/v/cache/lastfailed": "{}",
            ".batchit/scratch.txt": "x",
        }
    )
    project.write({"src/b.txt": "b"})
    assert (
        watching.wait_for("batchit watch: rebuild") == "batchit watch: rebuild 1 after changes to src/b.txt"
    )
    assert watching.wait_for("batchit: ok").startswith("batchit: ok: 1 built, 1 up to date")
    assert watching.stop() == 0


def save_as_vim(src: Path, text: str) -> None:
    """vim: a swap file while the buffer is open, a probe file `4913`, the old file kept as `a.txt~`
    until the new one is written."""
    (src / ".a.txt.swp").write_bytes(b"swap")
    (src / ".a.txt.swx").write_bytes(b"probe")
    (src / ".a.txt.swx").unlink()
    (src / "4913").write_bytes(b"")
    (src / "4913").unlink()
    (src / "a.txt").rename(src / "a.txt~")
    (src / "a.txt").write_text(text)
    (src / "a.txt~").unlink()


def save_as_emacs(src: Path, text: str) -> None:
    """emacs: a lock link and an auto-save while the buffer is modified, a backup kept after."""
    (src / ".#a.txt").symlink_to("user@host.1234:1700000000")
    (src / "#a.txt#").write_text(text)
    (src / "a.txt").rename(src / "a.txt~")
    (src / "a.txt").write_text(text)
    (src / "#a.txt#").unlink()
    (src / ".#a.txt").unlink()


def save_as_jetbrains(src: Path, text: str) -> None:
    """JetBrains' safe write: the new text beside the file, the old file moved aside, then swapped."""
    (src / "a.txt___jb_tmp___").write_text(text)
    (src / "a.txt").rename(src / "a.txt___jb_old___")
    (src / "a.txt___jb_tmp___").rename(src / "a.txt")
    (src / "a.txt___jb_old___").unlink()


def save_as_gedit(src: Path, text: str) -> None:
    """GLib's atomic save (gedit, GNOME): a `.goutputstream-*` file renamed over the file."""
    (src / ".goutputstream-Q1ZK7V").write_text(text)
    (src / ".goutputstream-Q1ZK7V").rename(src / "a.txt")


def save_atomically(src: Path, text: str) -> None:
    """Any tool's atomic save (`sed -i`, an editor's "safe write"): a temporary file of any name
    renamed into place."""
    (src / "sedXk3p9a").write_text(text)
    (src / "sedXk3p9a").replace(src / "a.txt")


@pytest.mark.parametrize(
    "save", [save_as_vim, save_as_emacs, save_as_jetbrains, save_as_gedit, save_atomically]
)
def test_saving_from_an_editor_rebuilds_for_the_saved_file_alone(
    project: Project, watching: Watch, save: Callable[[Path, str], None]
) -> None:
    """Editors' swap, lock, backup and temporary files are no change of the user's: however the
    saves fall into bursts, each rebuild names the saved file (and the edit made after them) only."""
    save(project.root / "src", "saved once")
    save(project.root / "src", "saved twice")
    project.write({"src/z.txt": "z"})  # made last: its rebuild comes after the saves'
    changed: set[str] = set()
    while "src/z.txt" not in changed:
        line = watching.wait_for("batchit watch: rebuild ")
        assert " more" not in line, watching.seen  # more than the two names
        changed |= set(line.split(" after changes to ")[1].split(", "))
    assert changed == {"src/a.txt", "src/z.txt"}, watching.seen
    watching.wait_for("batchit: ok")
    assert project.read("_build/a.txt") == "saved twice"
    assert watching.stop() == 0


def test_changes_the_system_dropped_start_a_rebuild(project: Project) -> None:
    """Linux drops the events beyond its queue's length (a big build's writes fill it); the user's
    edit may be among them, which only a build can find. The watch is stopped meanwhile, so the
    queue fills up before it reads an event."""
    queue_length = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queue_length > 100_000:
        pytest.skip(f"filling a queue of {queue_length} events takes too long")
    project.config(CONFIG)
    project.write({"src/a.txt": "a", ".git/x": "", ".git/y": ""})  # watched from the start
    watch = Watch(project, "--debounce", "300")
    try:
        watch.wait_for("batchit watch: watching")
        watch.proc.send_signal(signal.SIGSTOP)
        try:
            for thread in Path(f"/proc/{watch.proc.pid}/task").iterdir():  # each stops on its own
                wait_for_text(thread / "status", "(stopped)")
            for _ in range(queue_length):  # two files in turn (the system merges repeated events)
                os.utime(project.root / ".git/x")
                os.utime(project.root / ".git/y")
            project.write({"src/a.txt": "edited"})  # past the queue's end: dropped
        finally:
            watch.proc.send_signal(signal.SIGCONT)
        assert (
            watch.wait_for("batchit watch: rebuild 1") == f"batchit watch: rebuild 1 after changes to {LOST}"
        )
        assert watch.wait_for("batchit: ok").startswith("batchit: ok: 1 built")
        assert project.read("_build/a.txt") == "edited"
        assert not any(line.startswith("Inotify") for line in watch.seen), "watchdog's warning is shown"
        assert watch.stop() == 0
    finally:
        watch.close()


def test_a_config_error_is_reported_and_the_watch_goes_on(project: Project, watching: Watch) -> None:
    project.write({"batchit.yaml": CONFIG.replace("file.copy", "file.cpy")})
    watching.wait_for("batchit: error:")
    project.config(CONFIG)
    watching.wait_for("batchit: ok")
    assert watching.stop() == 0


def test_a_watch_started_on_a_broken_config_waits_for_its_fix(project: Project) -> None:
    project.config(CONFIG.replace("file.copy", "file.cpy"))
    project.write({"src/a.txt": "a"})
    watch = Watch(project, "--debounce", "300", "--log-format", "json")
    try:
        error = json.loads(watch.wait_for('{"event": "error"'))
        assert error["exit_code"] == 2 and "file.cpy" in error["message"]
        watch.wait_for("batchit watch: watching")
        project.config(CONFIG)
        watch.wait_for("batchit watch: rebuild 1")
        wait_for_text(project.root / ".batchit/runs/LATEST", "Z-")  # the fixed build recorded its run
        assert watch.stop() == 0
        assert project.read("_build/a.txt") == "a"
    finally:
        watch.close()


def test_an_edited_python_step_runs_its_new_code(project: Project) -> None:
    python_step = 'steps: [python: {function: "tool:tag", version: "1"}]'
    project.config(CONFIG.replace("steps: [file.copy: {}]", python_step))
    project.write({"src/a.txt": "a", "tool.py": "def tag(value, ctx):\n    return b'v1:' + value\n"})
    watch = Watch(project, "--debounce", "300")
    try:
        watch.wait_for("batchit watch: watching")
        assert project.read("_build/a.txt") == "v1:a"
        project.write({"tool.py": "def tag(value, ctx):\n    return b'v2:' + value\n"})
        watch.wait_for("batchit watch: rebuild 1")
        assert watch.wait_for("batchit: ok").startswith("batchit: ok: 1 built")
        assert project.read("_build/a.txt") == "v2:a", "the watch process imported the edited module again"
        assert watch.stop() == 0
    finally:
        watch.close()


def test_an_edited_helper_module_restarts_the_watch_which_rebuilds_with_it(project: Project) -> None:
    python_step = 'steps: [python: {function: "tool:tag", version: "1"}]'
    project.config(CONFIG.replace("steps: [file.copy: {}]", python_step))
    tool = "from helper import PREFIX\n\ndef tag(value, ctx):\n    return PREFIX + value\n"
    project.write({"src/a.txt": "a", "tool.py": tool, "helper.py": "PREFIX = b'v1:'\n"})
    watch = Watch(project, "--debounce", "300")
    try:
        watch.wait_for("batchit watch: watching")
        assert project.read("_build/a.txt") == "v1:a"
        project.write({"helper.py": "PREFIX = b'v2:'\n"})
        restart = watch.wait_for("batchit watch: restarting:")
        assert restart.startswith("batchit watch: restarting: helper changed")
        assert watch.wait_for("batchit: ok").startswith("batchit: ok: 1 built")
        watch.wait_for("batchit watch: watching")
        assert project.read("_build/a.txt") == "v2:a", "the new process imported the edited helper"
        assert watch.stop() == 0
    finally:
        watch.close()


@pytest.mark.parametrize("way", ["redirected", "piped_through_tee"])
def test_a_watch_writing_its_lines_into_the_project_is_not_woken_by_them(project: Project, way: str) -> None:
    """`batchit watch > watch.log` or `batchit watch | tee watch.log`: each line it prints changes
    the log, which would otherwise start a rebuild, which prints lines, for ever."""
    project.config(CONFIG)
    project.write({"src/a.txt": "a"})
    log = project.root / "watch.log"
    tee = None
    if way == "piped_through_tee":
        tee = subprocess.Popen(["tee", str(log)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        wait_for_text(log, "")  # tee has it open
    with tee.stdin if tee and tee.stdin else log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchit", "watch", "--no-progress", "--debounce", "100"],
            cwd=project.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
    try:
        wait_for_text(log, "batchit watch: watching")
        project.write({"src/b.txt": "b"})
        wait_for_text(log, "batchit watch: rebuild ")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=DEADLINE) == 0
        assert tee is None or tee.wait(timeout=DEADLINE) == 0
    finally:
        for process in (proc, tee):
            if process is not None:
                process.kill()
                process.wait()
    rebuilds = [line for line in log.read_text().splitlines() if line.startswith("batchit watch: rebuild ")]
    assert rebuilds == ["batchit watch: rebuild 1 after changes to src/b.txt"]


def test_a_watch_ignores_out_as_the_config_names_it_after_a_change(project: Project) -> None:
    project.config(CONFIG)
    project.write({"src/a.txt": "a"})
    watch = Watch(project, "--debounce", "300")
    try:
        watch.wait_for("batchit watch: watching")
        project.config(CONFIG.replace("out: _build", "out: _site"))
        watch.wait_for("batchit watch: rebuild 1 after changes to batchit.yaml")
        watch.wait_for("batchit: ok")
        project.write({"src/b.txt": "b"})  # the next rebuild is this change's, not _site's own files'
        assert (
            watch.wait_for("batchit watch: rebuild 2")
            == "batchit watch: rebuild 2 after changes to src/b.txt"
        )
        assert watch.stop() == 0
    finally:
        watch.close()


GATED_TOOL = """\
def tag(value, ctx):
    gate = ctx.root / "gate"
    if gate.exists():  # a FIFO: the job waits until the test writes to it
        (ctx.root / "started").touch()
        with open(gate) as held:
            held.read()
    return value.upper()
"""


def test_a_change_made_during_the_first_build_starts_a_rebuild(project: Project) -> None:
    """The watch is in place before the first build (and the first after a restart) begins."""
    project.config(
        CONFIG.replace("steps: [file.copy: {}]", 'steps: [python: {function: "tool:tag", version: "1"}]')
    )
    project.write({"src/a.txt": "v1", "tool.py": GATED_TOOL})
    os.mkfifo(project.root / "gate")
    watch = Watch(project, "--debounce", "100")
    try:
        wait_for_text(project.root / "started", "")
        with open(project.root / "gate", "w") as gate:  # the job's open() returns; its read() waits
            (project.root / "gate").unlink()
            project.write({"src/a.txt": "v2"})
            gate.write("go")
        watch.wait_for("batchit watch: watching")
        assert "src/a.txt" in watch.wait_for("batchit watch: rebuild 1")  # with the test's gate files
        assert watch.wait_for("batchit: ok").startswith("batchit: ok: 1 built")
        assert project.read("_build/a.txt") == "V2"
        assert watch.stop() == 0
    finally:
        watch.close()


def test_a_step_module_another_step_imports_restarts_the_watch(project: Project) -> None:
    """Reloading `helper` alone would leave the PREFIX `tool` copied from it as it was."""
    rules = (
        "version: 1\nout: _build\nrules:\n"
        '  direct:\n    inputs: ["src/*.txt"]\n    output: "d/{stem}.txt"\n'
        '    steps: [python: {function: "helper:mark", version: "1"}]\n'
        '  via:\n    inputs: ["src/*.txt"]\n    output: "v/{stem}.txt"\n'
        '    steps: [python: {function: "tool:tag", version: "1"}]\n'
    )
    helper = "PREFIX = b'{v}:'\n\ndef mark(value, ctx):\n    return PREFIX + value\n"
    tool = "from helper import PREFIX\n\ndef tag(value, ctx):\n    return PREFIX + value\n"
    project.config(rules)
    project.write({"src/a.txt": "a", "tool.py": tool, "helper.py": helper.replace("{v}", "v1")})
    watch = Watch(project, "--debounce", "100")
    try:
        watch.wait_for("batchit watch: watching")
        project.write({"helper.py": helper.replace("{v}", "v2")})
        assert watch.wait_for("batchit watch: restarting:").startswith(
            "batchit watch: restarting: helper changed"
        )
        watch.wait_for("batchit watch: watching")
        assert (project.read("_build/d/a.txt"), project.read("_build/v/a.txt")) == ("v2:a", "v2:a")
        assert watch.stop() == 0
    finally:
        watch.close()


def test_a_config_file_outside_the_project_is_watched_too(project: Project) -> None:
    """`-f ../site.yaml`: editing the config changes what is built, wherever the file is."""
    config = project.root.parent / "site.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    project.write({"src/a.txt": "a"})
    watch = Watch(project, "--debounce", "100", options=("-f", "../site.yaml"))
    try:
        watch.wait_for("batchit watch: watching")
        (project.root.parent / "unrelated.txt").write_text("x", encoding="utf-8")  # beside it: no change
        config.write_text(CONFIG.replace('"{stem}.txt"', '"copied/{stem}.txt"'), encoding="utf-8")
        line = watch.wait_for("batchit watch: rebuild 1")
        assert line == f"batchit watch: rebuild 1 after changes to {config.resolve()}", watch.seen
        watch.wait_for("batchit: ok")
        assert project.read("_build/copied/a.txt") == "a"
        assert watch.stop() == 0
    finally:
        watch.close()


def test_a_watch_whose_project_folder_is_removed_stops_saying_so(project: Project, watching: Watch) -> None:
    subprocess.run(["rm", "-rf", str(project.root)], check=True)
    error = watching.wait_for("batchit: error:")
    assert (
        error == f"batchit: error: the project folder {project.root} was removed or moved away while watched"
    )
    assert watching.proc.wait(timeout=DEADLINE) == 1


BLOCKING_TOOL = """\
def tag(value, ctx):
    if value.startswith(b"block"):  # waits on the FIFO `gate` until someone writes to it
        (ctx.root / "started").touch()
        with open(ctx.root / "gate") as held:
            held.read()
    return value.upper()
"""


@pytest.fixture
def blocked_rebuild(project: Project) -> Iterator[Watch]:
    """A watch (jobs on threads of its own process) whose rebuild's job waits for ever."""
    project.config(
        CONFIG.replace("steps: [file.copy: {}]", 'steps: [python: {function: "tool:tag", version: "1"}]')
    )
    project.write({"src/a.txt": "a", "tool.py": BLOCKING_TOOL})
    os.mkfifo(project.root / "gate")
    watch = Watch(project, "--debounce", "100", "--executor", "thread", "-j", "1")
    try:
        watch.wait_for("batchit watch: watching")
        project.write({"src/a.txt": "block"})
        wait_for_text(project.root / "started", "")
        yield watch
    finally:
        watch.close()


@pytest.mark.slow
def test_ctrl_c_during_a_job_that_outlasts_the_grace_period_exits_0_once_it_is_over(
    project: Project, blocked_rebuild: Watch
) -> None:
    """As `build` does, the watch leaves when the grace period is over: the abandoned job's thread
    would otherwise hold the exit for as long as the job runs (here: for ever)."""
    blocked_rebuild.proc.send_signal(signal.SIGINT)
    assert "1 not finished" in blocked_rebuild.wait_for("batchit: INTERRUPTED")
    blocked_rebuild.wait_for("batchit watch: stopped")
    assert blocked_rebuild.proc.wait(timeout=DEADLINE) == 0
    assert project.read("_build/a.txt") == "A"  # the first build's output, as it was


def test_a_second_ctrl_c_during_a_rebuild_exits_0_at_once(project: Project, blocked_rebuild: Watch) -> None:
    """Ctrl-C stops a watch with 0, also pressed twice not to wait for a running job; nothing the
    job had not finished is left in `out`."""
    blocked_rebuild.proc.send_signal(signal.SIGINT)
    blocked_rebuild.wait_for("warning: interrupted (SIGINT)")
    assert blocked_rebuild.stop() == 0
    assert project.read("_build/a.txt") == "A"  # the first build's output, as it was


@pytest.mark.parametrize("layout", ["out_is_a_symlink", "out_is_nested"])
def test_the_builds_own_writes_never_start_a_rebuild(project: Project, layout: str) -> None:
    """Through a symlinked `out` the system names the real folder; a nested `out`'s parent is
    re-created by the build: neither is a change of the user's."""
    if layout == "out_is_a_symlink":
        project.config(CONFIG)
        (project.root / "www").mkdir()
        (project.root / "_build").symlink_to("www")
    else:
        project.config(CONFIG.replace("out: _build", "out: build/site"))
    project.write({"src/a.txt": "a"})
    watch = Watch(project, "--debounce", "100")
    try:
        watch.wait_for("batchit watch: watching")
        if layout == "out_is_nested":
            subprocess.run(["rm", "-rf", str(project.root / "build")], check=True)
        for number, name in ((1, "b"), (2, "c")):  # each rebuild is the user's change's, and only its
            project.write({f"src/{name}.txt": name})
            line = watch.wait_for(f"batchit watch: rebuild {number}")
            assert line == f"batchit watch: rebuild {number} after changes to src/{name}.txt", watch.seen
            watch.wait_for("batchit: ok")
        assert watch.stop() == 0
    finally:
        watch.close()


def wait_for_text(path: Path, text: str) -> None:
    """Wait until the file exists and holds `text`, failing after DEADLINE seconds."""
    end = time.monotonic() + DEADLINE
    while not path.is_file() or text not in path.read_text():
        if time.monotonic() > end:
            raise AssertionError(f"no {text!r} in {path} within {DEADLINE} s:\n{path.read_text()}")
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("path", "counts"),
    [
        ("src/a.txt", True),
        ("_build/a.txt", False),
        ("_build", False),
        (".batchit/state.db", False),
        (".git/index", False),
        ("src/__pycache__/x.pyc", False),
        ("_buildings/a.txt", True),
        ("src/.a.txt.swp", False),
        ("src/.a.txt.swo", False),
        ("src/4913", False),
        ("src/5036", False),
        ("src/2024", True),
        ("src/a.txt~", False),
        ("src/.#a.txt", False),
        ("src/#a.txt#", False),
        ("src/notes#1.txt", True),
        ("src/a.txt___jb_tmp___", False),
        ("src/.goutputstream-Q1ZK7V", False),
        ("src/.a.txt.kate-swp", False),
    ],
)
def test_changes_under_out_state_and_to_editor_scratch_files_do_not_count(
    tmp_path: Path, path: str, counts: bool
) -> None:
    collector = _Collector(tmp_path, ["_build", ".batchit"], queue.Queue())
    assert (collector._relative(str(tmp_path / path)) is not None) is counts


def test_a_watch_started_outside_a_project_is_refused_before_watching(project: Project) -> None:
    """In the wrong folder (a home folder), a watch would only wait, on every folder below."""
    result = project.run("watch", timeout=DEADLINE)
    assert result.code == 2, result.describe()
    assert f"batchit.yaml: not found in {project.root}" in result.stderr
    assert "batchit watch: watching" not in result.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--debounce", "100000000000000"), "must be 0 to 3600000 (an hour)"),
        (("--flag", "watermark"), "--flag 'watermark' is not NAME=VALUE"),
        (("--sample", "some"), "--sample 'some' is neither a count nor a fraction"),
        (("--out", "_sample"), "--out DIR is where a sample is built"),
    ],
)
def test_a_flag_no_edit_can_fix_is_refused_before_watching(
    project: Project, flags: tuple[str, ...], message: str
) -> None:
    """A config error waits for its fix; a wrong command line would wait for ever."""
    project.config(CONFIG)
    result = project.run("watch", *flags, timeout=DEADLINE)
    assert result.code == 2, result.describe()
    assert message in result.stderr
    assert "batchit watch: watching" not in result.stdout
