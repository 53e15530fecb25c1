"""What runs inside a worker: a job's pipeline, then its output put in place, and nothing else.

Only plain data crosses the executor boundary (batchit.execute.boundary): `JobSpec`s in,
`JobResult`s out; every exception becomes a result here, so nothing unpicklable travels back and
one bad job never kills a batch. Workers never touch the state store; they write the output (temp
file, verify, rename) and copy it into the content-addressed cache (batchit.execute.publish).
"""

from __future__ import annotations

import copy
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import GeneratorType
from typing import Any, TypedDict

from batchit.errors import JobError, OutputError, PermanentError, RecipeError
from batchit.execute.boundary import NOT_STARTED, JobResult, JobSpec, WorkerSettings
from batchit.execute.contracts import check_input
from batchit.execute.publish import copy_into_cache, restore_output, write_output
from batchit.execute.retry import classify, retry_after_of
from batchit.fsutil import StatTuple, cache_entry, stat_identity
from batchit.operators.base import InputFile, JobContext, Operator
from batchit.operators.commands import ends_in_keyboard_interrupt, stop_requested
from batchit.operators.kept import LOG_KEEPS, KeptText
from batchit.operators.registry import load_target

OVERLAP_FROM = 0.001
"""Seconds a job's steps must take before `run_batch` publishes its output beside the next job's
steps instead of before them: handing a quicker job's output to another thread costs more than it
saves."""


def run_batch(
    settings: WorkerSettings, specs: list[JobSpec], stopped: Callable[[], bool] = stop_requested
) -> list[JobResult]:
    """Run several jobs in this worker, one after another, and return one result each.

    Once `stopped` says the build is stopping (a Ctrl-C reached this process, or the coordinator
    told it), or under `--fail-fast` once a job of the batch failed for good, the jobs not started
    yet are not started: each gets a `NotStarted` result, which the coordinator records as nothing,
    so the next build runs them.

    With `settings.overlap` (the build has fewer workers than CPUs), while a job's steps run, the
    output of the job before it is published (written, hashed, copied into the cache) on a thread
    of its own, so when the steps release the GIL (Pillow, the codecs, a command) putting files in
    place costs a worker no time; with every CPU busy the hand-off would only cost. Jobs of one
    batch never read each other's outputs: a job is dispatched once the jobs it reads have finished.
    """
    operators: dict[str, Operator] = {}
    results: list[JobResult | Future[JobResult]] = []
    publishing: Future[JobResult] | None = None
    failed = False
    with ThreadPoolExecutor(1, thread_name_prefix="batchit-publish") as publisher:
        for spec in specs:
            if failed or stopped():
                results.append(_not_started(spec))
                continue
            done = _compute(settings, spec, operators)
            if isinstance(done, JobResult) or not settings.overlap or done.seconds < OVERLAP_FROM:
                result = done if isinstance(done, JobResult) else done.publish()
                results.append(result)
                failed = settings.fail_fast and _failed_for_good(result)
            else:
                if publishing is not None:
                    publishing.result()  # one output at a time waits in memory
                publishing = publisher.submit(done.publish)
                results.append(publishing)
    return [result if isinstance(result, JobResult) else result.result() for result in results]


def run_job(
    settings: WorkerSettings, spec: JobSpec, operators: dict[str, Operator] | None = None
) -> JobResult:
    """Run one job to a result; never raises (but for a real Ctrl-C in a doit sub-task).

    A step's code that raises SystemExit, KeyboardInterrupt or any other BaseException (an asyncio
    CancelledError) fails its job like any other exception.

    `operators` shares operator instances between the jobs of a batch (they hold no state).
    """
    done = _compute(settings, spec, operators if operators is not None else {})
    return done if isinstance(done, JobResult) else done.publish()


@dataclass(slots=True)
class _Computed:
    """A job whose steps have run: its value, waiting to be published as the output."""

    settings: WorkerSettings
    spec: JobSpec
    value: bytes | str | InputFile
    ctx: JobContext
    log: KeptText | None
    timings: list[tuple[str, float]]
    started: float
    seconds: float
    """How long the steps took."""

    def publish(self) -> JobResult:
        """Put the value in place as the job's output (see `write_output`) and keep a copy in the
        cache; the job's result. Never raises."""
        settings, spec = self.settings, self.spec
        dest = f"{settings.root}/{settings.out}/{spec.output}"  # a str: no Path per job
        try:
            written = time.perf_counter()
            digest, sha, size, data = write_output(
                self.value, dest, spec.expect, settings.root, fsync=settings.fsync
            )
            cache_dir = settings.cache_dir if spec.cache else None
            cache_error = (
                "" if cache_dir is None else _keep_in_cache(cache_entry(cache_dir, spec.key), dest, data)
            )
            self.timings.append(("write", time.perf_counter() - written))
            return _in_place(
                settings,
                spec,
                dest,
                (digest, sha, size),
                tuple(sorted(self.ctx.discovered)),
                self.started,
                attempts=spec.attempt,
                cached=cache_dir is not None and not cache_error,
                cache_error=cache_error,
                step_seconds=tuple(self.timings),
                log=_writable(self.log.getvalue()) if self.log else "",
                read_hashes=tuple(sorted(self.ctx.read_hashes.items())),
            )
        except Exception as exc:
            return _failed(spec, exc, self.started, self.log)


def _compute(
    settings: WorkerSettings, spec: JobSpec, operators: dict[str, Operator]
) -> JobResult | _Computed:
    """Run a job's steps: a value to publish, or the job's result already (a restored copy, a failure)."""
    started = time.perf_counter()
    root = _root_path(settings.root)
    buffer: KeptText | None = None
    try:
        if spec.restore_from is not None:
            dest = Path(f"{settings.root}/{settings.out}/{spec.output}")
            hashes = restore_output(
                Path(spec.restore_from), dest, spec.restore_blake3, settings.root, fsync=settings.fsync
            )
            return _in_place(settings, spec, dest, hashes, spec.restore_discovered, started)
        if spec.validate:
            check_input(spec.validate, [root / p for p in spec.inputs], root)
        ctx = JobContext(
            input=list(spec.inputs) if spec.aggregate else spec.inputs[0],
            output=spec.output,
            rule=spec.rule,
            key=spec.key,
            root=root,
            out=settings.out,
            sources=spec.sources or {},
        )
        buffer = _capture_log(spec, operators, ctx)
        timings: list[tuple[str, float]] = []
        value = _pipeline(spec, ctx, root, operators, timings)
        seconds = time.perf_counter() - started
        return _Computed(settings, spec, value, ctx, buffer, timings, started, seconds)
    except Exception as exc:
        # An input removed since it was planned (a checkout, an editor's save, a watch's burst) is
        # not at fault: quarantine would copy no bytes, and hold the file back once it returns as it was.
        gone = any(stat_identity(f"{settings.root}/{path}") is None for path in spec.inputs)
        return _failed(spec, exc, started, buffer, input_gone=gone)


@lru_cache(maxsize=4)
def _root_path(root: str) -> Path:
    """The project root as a Path, made once per worker rather than once per job."""
    return Path(root)


def _in_place(
    settings: WorkerSettings,
    spec: JobSpec,
    dest: str | Path,
    hashes: tuple[str, str, int],
    discovered: tuple[str, ...],
    started: float,
    **details: Any,
) -> JobResult:
    """The result of a job whose output is in place: its BLAKE3, SHA-256 and size, what the job
    discovered, and the stats that tell whether an input changed while it ran."""
    digest, sha, size = hashes
    return JobResult(
        spec.job_id,
        True,
        digest,
        sha,
        size,
        discovered,
        duration=time.perf_counter() - started,
        **details,
        **_stats_after(settings, spec, dest),
    )


def _keep_in_cache(entry: Path, dest: str, data: bytes | None) -> str:
    """Copy the output into the cache; what went wrong, when that cannot be done (a full disk,
    something in the way under .batchit/cache). The cache only saves work: no job fails for it."""
    try:
        copy_into_cache(entry, dest, data)
    except OSError as exc:
        return f"{exc.strerror or exc} at {entry.parent}"
    return ""


def _failed(
    spec: JobSpec, exc: Exception, started: float, log: KeptText | None, *, input_gone: bool = False
) -> JobResult:
    """The result of a job that raised `exc` (`input_gone`: while an input of it was missing)."""
    transient, name = classify(exc)
    message = str(exc) or name
    if not isinstance(exc, JobError | OSError):
        message += "\n" + "".join(traceback.format_exception(exc)[-3:]).rstrip()
    return JobResult(
        spec.job_id,
        False,
        error_class=name,
        message=_writable(message),
        transient=transient,
        attempts=spec.attempt,
        duration=time.perf_counter() - started,
        retry_after=retry_after_of(exc) if transient else None,
        defers=transient and isinstance(exc, JobError) and exc.defers,
        log=_writable(log.getvalue()) if log else "",
        input_at_fault=not input_gone and not isinstance(exc, OutputError | RecipeError),
    )


def _writable(text: str) -> str:
    """`text` with each lone surrogate in it (a file name Python decoded from bytes that are not
    UTF-8: `\\udcff`) written as its escape: a job's message and log are written as UTF-8 (the
    events, the manifest, the log file, the terminal), which has no bytes for one."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return text


def _failed_for_good(result: JobResult) -> bool:
    """True for a failure no retry follows (a permanent one): under `--fail-fast`, the end of the
    build, so the batch starts none of its other jobs."""
    return not result.ok and not result.transient


def _not_started(spec: JobSpec) -> JobResult:
    """The result of a job of a batch that the build stopped before it started."""
    return JobResult(
        spec.job_id,
        False,
        error_class=NOT_STARTED,
        message="not started: the build was stopping",
        attempts=spec.attempt,
        input_at_fault=False,
    )


class _StatsAfter(TypedDict):
    """The stat fields of a successful JobResult."""

    output_stat: StatTuple | None
    input_stats: tuple[StatTuple | None, ...]


def _stats_after(settings: WorkerSettings, spec: JobSpec, dest: str | Path) -> _StatsAfter:
    """A finished job's output stat and its inputs' stats, as JobResult fields."""
    return {
        "output_stat": stat_identity(str(dest)),
        "input_stats": tuple(stat_identity(f"{settings.root}/{p}") for p in spec.inputs),
    }


def _capture_log(spec: JobSpec, operators: dict[str, Operator], ctx: JobContext) -> KeptText | None:
    """Give a job whose steps run user code or commands a private debug-level log, and return it
    (its first and last LOG_KEEPS characters: a step logging without end costs no memory)."""
    for call in spec.steps:
        if call.target not in operators:
            operators[call.target] = load_target(call.target)()
    if not any(operators[call.target].logs_output for call in spec.steps):
        return None
    buffer = KeptText(LOG_KEEPS)
    logger = logging.Logger(f"batchit.job.{spec.rule}", logging.DEBUG)  # not registered: dies with the job
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    ctx.log = logger
    return buffer


def _pipeline(
    spec: JobSpec,
    ctx: JobContext,
    root: Path,
    operators: dict[str, Operator],
    timings: list[tuple[str, float]],
) -> Any:
    value: Any
    if spec.aggregate:
        value = [InputFile(p, root / p) for p in spec.inputs]
    else:
        value = InputFile(spec.inputs[0], root / spec.inputs[0])
    for number, call in enumerate(spec.steps, start=1):
        operator = operators.get(call.target)
        if operator is None:
            operator = operators[call.target] = load_target(call.target)()
        step_started = time.perf_counter()
        try:
            value = operator.run(value, ctx, **_own_params(call.params))
        except JobError as exc:  # an operator naming itself ("step data.dump: ...") is named once
            told = exc.message.removeprefix(f"step {call.operator}: ").removeprefix(f"step {call.operator} ")
            exc.message = f"step {number} ({call.operator}): {told}"
            exc.args = (exc.message,)
            raise
        except Exception:
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, an asyncio CancelledError, ...
            if isinstance(exc, KeyboardInterrupt) and _ctrl_c_raises_here():
                raise  # a real Ctrl-C (a doit sub-task in the main thread): the user stops the run
            why = (
                "never try to end the process"
                if isinstance(exc, SystemExit | KeyboardInterrupt)
                else f"which {type(exc).__name__} is not (it derives from BaseException only)"
            )
            raise PermanentError(
                f"step {number} ({call.operator}) raised {type(exc).__name__}"
                f"({', '.join(map(repr, exc.args))}): a step must "
                f"return its value or raise an exception, {why}"
                + "\n"
                + "".join(traceback.format_exception(exc)[-3:]).rstrip()
            ) from exc
        timings.append((call.operator, time.perf_counter() - step_started))
    last = spec.steps[-1].operator if spec.steps else "input"
    if isinstance(value, GeneratorType):  # whatever the input: the step's code is at fault
        value.close()
        raise RecipeError(
            f"the last step ({last}) returned a generator; a pipeline must end in bytes or str",
            hint="return the text or bytes itself (join what the function yields)",
        )
    if not isinstance(value, bytes | str | InputFile):
        raise PermanentError(
            f"the last step ({last}) returned {type(value).__name__}; a pipeline must end in bytes or str"
        )
    if isinstance(value, str):  # written as UTF-8, which a lone surrogate (`\udcff`) has no bytes in
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PermanentError(
                f"the last step ({last}) returned text that is not valid Unicode (a lone surrogate "
                f"{value[exc.start]!r} at character {exc.start}): it cannot be written as UTF-8"
            ) from None
    return value


def _own_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A step's parameters for one call, each list or mapping among them a copy: the rule's jobs
    (and a job's attempts) share one set, so an operator that changes one it was given (appends to
    a list) would hand the next job a value its key does not show, and outputs would depend on
    the order jobs ran in."""
    return {
        name: copy.deepcopy(value) if isinstance(value, list | dict) else value
        for name, value in params.items()
    }


def _ctrl_c_raises_here() -> bool:
    """True when a Ctrl-C could have raised a KeyboardInterrupt in this thread: the main thread under
    Python's default SIGINT handler. Elsewhere one comes from the step's own code: worker threads
    never see signals, worker processes ignore SIGINT, and a build's main thread turns it into a flag.
    """
    return threading.current_thread() is threading.main_thread() and ends_in_keyboard_interrupt(
        signal.getsignal(signal.SIGINT)
    )
