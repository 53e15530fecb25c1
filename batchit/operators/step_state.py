"""What a `python` step changes in its process, put back once it returns: the working directory, the
environment and the standard streams (`os.chdir`, `os.environ[...] = ...`, `sys.stdout = ...`).

A worker runs job after job: a change one job's step made would otherwise be seen by every later
step in that worker (and, on the coordinator's threads, by batchit itself), so an output would
depend on which jobs happened to run before it there. Steps running side by side on threads share
the process, so the state is saved when the first of them starts and put back when the last ends:
one step never has the directory or a variable it set taken away while it runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True, slots=True)
class _Saved:
    cwd: str | None
    """None when the working directory no longer existed."""
    environ: dict[str, str]
    streams: tuple[TextIO, TextIO]
    """`sys.stdout` and `sys.stderr`, which batchit's own output goes through."""


_lock = threading.Lock()
_running = 0
"""Steps inside `process_state_kept` now, in any thread."""
_saved: _Saved | None = None


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """Put the working directory and the environment back as they were when the block (the first
    of those running at once) began, once it (the last of them) ends."""
    global _running, _saved
    with _lock:
        if _running == 0:
            _saved = _Saved(_cwd(), dict(os.environ), (sys.stdout, sys.stderr))
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _saved is not None:
                _restore(_saved)
                _saved = None


def _cwd() -> str | None:
    try:
        return os.getcwd()  # noqa: PTH109 - a tenth of Path.cwd()'s cost, paid by every python step
    except FileNotFoundError:  # removed meanwhile: there is nothing to go back to
        return None


def _restore(saved: _Saved) -> None:
    """Go back to `saved`'s directory (if it still exists), variables and streams."""
    sys.stdout, sys.stderr = saved.streams
    if saved.cwd is not None and _cwd() != saved.cwd:
        with contextlib.suppress(OSError):
            os.chdir(saved.cwd)
    if dict(os.environ) != saved.environ:  # one copy: a Mapping compared to a dict copies both
        for name in [name for name in os.environ if name not in saved.environ]:
            del os.environ[name]
        for name, value in saved.environ.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
