"""What a `python` step prints, kept for its job's log, per thread.

`contextlib.redirect_stdout` swaps the process-wide `sys.stdout`: two steps running on worker
threads restore each other's buffers in the wrong order, so one job's prints land in another's log
and `sys.stdout` can stay pointing at a finished job's buffer (the build's own summary then vanishes).
Instead `sys.stdout` and `sys.stderr` get, once, a stand-in that writes to the buffer of the thread
that is running a step, and to the real stream for every other thread.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

_install_lock = threading.Lock()


class ThreadStream:
    """A `sys.stdout` or `sys.stderr` stand-in: the calling thread's capture buffer, else the real stream."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self._local = threading.local()

    @property
    def target(self) -> TextIO:
        """Where the calling thread's text goes now."""
        buffer: TextIO | None = getattr(self._local, "buffer", None)
        return self.real if buffer is None else buffer

    def write(self, text: str) -> int:
        """Write to the calling thread's target."""
        return self.target.write(text)

    def flush(self) -> None:
        """Flush the calling thread's target."""
        self.target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)  # encoding, isatty, fileno, ... of the real stream

    @contextlib.contextmanager
    def capturing(self, buffer: TextIO) -> Iterator[None]:
        """Send what this thread writes to `buffer` while the block runs."""
        previous = getattr(self._local, "buffer", None)
        self._local.buffer = buffer
        try:
            yield
        finally:
            self._local.buffer = previous


def _stand_in(name: str) -> ThreadStream:
    """The stand-in for `sys.<name>`, installed the first time it is needed."""
    with _install_lock:
        current = getattr(sys, name)
        if not isinstance(current, ThreadStream):
            current = ThreadStream(current)
            setattr(sys, name, current)
        return current


@contextlib.contextmanager
def captured_output() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """(stdout, stderr) buffers holding what this thread prints while the block runs."""
    printed, complained = io.StringIO(), io.StringIO()
    with _stand_in("stdout").capturing(printed), _stand_in("stderr").capturing(complained):
        yield printed, complained
