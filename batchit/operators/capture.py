"""What a `python` step prints, kept for its job's log, per thread.

`contextlib.redirect_stdout` swaps the process-wide `sys.stdout`: two steps running on worker
threads restore each other's buffers in the wrong order, so one job's prints land in another's log
and `sys.stdout` can stay pointing at a finished job's buffer (the build's own summary then vanishes).
Instead `sys.stdout` and `sys.stderr` get, once, a stand-in that writes to the buffer of the thread
that is running a step, and to the real stream for every other thread.

What the step writes below Python's streams, to file descriptors 1 and 2 (`os.system`, a child
process it starts without capturing its output, `printf` in a C extension), is kept too where the
process runs one job at a time (a worker process of the local pool, `own_descriptors`): the
descriptors point at temporary files while the step runs. Elsewhere (worker threads, whose process
shares its descriptors with the build's own output and the other jobs) they stay where they are.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from batchit.operators.kept import KeptText, kept_bytes

_install_lock = threading.Lock()
_descriptors_owned = False
"""This process runs one job at a time (`own_descriptors`): a step may have fd 1 and 2 to itself."""


class ThreadStream:
    """A `sys.stdout` or `sys.stderr` stand-in: the calling thread's capture buffer, else the real stream."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self._local = threading.local()

    @property
    def target(self) -> TextIO | KeptText:
        """Where the calling thread's text goes now."""
        buffer: KeptText | None = getattr(self._local, "buffer", None)
        return self.real if buffer is None else buffer

    def write(self, text: str) -> int:
        """Write to the calling thread's target."""
        return self.target.write(text)

    def flush(self) -> None:
        """Flush the calling thread's target."""
        self.target.flush()

    def close(self) -> None:
        """Close the real stream, unless a step running in the calling thread asks: batchit's own
        output goes through it (the step's text still reaches its log)."""
        if getattr(self._local, "buffer", None) is None:
            self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)  # encoding, isatty, fileno, ... of the real stream

    @contextlib.contextmanager
    def capturing(self, buffer: KeptText) -> Iterator[None]:
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


def own_descriptors() -> None:
    """Say that this process runs one job at a time, in its main thread (a worker process of the
    local pool): from now on a step's writes to file descriptors 1 and 2 are captured as well."""
    global _descriptors_owned
    _descriptors_owned = True


@contextlib.contextmanager
def captured_output(printed: KeptText, complained: KeptText) -> Iterator[None]:
    """Keep in `printed` and `complained` what this thread prints while the block runs to stdout and
    stderr, and, in a process that runs one job at a time, what is written to its file descriptors
    1 and 2 (added as the block ends, also when it raises)."""
    with _stand_in("stdout").capturing(printed), _stand_in("stderr").capturing(complained):
        if _descriptors_owned:
            with _descriptors_captured(printed, complained):
                yield
        else:
            yield


@contextlib.contextmanager
def _descriptors_captured(printed: KeptText, complained: KeptText) -> Iterator[None]:
    """Point file descriptors 1 and 2 at temporary files while the block runs, then put them back
    and add what was written there to `printed` and `complained` (as UTF-8, a bad byte replaced).
    Files rather than pipes: nothing needs to read while the step writes, however much. The two
    files serve every step of the process, emptied after each: a step pays a few system calls."""
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None:  # the process's own pending text is not the step's
            stream.flush()
    files = _spool()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(files[0], 1)
        os.dup2(files[1], 2)
        yield
    finally:
        _flush_c_streams()  # what C code printed, still in its stdio buffers, was the step's
        for fd, kept in zip((1, 2), saved, strict=True):
            os.dup2(kept, fd)
            os.close(kept)
        for file, buffer in zip(files, (printed, complained), strict=True):
            written = kept_bytes(file)
            if written:
                buffer.write(written.decode("utf-8", errors="replace"))
                os.ftruncate(file, 0)
                os.lseek(file, 0, os.SEEK_SET)


@functools.cache
def _spool() -> tuple[int, int]:
    """The descriptors of this process's two temporary files (stdout, stderr) for steps to write to."""
    return _unnamed_file(), _unnamed_file()


def _unnamed_file() -> int:
    """A descriptor of a new temporary file, already removed from its folder."""
    fd, path = tempfile.mkstemp(prefix="batchit-step-")
    Path(path).unlink()
    return fd


def _flush_c_streams() -> None:
    """Flush the C library's stdio buffers (`fflush(NULL)`)."""
    _c_fflush()(None)


@functools.cache
def _c_fflush() -> Callable[[None], int]:
    import ctypes  # only processes that capture a step's descriptors need it

    fflush: Callable[[None], int] = ctypes.CDLL(None).fflush
    return fflush
