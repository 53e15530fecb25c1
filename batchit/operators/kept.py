"""How much of what a job's steps print its log keeps: the first and the last part of each stream.

A step that prints gigabytes (a tool's debug output, a loop printing each row) would otherwise hold
all of it in its worker's memory several times over (the buffer, the log record, the result sent
back to batchit) and write all of it under `logs/`, each worker at once: a build could run out of
memory for text nobody reads in full. What a stream says first (the tool's version, its settings)
and last (the error that ended it) is what explains a job.
"""

from __future__ import annotations

import collections
import os

STREAM_KEEPS = 1 << 20
"""Characters (or bytes) of one stream, stdout or stderr, a job's log keeps: half from its start,
half from its end."""

LOG_KEEPS = 4 * STREAM_KEEPS
"""Characters of a job's whole log kept, its streams and what the steps logged together."""


def left_out(count: int, unit: str) -> str:
    """The line that stands for the middle of a stream, left out of the log."""
    return f"\n[... {count} {unit} left out ...]\n"


class KeptText:
    """A text buffer that keeps the first and the last `limit // 2` characters written to it."""

    def __init__(self, limit: int = STREAM_KEEPS) -> None:
        self._half = limit // 2
        self._head: list[str] = []
        self._head_size = 0
        self._tail: collections.deque[str] = collections.deque()
        self._tail_size = 0
        self._dropped = 0

    def write(self, text: str) -> int:
        """Keep `text`, or the part of it that is still among the first or the last characters."""
        written = len(text)
        room = self._half - self._head_size
        if room > 0:
            self._head.append(text[:room])
            self._head_size += min(written, room)
            text = text[room:]
        if text:
            self._tail.append(text)
            self._tail_size += len(text)
            while self._tail_size > self._half:
                first = self._tail[0]
                excess = self._tail_size - self._half
                if len(first) <= excess:
                    self._tail.popleft()
                    cut = len(first)
                else:
                    self._tail[0] = first[excess:]
                    cut = excess
                self._tail_size -= cut
                self._dropped += cut
        return written

    def flush(self) -> None:
        """Nothing to flush: a stream's interface."""

    def getvalue(self) -> str:
        """The text kept, a line saying how many characters were left out where they were."""
        gap = left_out(self._dropped, "characters") if self._dropped else ""
        return "".join(self._head) + gap + "".join(self._tail)


def kept_bytes(fd: int, limit: int = STREAM_KEEPS) -> bytes:
    """The bytes of the file open at `fd`, only their first and last `limit // 2` when there are
    more than `limit`."""
    size = os.fstat(fd).st_size
    if size <= limit:
        return os.pread(fd, size, 0)
    half = limit // 2
    gap = left_out(size - 2 * half, "bytes").encode()
    return os.pread(fd, half, 0) + gap + os.pread(fd, half, size - half)
