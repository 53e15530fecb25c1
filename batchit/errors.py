"""One exception hierarchy for everything batchit reports to a user.

Each class carries the exit code the command ends with (SPEC section 4), so `main()` never holds an
exit-code literal, and a `hint` that tells the user how to fix the problem.
"""

from __future__ import annotations

import errno
from typing import ClassVar


class BatchitError(Exception):
    """Root of batchit's errors: a message, a hint for the fix, and the exit code it maps to."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


DISK_REFUSED_FIX = "free space or fix the permissions there, then run the command again (a build resumes)"
"""The fix for a write a full, read-only or forbidding disk refused; what was committed stays."""


class SystemFailure(BatchitError):
    """A file batchit had to read or write failed at the system level (a full disk, a permission, a
    read-only file system): exit 1, naming the file. What was committed before it stays committed."""

    @classmethod
    def from_os_error(cls, exc: OSError) -> SystemFailure:
        """The failure an unexpected OSError stands for, with the file it names and a fix."""
        where = f": {exc.filename}" if exc.filename else ""
        in_the_way = {
            errno.ENOTDIR: "a file on that path stands where a folder must be: move it aside",
            errno.EISDIR: "a folder stands where that file must be: move it aside",
        }
        fix = in_the_way.get(exc.errno or 0)
        hint = f"{fix}, then run the command again (a build resumes)" if fix else DISK_REFUSED_FIX
        return cls(f"{exc.strerror or exc}{where}", hint=hint)


class UsageError(BatchitError):
    """A command line that cannot be carried out as given (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """`batchit.yaml` (or an included preset) is invalid; names the file, line, rule and fix (exit 2)."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        rule: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line
        self.column = column
        self.rule = rule

    def __str__(self) -> str:
        where = self.file or "batchit.yaml"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        rule = f" rule '{self.rule}':" if self.rule else ""
        text = f"{where}:{rule} {self.message}"
        return text if not self.hint else f"{text}\n  fix: {self.hint}"


class OutputConflictError(UsageError):
    """An output path holds a file batchit did not write; it is never overwritten silently (exit 2)."""


class ForeignStateError(UsageError):
    """The project's `.batchit` holds the state of another config file, which still exists: building
    this one there would prune or disown that one's outputs (exit 2)."""


class DamagedStateError(UsageError):
    """The state store is not a database SQLite can read (a file written over, a disk fault): no
    command can trust it, and batchit never repairs it by guessing (exit 2)."""

    HINT = (
        "move it aside, with any state.db-wal and state.db-shm beside it and with audit.log, whose "
        "chain it anchors: the next build starts both afresh, and `build --overwrite` replaces the "
        "outputs already in `out`"
    )

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"the state store {where} cannot be read: {reason}", hint=self.HINT)


class LockHeldError(BatchitError):
    """Another batchit run holds the project's lock (exit 3)."""

    exit_code = 3


class BuildInterrupted(BatchitError):
    """The run was stopped by SIGINT or SIGTERM (exit 130)."""

    exit_code = 130


class JobError(BatchitError):
    """A job's failure, raised by an operator; the build records it and goes on (exit 1 at the end)."""

    transient: ClassVar[bool] = False
    defers: ClassVar[bool] = False
    """True when the job is deferred, not failed, once its attempts are used up (ServiceUnreachable)."""


class TransientError(JobError):
    """A failure that may succeed when retried: a timeout, a refused connection, HTTP 429 or 5xx.

    `retry_after` is the least wait before the next attempt: seconds, or a server's Retry-After
    header as it came (seconds or an HTTP date). A value that is neither is ignored.
    """

    transient = True

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after: float | str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class ServiceUnreachable(TransientError):
    """A service a step needs cannot be reached: a refused connection, a timeout, an answer of 429
    or 5xx. Retried like any transient error; when the last attempt fails too, the job is deferred
    (SPEC section 11): neither failed nor quarantined, counted as `deferred`, tried again by the next
    build, and the jobs that read its output are deferred with it. `http.enrich` raises it."""

    defers = True


class PermanentError(JobError):
    """A failure that retrying cannot fix: undecodable or invalid input, a failed validation."""


class OutputError(JobError):
    """A job's output could not be written (something stands in the way of its path, the disk is full
    or read-only): the job fails, and its input, which is not at fault, is never quarantined."""


class RecipeError(PermanentError):
    """A fault of the rule's recipe, not of its input, found only as a job runs (a font or a logo that
    cannot be read, a colour Pillow does not know): the job fails and is tried again by the next
    build, and its input, which is not at fault, is never quarantined."""


class WorkerCrashed(PermanentError):
    """The worker process running a job died (a crash in native code, the out-of-memory killer, a
    step calling `os._exit`). The jobs of its batch run again one at a time; the one whose worker
    dies again while it runs alone fails with this error, and its input is quarantined."""


class ClusterLost(JobError):
    """A job's batch never came back from the Dask cluster (`--executor dask`): its scheduler went
    away mid-build, or cancelled the batch. The job fails, and its input, which is not at fault, is
    never quarantined; the next build runs it again. What finished before is committed and the run
    is recorded as usual."""


class WrongWorker(JobError):
    """A Dask worker that joined the cluster after the build checked it cannot run the build's jobs
    (another batchit version, or the project is not at its path there): it refuses each batch before
    running any job of it. The jobs fail, their inputs are never quarantined, and the next build
    refuses the cluster at connect time, naming the worker."""
