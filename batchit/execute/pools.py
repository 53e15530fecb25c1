"""Worker pools: a process pool for `cpu` rules, a thread pool for `io` rules (SPEC section 10).

A build with fewer than PROCESSES_FROM `cpu` jobs to run runs them in the thread pool too: worker
processes would cost more to start than they save.

Jobs travel in batches (`run_batch`), so thousands of tiny jobs pay one process round-trip per batch
instead of one each. The process pool starts through a forkserver that has already imported the worker
module and the operators of the build's `cpu` rules (Pillow, say), so a fresh worker costs a fork, not
an interpreter start and its imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from batchit.execute.boundary import JobResult, JobSpec, WorkerSettings
from batchit.execute.signals import spawned_ignoring_ctrl_c
from batchit.execute.worker import run_batch
from batchit.operators.capture import own_descriptors
from batchit.operators.commands import signal_commands

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.context import BaseContext

ExecutorKind = Literal["local", "thread", "dask"]
"""`dask` runs `cpu` jobs on a Dask cluster (batchit.execute.dask.DaskPools)."""

PROCESSES_FROM = 100
"""`cpu` jobs to run from which worker processes pay off. Starting them costs about 80 ms here (the
forkserver, its imports, the forks); a few dozen jobs finish sooner in the coordinator's threads."""

WORKER_EXIT_GRACE = 2.0
"""Seconds a worker process gets to exit once its pool shuts down, all its batches done: it takes
milliseconds, unless a step left a thread running that Python waits for (`Pools.shutdown`)."""

_stdin_lock = threading.Lock()
_stdin_users = 0
"""Thread pools running now in this process, which keep its stdin detached (`_detach_stdin`)."""
_stdin_saved: int | None = None
"""A duplicate of the descriptor that was stdin before the first of them detached it."""

PRELOAD_LAST = "batchit.execute.forkserver_exit"
"""The module the forkserver imports after the operators it preloads (see there)."""


class Pools:
    """The executors of one build, created on first use and shut down together."""

    def __init__(
        self,
        settings: WorkerSettings,
        workers: int,
        kind: ExecutorKind = "local",
        preload: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.kind = kind
        self.preload = ["batchit.execute.pools", *preload, PRELOAD_LAST]
        """Modules the forkserver imports once, so that no worker process imports them itself."""
        self.threads_left: set[str] = set()
        """Names of the threads, not daemons, that steps left running in worker processes."""
        self._process: ProcessPoolExecutor | None = None
        self.generation = 0
        """Counts the process pools replaced after a worker died (`renew_processes`)."""
        self._thread: ThreadPoolExecutor | None = None
        self._few_jobs = False
        self._process_count = workers
        self.worker_lost = False
        """A remote worker died running a batch (`DaskPools`): it may have left a temporary file."""

    def submit(self, resources: str, batch: list[JobSpec]) -> Future[list[JobResult]]:
        """Run a batch of jobs on the pool their resource class belongs to.

        A process pool starts its workers with its first batch, through the forkserver: one that
        dies meanwhile (killed from outside) fails the start with EOFError or a broken pipe. That
        pool is broken as if a worker had died (`renew_processes`); the next starts the forkserver
        again."""
        pool = self._pool(resources)
        try:
            if pool is not self._process:
                return pool.submit(run_batch, self.settings, batch)
            future = pool.submit(_run_batch_in_worker, self.settings, batch)
            future.add_done_callback(self._note_threads_left)
            return future
        except (EOFError, ConnectionError) as exc:
            if pool is not self._process:
                raise
            from concurrent.futures.process import BrokenProcessPool  # the pool imported it
            from multiprocessing import forkserver

            # The dead forkserver may not be reaped yet (its socket closes before it exits), and
            # until it is, multiprocessing takes it for alive and sends the next pool to it again:
            # reap it now (a private method, the only way multiprocessing offers to stop it).
            with contextlib.suppress(OSError):
                forkserver._forkserver._stop()  # type: ignore[attr-defined]
            raise BrokenProcessPool(f"the worker processes could not be started: {exc}") from exc

    def _note_threads_left(self, future: Future[list[JobResult]]) -> None:
        """Keep the names of the threads a worker process reports left running after a batch."""
        if not future.cancelled() and future.exception() is None:
            for result in future.result():
                self.threads_left.update(result.threads_left)

    def renew_processes(self, broken: int) -> None:
        """Replace the process pool of generation `broken`, one of whose workers died (every batch
        it was running fails with BrokenProcessPool); the next batch starts a fresh pool. A pool
        already replaced is left alone."""
        if self._process is not None and self.generation == broken:
            self._process.shutdown(wait=False, cancel_futures=True)
            self._process = None
            self.generation += 1

    def expect(self, cpu_jobs: int) -> None:
        """Say how many `cpu` jobs the build will run: fewer than PROCESSES_FROM run in threads,
        and no more worker processes start than there are jobs for them."""
        self._few_jobs = cpu_jobs < PROCESSES_FROM
        self._process_count = max(1, min(self.workers, cpu_jobs))

    def warm_up(self) -> None:
        """Start the process pool's forkserver now, for a build that will need worker processes:
        its interpreter start and imports then overlap the coordinator's planning instead of
        delaying the first job. Returns at once."""
        if self._uses_processes:
            from multiprocessing import forkserver

            self._context()
            with spawned_ignoring_ctrl_c():
                forkserver.ensure_running()

    @property
    def _uses_processes(self) -> bool:
        return self.kind == "local" and self.workers > 1 and not self._few_jobs

    def _context(self) -> BaseContext:
        import multiprocessing  # only builds with cpu rules and several workers pay for it

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(self.preload)
        return context

    def _pool(self, resources: str) -> Executor:
        if resources == "cpu" and self._uses_processes:
            if self._process is None:
                from concurrent.futures import ProcessPoolExecutor

                self._process = ProcessPoolExecutor(
                    max_workers=self._process_count,
                    mp_context=self._context(),
                    initializer=_start_worker,
                )
                # Start every worker with the first batch, as the pool does under `fork`, never one
                # later from `submit`: a worker started while the pool breaks (another one died)
                # races the pool's own teardown, which then crashes, or waits for it forever.
                self._process._safe_to_dynamically_spawn_children = False  # type: ignore[attr-defined]
            return self._process
        if self._thread is None:
            _detach_stdin()
            self._thread = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="batchit-io")
        return self._thread

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop the pools; with `cancel`, queued batches are dropped instead of run.

        A worker process told to end exits at once, unless a step left a thread of its own running
        (not a daemon): Python waits for such a thread before the process ends, and the pool's
        shutdown for the process, so the build would hang, its record unwritten, for as long as the
        thread lives. Its batches are done by then, so a worker still there after WORKER_EXIT_GRACE
        seconds is terminated; at once, when a worker reported such a thread (`threads_left`)."""
        if self._process is not None:
            workers = self._workers()
            self._process.shutdown(wait=False, cancel_futures=cancel)
            deadline = time.monotonic() + (0.0 if self.threads_left else WORKER_EXIT_GRACE)
            for process in workers:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.terminate()
            self._process.shutdown(wait=True)  # the pool's own threads, now that its workers ended
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=cancel)
            _attach_stdin()
        self._process = self._thread = None

    def _workers(self) -> list[Any]:
        """The worker processes (`multiprocessing.Process`) of the process pool, if it runs."""
        if self._process is None:
            return []
        return list((getattr(self._process, "_processes", None) or {}).values())

    def interrupt(self, signum: int) -> None:
        """Pass a stop signal on to every command the build runs: those of this process's threads,
        and, through their handlers, those of the worker processes (which start no new one)."""
        signal_commands(signum)
        for process in self._workers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)

    def abandon(self) -> None:
        """Stop without waiting: worker processes are terminated (their commands with them), worker
        threads are left behind (the caller then exits the process, which ends them)."""
        self.kill_running()
        if self._process is not None:
            self._process.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)
            _attach_stdin()
        self._process = self._thread = None

    def kill_running(self) -> None:
        """Terminate the worker processes and kill the commands of the worker threads, taking no
        lock: a second Ctrl-C, which calls this and exits, may have interrupted the main thread
        inside an executor's `submit`, which holds the lock `shutdown` waits for."""
        for process in self._workers():
            process.terminate()  # ProcessPoolExecutor has no public way to stop a running call
        signal_commands(signal.SIGKILL)  # a thread waiting on a command then returns at once


@contextlib.contextmanager
def stdin_detached() -> Iterator[None]:
    """This process's stdin at /dev/null while the block runs jobs in it (a doit sub-task's), as it
    is while a build's thread pool runs (`_detach_stdin`)."""
    _detach_stdin()
    try:
        yield
    finally:
        _attach_stdin()


def _detach_stdin() -> None:
    """Point this process's stdin (descriptor 0) at /dev/null while jobs run on its threads, as it
    is in worker processes: a step that reads it (`input()`, `sys.stdin.read()`, a program it starts
    without giving it an input, as ffmpeg reads keys) would wait for the terminal, holding up the
    build until someone types."""
    global _stdin_users, _stdin_saved
    with _stdin_lock:
        _stdin_users += 1
        if _stdin_users > 1:
            return
        try:
            _stdin_saved = os.dup(0)
        except OSError:  # started with stdin closed
            _stdin_saved = None
        nothing = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nothing, 0)
        os.close(nothing)


def _attach_stdin() -> None:
    """Give the process its stdin back, once the last thread pool that detached it is done."""
    global _stdin_users, _stdin_saved
    with _stdin_lock:
        _stdin_users -= 1
        if _stdin_users > 0:
            return
        if _stdin_saved is None:
            os.close(0)
        else:
            os.dup2(_stdin_saved, 0)
            os.close(_stdin_saved)
            _stdin_saved = None


def _run_batch_in_worker(settings: WorkerSettings, specs: list[JobSpec]) -> list[JobResult]:
    """`run_batch` in a worker process, its last result naming the threads (not daemons) left
    running in the process: the coordinator then ends the worker instead of waiting for them."""
    results = run_batch(settings, specs)
    main = threading.main_thread()
    left = tuple(t.name for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive())
    if left and results:
        results[-1] = dataclasses.replace(results[-1], threads_left=left)
    return results


def _start_worker() -> None:
    """Set up a worker process: it runs one job at a time, in its main thread, so a `python` step
    may have its file descriptors 1 and 2 captured for its job's log (`own_descriptors`); and it
    leaves interrupts to the coordinator."""
    own_descriptors()
    _leave_interrupts_to_the_coordinator()


def _leave_interrupts_to_the_coordinator() -> None:
    """Worker processes leave Ctrl-C to the coordinator, which stops the build in order; they only
    pass it on to the commands they run, in process groups of their own. Terminated (the build
    abandoned, or the pool broken by another worker's death), a worker kills its commands first;
    so it does when the coordinator is gone (killed with SIGKILL, say), instead of waiting for work
    forever.

    A thread of its own does that, woken through the signal wakeup fd or by the end of the pipe
    the coordinator holds: a Python-level handler runs only once the main thread gets control, and
    a SIGTERM arriving just before an idle worker blocks on the pool's call queue would then wait
    forever (the worker, and the pool's teardown joining it, with it)."""
    signal.signal(signal.SIGINT, _forward_to_commands)
    # spawned with SIGINT blocked (`spawned_ignoring_ctrl_c`): the mask would pass to the commands
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    wakeup, notify = os.pipe()
    os.set_blocking(notify, False)
    signal.set_wakeup_fd(notify, warn_on_full_buffer=False)
    threading.Thread(target=_end_with_commands_when_told, args=(wakeup,), daemon=True).start()
    # Last: until now SIGTERM's default action ends the worker; from now on the wakeup fd gets it
    # (which happens only for a signal with a Python-level handler).
    signal.signal(signal.SIGTERM, _noted)


def _forward_to_commands(signum: int, frame: FrameType | None) -> None:
    signal_commands(signum)


def _noted(signum: int, frame: FrameType | None) -> None:
    """SIGTERM's Python-level handler: `_end_with_commands_when_told` acts on it."""


def _end_with_commands_when_told(wakeup: int) -> None:
    """Kill this worker and its commands on SIGTERM, or once the coordinator is gone."""
    import multiprocessing  # a worker process has it already

    coordinator = multiprocessing.parent_process()
    watched = [wakeup] if coordinator is None else [wakeup, coordinator.sentinel]
    while True:
        ready, _, _ = select.select(watched, [], [])
        if wakeup not in ready or signal.SIGTERM in os.read(wakeup, 64):
            break
    signal_commands(signal.SIGKILL)
    os._exit(128 + signal.SIGTERM)
