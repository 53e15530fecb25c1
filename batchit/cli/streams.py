"""Standard streams that outlive their reader: `batchit build | head` must not stop the build.

A reader that closes its end of the pipe early (`| head`, a pager that quits) makes the next write
raise BrokenPipeError. Raised from a warning or a progress update in the middle of a build, it would
abort the build before its run is recorded, or leave the audit log and the state store disagreeing.
While a command runs, `sys.stdout` and `sys.stderr` are `PipeSafe` stand-ins: the first broken
write points the stream's file descriptor at /dev/null and the command carries on silently, with
the exit code its own outcome decides (the usual command-line behaviour). Everything that prints
goes through them: the console and its progress bar, the summary, JSON log lines, `print`, and the
logging and warnings modules, which look `sys.stderr` up when they write. What is shown there is
also kept from driving the terminal: `escaped_controls` escapes the control characters in it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO, cast


class PipeSafe:
    """A text stream whose writes and flushes never raise BrokenPipeError: a reader gone away
    silences the stream instead."""

    def __init__(self, real: TextIO) -> None:
        self.real = real

    def write(self, text: str) -> int:
        """Write to the real stream (nowhere once its reader has gone)."""
        try:
            return self.real.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        """Flush the real stream; text its reader can no longer read is dropped."""
        try:
            self.real.flush()
        except BrokenPipeError:
            self._silence()

    def _silence(self) -> None:
        """Send the stream's file descriptor to /dev/null, so what is still buffered (and whatever
        is written later, by any thread) goes nowhere instead of failing again at exit."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.real.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)  # encoding, isatty, fileno, ... of the real stream


@contextlib.contextmanager
def pipe_safe_streams() -> Iterator[None]:
    """Make `sys.stdout` and `sys.stderr` `PipeSafe` while the block runs, flushing them at its end
    (a pipe found closed then is no error either). A stream Python has none for, its descriptor
    closed as batchit started (`batchit build >&-`, as cron may run it), writes to /dev/null: what
    is said there goes nowhere, as to a reader that has gone."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (cast(TextIO, PipeSafe(_or_nowhere(stream))) for stream in saved)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


def _or_nowhere(stream: TextIO | None) -> TextIO:
    """`stream`, or a stream to /dev/null when there is none."""
    if stream is not None:
        return stream
    return open(os.devnull, "w", encoding="utf-8")  # open for the whole command


def escaped_controls(text: str, keep: str = "") -> str:
    """`text` with its control characters, but those in `keep`, escaped as Python writes them (a
    newline as \\n, ESC as \\x1b): a file name may hold a newline that would split a line of
    output, and what a command wrote may recolour, ring or rewrite the terminal it is shown on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)
