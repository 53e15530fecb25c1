"""Running a `shell` step's command so that nothing it starts outlives its job.

A command runs in a process group of its own, so a timeout or a stopping build ends every process it
started, not only the first: killing the first alone would leave its children running, and holding
its output pipes, so the wait for them would last as long as they do. In its own group a command no
longer receives the terminal's Ctrl-C directly; a build that is interrupted forwards its signal to
the running commands (`signal_commands`), so they stop as they did before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

_running: set[int] = set()
"""Process-group ids of the commands this process is running (one per running `shell` job)."""
_running_lock = threading.Lock()


class CommandTimeout(Exception):
    """The command did not finish within its timeout; its whole process group was killed."""


def run_command(
    argv: list[str], stdin: bytes, cwd: Path, env: Mapping[str, str] | None, timeout: float | None
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` to completion in its own process group and return its exit code and output.

    On a timeout, or when the waiting thread is interrupted (a Ctrl-C under `doit`), the whole group
    is killed and reaped before this returns or raises, so no process of the command is left behind.
    Raises OSError when the program cannot be started, CommandTimeout on a timeout.
    """
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        process_group=0,
    )
    with _running_lock:
        _running.add(process.pid)
    try:
        try:
            stdout, stderr = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise CommandTimeout from None
        except BaseException:
            _kill_group(process)
            raise
        # The first process has exited; anything it left behind in its group goes with it.
        _signal_group(process.pid, signal.SIGKILL)
    finally:
        with _running_lock:
            _running.discard(process.pid)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def signal_commands(signum: int) -> None:
    """Send `signum` to every command this process is running: what the terminal's Ctrl-C would
    have done had they stayed in batchit's process group."""
    with _running_lock:
        groups = list(_running)
    for group in groups:
        _signal_group(group, signum)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the command's process group and collect what it leaves, closing its pipes."""
    _signal_group(process.pid, signal.SIGKILL)
    process.communicate()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
