"""`--executor dask[=ADDRESS]`: `cpu` jobs on a Dask distributed cluster (SPEC section 10).

With `dask_tasks` (what its workers run), the only module that imports Dask, and only a build
with this executor imports it. `DaskPools` is `Pools` with its process pool swapped for a cluster,
so the scheduler dispatches, retries and stops as it does locally: the same `run_batch` of the
same picklable job specs goes to a worker as one task per batch, its results come back as it
completes, and `io` jobs (rate-limited HTTP) stay in the coordinator's threads. The coordinator
alone writes the state store.

`dask=ADDRESS` connects to a running scheduler; `dask` alone starts a `LocalCluster` of `-j`
single-threaded worker processes for the build. Workers read inputs and write `out` at the project's
absolute path, so they share its storage and run the same batchit version: checked on connect,
and again by every batch on the worker that runs it, before its first job (`checked_batch`), since
workers may join the cluster later. A worker that does not fit refuses the batch, whose jobs fail
(`WrongWorker`) without running.

A batch becomes a `concurrent.futures.Future` the scheduler waits on like a process pool's. It stays
cancellable until a worker reports (an event on STARTED) that the batch began: stopping the build
(Ctrl-C, `--fail-fast`) cancels what has not started, and what runs finishes and is committed, as
locally. A worker that dies mid-batch is dask's to handle: it runs the batch again elsewhere (its key
yields one result, committed once); after `distributed.scheduler.allowed-failures` deaths the task
fails with KilledWorker, which the scheduler treats as a broken process pool: the batch's jobs run
again one at a time, and the one that kills its worker again fails (`WorkerCrashed`). A batch that
comes back with no results (the scheduler went away) fails its jobs (`ClusterLost`), and so does
every later one at once: the build ends as any build with failures, its run recorded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
import signal
import threading
import uuid
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from batchit import __version__
from batchit.errors import ClusterLost, JobError, UsageError, WrongWorker
from batchit.execute.boundary import JobResult, JobSpec, WorkerSettings, failed_as
from batchit.execute.pools import Pools
from batchit.execute.signals import spawned_ignoring_ctrl_c
from batchit.operators.commands import signal_commands

try:
    import distributed
except ModuleNotFoundError as missing:  # Dask is an optional extra
    raise UsageError(
        "--executor dask needs Dask's `distributed` package, which is not installed",
        hint="pip install 'batchit[dask]' (on the workers too), or build with --executor local",
    ) from missing

from batchit.execute.dask_tasks import STARTED, LeaveInterruptsToTheCoordinator, checked_batch, sees_project

CLOSE_SECONDS = 10
"""How long closing the client or the local cluster may take."""

Task = distributed.Future[list[JobResult] | str]
"""A batch's task on the cluster: its results, or why its worker refused it (`checked_batch`)."""

FIX = "install this batchit version on every worker and mount the project at the same path there"


class DaskPools(Pools):
    """The executors of a build whose `cpu` jobs run on a Dask cluster."""

    def __init__(self, settings: WorkerSettings, workers: int, address: str | None, *, sized: bool) -> None:
        super().__init__(settings, workers, "dask")
        self.address = address
        """The scheduler to connect to; None: start a LocalCluster of `workers` processes."""
        self._sized = sized
        """`workers` was asked for (`-j`, the config's `jobs`); else a cluster's thread count rules."""
        self._client: distributed.Client | None = None
        self._cluster: distributed.LocalCluster | None = None
        self._lock = threading.RLock()  # a signal handler (`abandon`) may interrupt its holder
        self._batches: dict[str, tuple[Task, Future[list[JobResult]], list[JobSpec]]] = {}
        """Batches in flight by task key: the Dask future, the one the scheduler waits on, its jobs."""
        self._gone: ClusterLost | None = None
        """Why no batch can come back from the cluster any more (its scheduler went away)."""
        self._stop = f"batchit-stop-{uuid.uuid4().hex}"
        """The name of the Dask event that says this build stopped (see `_say_stop`)."""
        self._stopped = False

    def warm_up(self) -> None:
        """Connect (or start the local cluster) before anything is written: a build that cannot reach
        its cluster fails with nothing done."""
        self._connect()

    def submit(self, resources: str, batch: list[JobSpec]) -> Future[list[JobResult]]:
        """Run an `io` batch in the coordinator's threads, a `cpu` batch as a task on the cluster."""
        if resources != "cpu":
            return super().submit(resources, batch)
        client = self._connect()
        waited: Future[list[JobResult]] = Future()
        if self._gone is not None:  # a client whose scheduler is gone would hold the batch forever
            waited.set_result(_failed(batch, self._gone))
            return waited
        key = f"batchit-batch-{uuid.uuid4().hex}"
        payload = pickle.dumps((self.settings, batch, self._stop), protocol=pickle.HIGHEST_PROTOCOL)
        check = checked_batch(__version__)
        task = client.submit(check, self.settings.root, payload, key=key, pure=False)
        with self._lock:
            self._batches[key] = (task, waited, batch)
        task.add_done_callback(self._settle)
        waited.add_done_callback(functools.partial(self._cancel_task, task))
        # Each batch is a pool generation of its own: a worker's death (KilledWorker) breaks that
        # batch alone, never the batches other workers run (Scheduler._broken).
        self.generation += 1
        return waited

    def _connect(self) -> distributed.Client:
        """The client, connected on first use, with the workers checked."""
        if self._client is not None:
            return self._client
        for handler in logging.getLogger("distributed").handlers:
            handler.setLevel(logging.CRITICAL + 1)  # stderr is batchit's (`--log-format json`)
        if self.address is None:
            client = self._start_local_cluster()
        else:
            try:
                _answers_as_a_scheduler(self.address)
                client = distributed.Client(self.address, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise UsageError(
                    f"cannot connect to the Dask scheduler at {self.address}: {exc}; nothing was built",
                    hint="check the address and that `dask scheduler` runs there (and `dask worker "
                    f"{self.address}` on the workers), or use --executor dask to start a local cluster",
                ) from exc
        self._client = client
        client.subscribe_topic(STARTED, self._started)
        client.subscribe_topic("all", self._scheduler_event)
        try:
            self._check_workers(client)
        except BaseException:
            self.shutdown()
            raise
        return client

    def _start_local_cluster(self) -> distributed.Client:
        """Start the build's own cluster of `workers` processes and connect to it.

        Its processes start ignoring SIGINT: a Ctrl-C while they start would print their
        tracebacks. One pressed meanwhile reaches the build once the cluster is up, which then
        stops it again in order.
        """
        try:
            with spawned_ignoring_ctrl_c():
                self._cluster = distributed.LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    scheduler_kwargs={"dashboard_address": ":0"},  # its HTTP routes, else on port 8787
                    silence_logs=logging.CRITICAL,
                )
            client = distributed.Client(self._cluster, set_as_default=False)
            client.register_plugin(LeaveInterruptsToTheCoordinator(), name="batchit-interrupts")
        except BaseException:
            self.shutdown(cancel=True)
            raise
        return client

    def _check_workers(self, client: distributed.Client) -> None:
        """Every worker must run this batchit version and see the project at its absolute path."""
        where = f"the Dask cluster at {self.address}" if self.address else "the local Dask cluster"
        try:
            seen: dict[str, tuple[str, bool]] = client.run(sees_project, self.settings.root)
            if not seen:  # a scheduler whose workers have not joined (yet): its tasks would wait forever
                _wait_for_a_worker(client, where, f"`dask worker {self.address or 'ADDRESS'}`; {FIX}")
                seen = client.run(sees_project, self.settings.root)
        except ImportError as exc:
            raise UsageError(f"a worker of {where} cannot import batchit: {exc}", hint=FIX) from exc
        wrong = sorted(
            f"{worker} ({'batchit ' + version if version != __version__ else 'no ' + self.settings.root})"
            for worker, (version, visible) in seen.items()
            if version != __version__ or not visible
        )
        if wrong:
            raise UsageError(
                f"workers of {where} cannot run this build (batchit {__version__} at "
                f"{self.settings.root}): {', '.join(wrong)}",
                hint=FIX,
            )
        if self.address is not None and not self._sized:
            threads = (info["nthreads"] for info in client.scheduler_info()["workers"].values())
            self.workers = max(1, sum(threads))

    def _started(self, event: tuple[float, Any]) -> None:
        """A worker began a batch: from now on stopping the build lets it finish (Dask's event loop).
        A batch that Dask runs again (its worker died) starts twice."""
        with self._lock:
            entry = self._batches.get(event[1])
            if entry is not None and not (entry[1].running() or entry[1].done()):
                entry[1].set_running_or_notify_cancel()  # False if cancelled meanwhile: it stays so

    def _scheduler_event(self, event: tuple[float, Any]) -> None:
        """Note a worker that left while it ran one of this build's batches (Dask's event loop)."""
        message = event[1]
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            with self._lock:
                if any(key in self._batches for key in message.get("processing-tasks", ())):
                    self.worker_lost = True

    def _settle(self, task: Task) -> None:
        """Hand a finished task's results (or why it failed) to the future the scheduler waits on:
        a batch that came back with no results fails its jobs, so the build goes on to record its
        run (a BrokenProcessPool, the batch's jobs run again one at a time, for a KilledWorker)."""
        with self._lock:
            entry = self._batches.pop(str(task.key), None)
        if entry is None or entry[1].cancelled():
            return
        _, waited, batch = entry
        error: BaseException | None = None
        with contextlib.suppress(InvalidStateError):  # the build cancelled it meanwhile
            try:
                if task.status == "finished":
                    answer = task.result()
                    if isinstance(answer, str):  # its worker refused it
                        waited.set_result(_failed(batch, WrongWorker(answer, hint=FIX)))
                    else:
                        waited.set_result(answer)
                    return
                error = task.exception() if task.status == "error" else None
            except Exception as exc:  # the results could not be fetched
                error = exc
            if isinstance(error, distributed.KilledWorker):
                self.worker_lost = True
                waited.set_exception(BrokenProcessPool(str(error)))
                return
            lost = self._lost(str(task.status), error)
            if error is None:  # cancelled by no one but the cluster: its scheduler went away
                self._gone = lost
                self.worker_lost = True  # its workers may have left temporary files
            waited.set_result(_failed(batch, lost))

    def _lost(self, status: str, error: BaseException | None) -> ClusterLost:
        """Why a batch came back with no results: the worker could not run it, or the cluster is gone."""
        where = self.address or "the local cluster"
        return ClusterLost(
            f"its batch, sent to the Dask cluster ({where}), came back {status}: "
            + (f"{type(error).__name__}: {error}" if error else "the scheduler went away"),
            hint="what finished is committed: build again once the cluster and its workers are up",
        )

    def _cancel_task(self, task: Task, waited: Future[list[JobResult]]) -> None:
        """The build dropped a batch before it started: the cluster need not run it."""
        if waited.cancelled():
            with self._lock:
                self._batches.pop(str(task.key), None)
            self._say_stop()
            task.cancel()

    def interrupt(self, signum: int) -> None:
        """As locally, and tell the workers through the scheduler: a batch one of them runs starts
        no further job (a Ctrl-C in the terminal reaches no remote worker)."""
        super().interrupt(signum)
        self._say_stop()

    def _say_stop(self) -> None:
        """Tell the workers, through the scheduler, that the build stopped: a batch they already
        hold starts no job once this returns, even if its cancellation reaches them later."""
        if self._stopped or self._client is None:
            return
        self._stopped = True
        with contextlib.suppress(Exception):  # a cluster gone runs nothing more anyway
            distributed.Event(self._stop, client=self._client).set()

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop the coordinator's threads, then leave the cluster (and stop the local one)."""
        super().shutdown(cancel=cancel)
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        if client is not None:
            with contextlib.suppress(Exception):  # a scheduler gone cannot be told
                for topic in (STARTED, "all"):
                    client.unsubscribe_topic(topic)
            client.close(timeout=CLOSE_SECONDS)
        if cluster is not None:
            cluster.close(timeout=CLOSE_SECONDS)

    def abandon(self) -> None:
        """Stop without waiting: batches still on the cluster are cancelled, and the commands they
        run on the local cluster's workers killed (a remote cluster's are left to finish)."""
        client = self._client
        if client is not None:
            with self._lock:
                tasks = [task for task, _, _ in self._batches.values()]
                self._batches.clear()
            with contextlib.suppress(Exception):
                client.cancel(tasks)
                if self._cluster is not None:
                    client.run(signal_commands, signal.SIGKILL)
        super().abandon()
        with contextlib.suppress(Exception):
            self.shutdown(cancel=True)


def _wait_for_a_worker(client: distributed.Client, where: str, fix: str) -> None:
    """Give a cluster without workers the connect timeout for one to join (started with the
    scheduler, workers take a moment), then refuse the build: nothing would ever run its jobs, and
    no worker would have been checked."""
    seconds = _connect_timeout()
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError as exc:
        raise UsageError(
            f"{where} has no worker (none joined in {seconds:g} s); nothing was built",
            hint=f"start workers with {fix}",
        ) from exc


def _connect_timeout() -> float:
    """Seconds of Dask's `distributed.comm.timeouts.connect` (30 unless configured)."""
    import dask.config
    from dask.utils import parse_timedelta

    return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s"))


def _answers_as_a_scheduler(address: str) -> None:
    """Open one connection to `address` and exchange Dask's handshake: an OSError if no connection
    opens within the connect timeout (`distributed.comm.timeouts.connect`), a TimeoutError if the
    handshake takes as long again. `Client` bounds the connection alone, and waits forever for the
    handshake of a port that accepts but never answers (a dashboard's HTTP port, say). A server
    that answers in another protocol (an SSH banner, an HTTP 400) is a ValueError: Dask reads its
    bytes as a message's length and fails however it fails (a MemoryError for a banner)."""
    import asyncio

    from distributed.comm.core import connect

    seconds = _connect_timeout()
    arguments = distributed.Security().get_connection_args("client")

    async def handshake() -> None:
        try:
            comm = await connect(address, timeout=seconds, **arguments)
        except TypeError as exc:  # `tls://` without Dask's TLS settings
            raise ValueError(str(exc)) from exc
        except (OSError, TimeoutError, ValueError):  # no connection; a bad address (no port, say)
            raise
        except Exception as exc:  # its first bytes read as no Dask message (an SSH banner: MemoryError)
            raise ValueError(
                f"it answered, but not as a Dask scheduler ({type(exc).__name__} reading its reply)"
            ) from exc
        await comm.close()

    async def bounded() -> None:
        try:
            await asyncio.wait_for(handshake(), 2 * seconds)
        except TimeoutError as exc:
            raise TimeoutError(f"it accepts connections but gave no Dask handshake in {seconds:g} s") from exc

    asyncio.run(bounded())


def _failed(batch: list[JobSpec], error: JobError) -> list[JobResult]:
    """The results of a batch none of whose jobs ran, because of `error`: failures that are no
    fault of their inputs (never quarantined), tried again by the next build."""
    return [failed_as(spec, error, input_at_fault=False) for spec in batch]
