"""Running a `shell` step's command so that nothing it starts outlives its job.

A command runs in a process group of its own, so a timeout or a stopping build ends every process it
started, not only the first: killing the first alone would leave its children running, and holding
its output pipes, so the wait for them would last as long as they do. In its own group a command no
longer receives the terminal's Ctrl-C directly; whoever receives the stop signal forwards it to the
running commands (`signal_commands`): a build's signal handler, a worker process's handlers, and
under doit the handlers `forward_stop_signals` chains in front of doit's. Once a stop was forwarded,
no new command starts in that process until `resume_commands`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any

from batchit.operators.kept import kept_bytes

WAKE_EVERY = 0.2
"""Seconds between the checks for a pending signal while a command runs (see `_wait`)."""

_running: frozenset[int] = frozenset()
"""Process-group ids of the commands this process is running (one per running `shell` job). Never
changed in place, but replaced under `_running_lock`: `signal_commands`, which signal handlers
call, reads it without the lock. A handler that took the lock would deadlock when a second stop
signal (a terminal's Ctrl-C and the coordinator's forwarding of it) lands while the first one's
handler holds it, in the same thread."""
_running_lock = threading.Lock()
_stopping = False
"""A stop was forwarded to this process's commands: the next ones of a batch must not start."""
_forwarding: set[int] = set()
"""The signals `forward_stop_signals` chained a handler for."""
_watching = False
"""`forward_stop_signals` hooked the host's exit and started the thread that forwards the signals
as the signal wakeup fd reports them (unless the host has a wakeup fd)."""
_forwarded_at: dict[int, float] = {}
"""When each signal was last forwarded (`time.monotonic()`), by `_forward_once`."""
EXIT_WAIT = 1.0
"""How long the host's exit waits for commands being started to register, to kill them too."""
SAME_PRESS = 0.5
"""Seconds within which the handler and the wakeup fd's thread see one signal, not two."""
_launching = 0
"""Threads between their check of `_stopping` and their command's registration (`run_command`)."""
_starting = False
"""The main thread is starting a command: a KeyboardInterrupt raised inside `subprocess.Popen` would
leave it running unregistered, so the chained handler defers the host's handling (`_deferred`)."""
_deferred: list[tuple[Any, int]] = []


class CommandTimeout(Exception):
    """The command did not finish within its timeout; its whole process group was killed."""


class CommandStopped(Exception):
    """The run is stopping: the command was not started, or was killed as it started."""


def run_command(
    argv: list[str],
    stdin: bytes,
    cwd: Path,
    env: Mapping[str, str] | None,
    timeout: float | None,
    *,
    stdout_logged: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` to completion in its own process group and return its exit code and output.

    Its stderr, and its stdout when `stdout_logged` (it is not the step's value), go to a temporary
    file, of which only the first and last part are read (`kept_bytes`): a command writing
    gigabytes there costs no memory.

    On a timeout, or when the waiting thread is interrupted (a Ctrl-C under `doit`), the whole group
    is killed and reaped before this returns or raises, so no process of the command is left behind.
    Raises OSError when the program cannot be started, CommandTimeout on a timeout, CommandStopped
    once a stop was forwarded to this process.
    """
    with contextlib.ExitStack() as files:
        complained = files.enter_context(tempfile.TemporaryFile())
        printed = files.enter_context(tempfile.TemporaryFile()) if stdout_logged else None
        done = _run(argv, stdin, cwd, env, timeout, printed, complained)
        if printed is not None:
            done.stdout = kept_bytes(printed.fileno())
        done.stderr = kept_bytes(complained.fileno())
        return done


def _run(
    argv: list[str],
    stdin: bytes,
    cwd: Path,
    env: Mapping[str, str] | None,
    timeout: float | None,
    printed: IO[bytes] | None,
    complained: IO[bytes],
) -> subprocess.CompletedProcess[bytes]:
    """`run_command`, its stdout going to `printed` (None: a pipe), its stderr to `complained`."""
    global _starting, _launching
    with _running_lock:
        _launching += 1
    try:
        if _stopping:
            raise CommandStopped
        main = threading.current_thread() is threading.main_thread()
        if main:  # a forwarded signal's KeyboardInterrupt (raised here only) waits for the registration
            _starting = True
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if printed is None else printed,
                stderr=complained,
                cwd=cwd,
                env=env,
                process_group=0,
            )
            _register(process.pid, running=True)
        finally:
            if main:
                _starting = False
    finally:
        with _running_lock:
            _launching -= 1
    try:
        if _stopping:  # the stop came between the check above and the registration
            _kill_group(process)
            if main and _deferred:
                _chain(*_deferred.pop(), None)  # the host's own handling (a KeyboardInterrupt)
            raise CommandStopped
        try:
            stdout = _wait(process, stdin, timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise CommandTimeout from None
        except BaseException:
            _kill_group(process)
            raise
        # The first process has exited; anything it left behind in its group goes with it.
        _signal_group(process.pid, signal.SIGKILL)
    finally:
        _register(process.pid, running=False)
    return subprocess.CompletedProcess(argv, process.returncode, stdout or b"", b"")


def _wait(process: subprocess.Popen[bytes], stdin: bytes, timeout: float | None) -> bytes | None:
    """`process.communicate(stdin, timeout)`'s stdout, waking every WAKE_EVERY seconds, and no
    longer than the command itself runs.

    `communicate` waits for the command's pipes to close, and a process it left running (a daemon,
    a `cmd &`) holds them open: once the command has exited, its group is killed and what is left in
    the pipes is read, instead of waiting as long as that process lives. In the main thread, waking
    also lets a signal the system gave another thread run its Python handler (handlers run only when
    the main thread wakes).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAKE_EVERY if deadline is None else min(WAKE_EVERY, deadline - time.monotonic())
        try:
            return process.communicate(stdin, timeout=max(left, 0))[0]
        except subprocess.TimeoutExpired:
            if process.poll() is not None:  # exited: what still holds its pipes goes with it
                _signal_group(process.pid, signal.SIGKILL)
                return process.communicate()[0]
            if deadline is not None and time.monotonic() >= deadline:
                raise


def signal_commands(signum: int) -> None:
    """Send `signum` to every command this process is running, and start no new one: what the
    terminal's Ctrl-C would have done had they stayed in batchit's process group."""
    global _stopping
    _stopping = True
    for group in _running:  # a snapshot, read without a lock (see `_running`)
        _signal_group(group, signum)


def _register(group: int, *, running: bool) -> None:
    """Add a command's process group to `_running`, or take it out, replacing the set."""
    global _running
    with _running_lock:
        _running = _running | {group} if running else _running - {group}


def stop_requested() -> bool:
    """True once a stop signal reached this process (`signal_commands`): start no new work."""
    return _stopping


def resume_commands() -> None:
    """Let commands start again (a new build in the same process, as `batchit watch` runs)."""
    global _stopping
    _stopping = False


def forward_stop_signals() -> None:
    """Chain a handler in front of this process's SIGINT and SIGTERM handlers that first forwards
    the signal to the running commands (for hosts such as doit, whose worker threads and processes
    would otherwise leave them running). Only from the main thread; once per signal.

    A thread of its own forwards them too, woken through the signal wakeup fd (unless the host
    set one): a Python-level handler runs only once the main thread gets control, and doit's
    (`-P thread`) blocks until a sub-task's thread reports, which one waiting for its command
    does not. A signal the system gives another thread, or one landing just before the main
    thread blocks, would not wake it: the commands would run on, and doit with them. At the
    host's exit, the commands still running are killed (`_kill_commands_at_exit`)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signum not in _forwarding:
            _forwarding.add(signum)
            signal.signal(signum, functools.partial(_forward, signal.getsignal(signum)))
    global _watching
    if _watching:
        return
    _watching = True
    atexit.register(_kill_commands_at_exit)
    wakeup, notify = os.pipe()
    os.set_blocking(notify, False)
    previous = signal.set_wakeup_fd(notify, warn_on_full_buffer=False)
    if previous != -1:  # the host watches its signals through a wakeup fd of its own: keep it
        signal.set_wakeup_fd(previous)
        os.close(wakeup)
        os.close(notify)
        return
    threading.Thread(target=_forward_when_woken, args=(wakeup,), name="batchit-forward", daemon=True).start()


def _kill_commands_at_exit() -> None:
    """At the host's exit, kill the commands still running, which nobody would wait for: doit's
    `-P thread` workers are daemon threads it leaves behind after a Ctrl-C (a command that ignores
    SIGINT, or one a thread was starting, would run on). Those being started are let register
    first (at most EXIT_WAIT seconds); no further one starts."""
    global _stopping
    _stopping = True
    deadline = time.monotonic() + EXIT_WAIT
    while _launching and time.monotonic() < deadline:
        time.sleep(0.01)
    signal_commands(signal.SIGKILL)


def _forward_when_woken(wakeup: int) -> None:
    """Forward each stop signal to the running commands as the signal wakeup fd reports it,
    whichever thread the system gave it to and whenever the main thread gets to its handler."""
    while chunk := os.read(wakeup, 64):
        for signum in chunk:
            if signum in _forwarding:
                _forward_once(signum)


def _forward_once(signum: int) -> None:
    """Forward `signum` to the running commands, unless it was forwarded within SAME_PRESS
    seconds: one Ctrl-C reaches both the wakeup fd's thread and the Python handler, and a command
    that takes a second SIGINT as "stop now" must not get two."""
    now = time.monotonic()
    last = _forwarded_at.get(signum)
    if last is not None and now - last < SAME_PRESS:
        return
    _forwarded_at[signum] = now
    signal_commands(signum)


def ends_in_keyboard_interrupt(handler: Any) -> bool:
    """True when the SIGINT `handler` raises Python's KeyboardInterrupt: the default handler itself,
    or the forwarder `forward_stop_signals` put in front of it."""
    while isinstance(handler, functools.partial) and handler.func is _forward:
        handler = handler.args[0]
    return handler is signal.default_int_handler


def _forward(previous: Any, signum: int, frame: FrameType | None) -> None:
    _forward_once(signum)
    if _starting:
        _deferred.append((previous, signum))
    else:
        _chain(previous, signum, frame)


def _chain(previous: Any, signum: int, frame: FrameType | None) -> None:
    """Do what the handler before ours would have done with the signal."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:  # what the signal would have done: end the process
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the command's process group and collect what it leaves, closing its pipes."""
    _signal_group(process.pid, signal.SIGKILL)
    process.communicate()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
