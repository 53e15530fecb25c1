"""The project lock (`.batchit/lock`): one build at a time, or many doit sub-tasks together.

Between doit runs, two more: `.batchit/doit.lock`, which a doit run's sub-tasks hold shared and its
record exclusively, so a record waits for the sub-tasks of another doit run and they for it; and a
lock per job (`doit_job_lock`), so that two doit runs never run one job at once, and the second
finds it up to date. `flock` is released by the kernel when the holder dies, so a crashed build
never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from batchit.errors import LockHeldError
from batchit.hashing import blake3_hex

DOIT_LOCK = "doit.lock"
"""In `.batchit`: held shared by doit sub-tasks while they run a job, exclusively by a doit run's
record; both wait for it (`ProjectLock(..., wait=True)`)."""
DOIT_JOB_LOCKS = "doit-jobs"
"""In `.batchit`: a lock file per job a doit sub-task ran since the last doit record, which removes
them (under `DOIT_LOCK`, held exclusively, no sub-task holds one)."""


class ProjectLock:
    """An advisory lock on a file: `.batchit/lock`, exclusive for `batchit build`, shared for doit
    sub-tasks; with `wait`, taking it waits for its holders instead of failing (the doit locks)."""

    def __init__(self, path: Path, *, shared: bool = False, wait: bool = False) -> None:
        self.path = path
        self.shared = shared
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (waiting for it, with `wait`); raise LockHeldError naming the holder's pid
        when it is held and this lock does not wait."""
        fd = self._open()
        try:
            fcntl.flock(fd, self._mode if self.wait else self._mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeldError(
                f"another batchit run (pid {holder}) holds {self.path}",
                hint="wait for it to finish, or stop it; the lock is released when its process exits",
            ) from None
        except BaseException:  # a Ctrl-C ended the wait
            os.close(fd)
            raise
        self._fd = fd
        with contextlib.suppress(OSError):  # on a full disk the lock is held all the same, its pid
            os.ftruncate(fd, 0)  # only a courtesy to the next taker: `clean`, which frees space, runs
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

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


def doit_job_lock(state_dir: Path, job_id: str) -> ProjectLock:
    """The lock a doit sub-task holds while it plans and runs job `job_id`, waiting for it: a
    second doit run's sub-task of the same job plans it once the first has committed it, and finds
    it up to date. Its file is named by a hash of the job id (ids are paths of any length)."""
    return ProjectLock(state_dir / DOIT_JOB_LOCKS / blake3_hex(job_id.encode())[:32], wait=True)


@contextlib.contextmanager
def doit_sub_task_locks(state_dir: Path, job_id: str | None) -> Iterator[None]:
    """What a doit sub-task holds while it writes: `DOIT_LOCK` shared (waiting while another doit
    run records), the project lock shared (failing at once, LockHeldError, while a build or another
    command holds it), then, for a job, its `doit_job_lock` (waiting while another doit run runs
    it)."""
    with (
        ProjectLock(state_dir / DOIT_LOCK, shared=True, wait=True),
        ProjectLock(state_dir / "lock", shared=True),
    ):
        if job_id is None:
            yield
        else:
            with doit_job_lock(state_dir, job_id):
                yield


@contextlib.contextmanager
def doit_store_locks(state_dir: Path) -> Iterator[bool]:
    """What a doit sub-task holds while it readies the state store before its job (creates it, or
    forgets the rows of an `out` changed since): `DOIT_LOCK` exclusively, and the project lock
    shared, failing at once while a build or another command holds it. Yields False, holding
    nothing, while another sub-task holds `DOIT_LOCK`: that one may be running a long job after
    readying the store itself, so the caller looks again rather than wait for the job to end."""
    doit_lock = ProjectLock(state_dir / DOIT_LOCK)
    try:
        doit_lock.acquire()
    except LockHeldError:
        yield False
        return
    try:
        with ProjectLock(state_dir / "lock", shared=True):
            yield True
    finally:
        doit_lock.release()


@contextlib.contextmanager
def doit_record_locks(state_dir: Path) -> Iterator[None]:
    """What a doit run's record holds: `DOIT_LOCK` exclusively, once the sub-tasks of other doit
    runs that hold it are done (none starts meanwhile), and the project lock shared, failing at
    once while a build or another command holds it. No sub-task holds a job lock now: their files go."""
    with ProjectLock(state_dir / DOIT_LOCK, wait=True), ProjectLock(state_dir / "lock", shared=True):
        shutil.rmtree(state_dir / DOIT_JOB_LOCKS, ignore_errors=True)
        yield
