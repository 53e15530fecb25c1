"""What crosses the executor boundary: a build's settings and each job's spec in, its result out.

Only these plain, picklable records travel between the coordinator and a worker (a process of the
local pool or of a Dask cluster); every exception becomes a `JobResult` in the worker, so nothing
unpicklable travels back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, TypeVar

from batchit.errors import JobError, WorkerCrashed
from batchit.fsutil import StatTuple
from batchit.operators.base import UpstreamSource
from batchit.plan.keys import StepCall

Record = TypeVar("Record")


def pickled_by_position(cls: type[Record]) -> type[Record]:
    """Pickle a slotted dataclass as its class and its field values in order.

    A build sends every job's spec to a worker and its result back: the default pickling of a
    slotted dataclass looks its fields up on every object, which for 10,000 jobs cost the
    coordinator about 40 ms of each cold build; this costs a third of that.
    """
    values = attrgetter(*(f.name for f in fields(cls)))  # type: ignore[arg-type]

    def reduce(self: Record) -> tuple[type[Record], tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = reduce  # type: ignore[assignment,method-assign]
    return cls


NOT_STARTED = "NotStarted"
"""The error class of a job a worker did not start because the build was stopping (`run_batch`):
the coordinator records nothing for it, and the next build runs it."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Per-build settings every worker needs."""

    root: str
    out: str
    cache_dir: str | None
    """Where finished outputs are linked by action key; None with --no-cache."""
    fsync: bool
    overlap: bool = False
    """Publish an output beside the next job's steps (`run_batch`): when the build leaves a CPU free."""
    fail_fast: bool = False
    """Start no more jobs of a batch once one has failed for good (`--fail-fast`, `run_batch`)."""


@pickled_by_position
@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as a worker sees it."""

    job_id: str
    rule: str
    inputs: tuple[str, ...]
    aggregate: bool
    output: str
    steps: tuple[StepCall, ...]
    key: str
    expect: dict[str, Any] | None = None
    validate: dict[str, Any] | None = None
    cache: bool = True
    """Keep a copy of the output in the content-addressed cache (when the build uses one)."""
    attempt: int = 1
    """Which attempt this is; the coordinator schedules the next after a transient failure."""
    restore_from: str | None = None
    """An absolute path holding the output's bytes already (a cache entry or a twin job's output)."""
    restore_blake3: str | None = None
    restore_discovered: tuple[str, ...] = ()
    """The dependencies the run that produced `restore_from` discovered: the restored output's own."""
    sources: dict[str, UpstreamSource] | None = None
    """For an aggregate over other rules' outputs: which job produced each input (`ctx.sources`)."""


@pickled_by_position
@dataclass(frozen=True, slots=True)
class JobResult:
    """How a job ended: the output's hashes, or the failure's class and message."""

    job_id: str
    ok: bool
    blake3: str = ""
    sha256: str = ""
    size: int = 0
    discovered: tuple[str, ...] = ()
    error_class: str = ""
    message: str = ""
    transient: bool = False
    attempts: int = 1
    duration: float = 0.0
    cached: bool = False
    cache_error: str = ""
    """Why the output could not be copied into the cache (the job is built all the same)."""
    step_seconds: tuple[tuple[str, float], ...] = ()
    """(operator, seconds) of each step of the last attempt, then ("write", seconds) for the output."""
    retry_after: float | None = None
    """For a transient failure: the least wait before trying again (a server's Retry-After)."""
    defers: bool = False
    """For a transient failure: once its attempts are used up the job is deferred, not failed (a
    `ServiceUnreachable`: `http.enrich` could not reach its service)."""
    log: str = ""
    """What the job's `python`/`shell` steps printed and logged (kept under the run's logs/)."""
    read_hashes: tuple[tuple[str, str], ...] = ()
    """(path, blake3) of discovered files whose bytes a step hashed as it read them."""
    output_stat: StatTuple | None = None
    """The output's stat once it is in place, for the stat cache."""
    input_stats: tuple[StatTuple | None, ...] = ()
    """Each input's stat after the job (None: gone), to tell whether one changed while it ran."""
    input_at_fault: bool = True
    """For a permanent failure of a one-input job: whether it quarantines the input (not when the
    output could not be written, nor for a RecipeError)."""
    threads_left: tuple[str, ...] = ()
    """On the last result of a batch a worker process ran: the names of the threads (not daemons)
    that its steps, or the modules they imported, left running there (`Pools.shutdown`)."""

    @property
    def deferred(self) -> bool:
        """True for a job deferred rather than failed, once its last attempt is over (`defers`)."""
        return not self.ok and self.defers


def crashed(spec: JobSpec) -> JobResult:
    """The failure of a job whose worker process died while it ran alone (see `WorkerCrashed`)."""
    error = WorkerCrashed(
        "its worker process died while running it, twice: in a batch, then alone",
        hint="a crash in native code (a decoder), the system's out-of-memory killer, or os._exit in a "
        "python step or an operator plugin; the other jobs of its batch ran again",
    )
    return failed_as(spec, error, input_at_fault=True)


def failed_as(spec: JobSpec, error: JobError, *, input_at_fault: bool) -> JobResult:
    """The failure of a job that left no result of its own (its worker died, its batch never came
    back): `error` says why, and `input_at_fault` whether its input is quarantined for it."""
    return JobResult(
        spec.job_id,
        False,
        error_class=type(error).__name__,
        message=str(error),
        attempts=spec.attempt,
        input_at_fault=input_at_fault,
    )
