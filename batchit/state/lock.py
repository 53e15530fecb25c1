"""The project lock (`.batchit/lock`): one build at a time, or many doit sub-tasks together.

`flock` is released by the kernel when the holder dies, so a crashed build never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from batchit.errors import LockHeldError


class ProjectLock:
    """An advisory lock on `.batchit/lock`: exclusive for `batchit build`, shared for doit sub-tasks."""

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting; raise LockHeldError naming the holder's pid when it is held."""
        fd = self._open()
        try:
            fcntl.flock(fd, self._mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeldError(
                f"another batchit run (pid {holder}) holds {self.path}",
                hint="wait for it to finish, or stop it; the lock is released when its process exits",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock back."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def wait_until_free(self) -> None:
        """Block until no run holds the lock (a Ctrl-C ends the wait), without keeping it: the
        caller then tries `acquire` again, which another run may still win."""
        fd = self._open()
        try:
            fcntl.flock(fd, self._mode)
        finally:
            os.close(fd)  # which releases it

    @property
    def _mode(self) -> int:
        return fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX

    def _open(self) -> int:
        """A descriptor of the lock file, made with its folder when missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
