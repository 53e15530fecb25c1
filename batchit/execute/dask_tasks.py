"""What a Dask worker runs for `--executor dask` (batchit.execute.dask): each batch of jobs, checked
first, and the checks the coordinator runs on its workers when it connects."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import distributed

from batchit import __version__
from batchit.execute.boundary import JobResult, JobSpec, WorkerSettings
from batchit.execute.worker import run_batch
from batchit.operators.commands import stop_requested

STARTED = "batchit-batch-started"
"""The event topic on which a worker announces each batch it starts (its task key)."""


def checked_batch(version: str) -> Callable[[str, bytes], list[JobResult] | str]:
    """A batch's task, which first checks the worker it lands on, as connecting checked those of
    the time: a worker may join the cluster later, and it gets batches at once.

    The check travels by value (a closure: cloudpickle ships its code), and the batch as bytes
    unpickled only once the check passed, so it runs whatever the worker's batchit (or none),
    and a refusal is plain text that any coordinator reads."""

    def run_checked(root: str, payload: bytes) -> list[JobResult] | str:
        import pickle
        from pathlib import Path

        import distributed

        worker = distributed.get_worker().address
        try:
            import batchit
        except ImportError as exc:
            return f"worker {worker} cannot import batchit ({exc}); this build runs batchit {version}"
        if batchit.__version__ != version:
            return f"worker {worker} runs batchit {batchit.__version__}; this build runs batchit {version}"
        if not Path(root).is_dir():
            return f"worker {worker} does not see the project at {root}"
        from batchit.execute.dask_tasks import run_on_worker

        return run_on_worker(*pickle.loads(payload))  # noqa: S301 - the coordinator's bytes, as Dask's own

    return run_checked


def run_on_worker(settings: WorkerSettings, specs: list[JobSpec], stop: str) -> list[JobResult]:
    """A batch as a Dask task: unless the build has stopped (event `stop`), say it started (the
    coordinator may no longer cancel it) and run it."""
    if distributed.Event(stop).is_set():
        return []  # cancelled by the build; its cancellation has not reached this worker yet
    worker = distributed.get_worker()
    worker.log_event(STARTED, worker.get_current_task())
    event = distributed.Event(stop)  # asked before each job: a round trip of about 1 ms
    return run_batch(settings, specs, lambda: stop_requested() or event.is_set())


def sees_project(root: str) -> tuple[str, bool]:
    """On a worker: its batchit version, and whether it sees the project root."""
    return __version__, Path(root).is_dir()


class LeaveInterruptsToTheCoordinator(distributed.WorkerPlugin):
    """A Ctrl-C in the terminal reaches the local cluster's workers too; they ignore it, so the
    coordinator stops the build in order (as the local process pool's workers do)."""

    def setup(self, worker: distributed.Worker) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
