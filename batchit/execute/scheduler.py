"""Dispatching ready jobs to the pools in batches, honouring per-rule concurrency caps.

Batches are sized from the queue: large when thousands of jobs wait (per-job overhead vanishes), one
job each when few do (no worker idles while another holds a batch). A bounded number of batches is in
flight per pool, so results stream back steadily and `--fail-fast` stops quickly. A batch also holds
no more jobs than its pool's jobs, as measured so far, finish in BATCH_SECONDS: results come back (and
are committed) a batch at a time, so slow jobs travel in small batches and a build killed meanwhile
loses little finished work.

A worker process that dies (a crash in native code, the out-of-memory killer) breaks its pool and
every batch the pool was running. Those batches' jobs become suspects: a fresh pool runs them one at
a time, nothing else beside them, so a worker that dies again names its job for certain. That job
fails (`WorkerCrashed`); the others run as if nothing had happened.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from batchit.execute.boundary import JobResult, JobSpec, crashed
from batchit.execute.pools import Pools

MAX_BATCH = 64
BATCH_SECONDS = 0.5
"""The longest a batch should take, by the mean job time measured so far in its pool."""
FIRST_BATCH = 2
"""The largest batch before any job of its pool has finished (its job time is not known yet)."""


@dataclass
class Scheduler:
    """Queues of ready jobs per resource class, and the batches currently running."""

    pools: Pools
    caps: dict[str, int | None]
    """Per-rule `concurrency:` limits (None: no limit)."""
    batch_size: int | None = None
    """A fixed batch size, or None to size batches from the queue."""
    ahead: int = 1
    """Batches queued per worker beyond the one it runs, so no worker waits for the coordinator
    between batches; none under `--fail-fast`, where a queued batch would start before the
    coordinator has seen a failure."""
    _queues: dict[str, deque[JobSpec]] = field(default_factory=lambda: {"cpu": deque(), "io": deque()})
    _running: dict[Future[list[JobResult]], tuple[str, list[JobSpec], int]] = field(default_factory=dict)
    """Batches in flight: their resource class, jobs, and the process pool generation they went to."""
    _suspects: deque[JobSpec] = field(default_factory=deque)
    """`cpu` jobs of batches whose worker process died, to run alone one after another."""
    _alone: set[str] = field(default_factory=set)
    """Suspects dispatched alone: if their worker dies again, they are the cause."""
    _per_rule: dict[str, int] = field(default_factory=dict)
    _later: list[tuple[float, int, JobSpec, str]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _wakeup: Future[None] = field(default_factory=Future)
    _job_seconds: dict[str, float] = field(default_factory=dict)
    """Per resource class, a running mean of how long its jobs take."""
    stopped: bool = False
    pool_broke: bool = False
    """A worker process died during the build: it may have left a temporary file behind."""

    def wake(self) -> None:
        """Make a waiting `next_results` return now (safe to call from a signal handler)."""
        if not self._wakeup.done():
            self._wakeup.set_result(None)

    def add(self, spec: JobSpec, resources: str) -> None:
        """Queue a ready job."""
        self._queues[resources].append(spec)

    def add_later(self, spec: JobSpec, resources: str, delay: float) -> None:
        """Queue a job after `delay` seconds (a retry's backoff); no worker waits meanwhile."""
        heapq.heappush(self._later, (time.monotonic() + delay, next(self._order), spec, resources))

    def busy(self) -> bool:
        """True while anything is queued, waiting for its retry, or running."""
        waiting = any(self._queues.values()) or bool(self._later) or bool(self._suspects)
        return bool(self._running) or (not self.stopped and waiting)

    def stop(self) -> list[JobSpec]:
        """Dispatch nothing more; return what was still queued or waiting."""
        self.stopped = True
        self._wakeup = Future()
        dropped = [spec for queue in self._queues.values() for spec in queue]
        dropped.extend(item[2] for item in self._later)
        dropped.extend(self._suspects)
        self._suspects.clear()
        for future, (_, batch, _) in list(self._running.items()):
            if future.cancel():  # submitted but not started: it never runs
                del self._running[future]
                dropped.extend(batch)
                for spec in batch:
                    self._per_rule[spec.rule] -= 1
        for queue in self._queues.values():
            queue.clear()
        self._later.clear()
        return dropped

    def next_results(self, timeout: float | None = None) -> Iterator[JobResult]:
        """Dispatch what fits, wait until a batch finishes (or `timeout` passes), yield its results."""
        now = time.monotonic()
        while self._later and self._later[0][0] <= now and not self.stopped:
            _, _, spec, resources = heapq.heappop(self._later)
            self._queues[resources].appendleft(spec)  # its turn came: not behind the whole queue
        self._dispatch()
        if self._later:
            due = max(0.0, self._later[0][0] - now)
            timeout = due if timeout is None else min(timeout, due)
        if not self._running:
            if timeout:
                time.sleep(timeout)  # nothing runs: wait for the next retry to fall due
            return
        waiting: list[Future[Any]] = [*self._running, self._wakeup]
        done, _ = wait(waiting, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            entry = self._running.pop(future, None)
            if entry is None:
                continue  # the wakeup, or a batch already made a suspect when its pool broke
            resources, batch, generation = entry
            for spec in batch:
                self._per_rule[spec.rule] -= 1
            try:
                results = future.result()
            except BrokenProcessPool:
                self._broken(generation)
                if len(batch) == 1 and batch[0].job_id in self._alone:
                    yield crashed(batch[0])
                else:
                    self._suspects.extend(batch)
                continue
            self._measure(resources, results)
            yield from results

    def _dispatch(self) -> None:
        if self.stopped:
            return
        workers = self.pools.workers
        for resources, queue in self._queues.items():
            if resources == "cpu" and (self._suspects or self._suspect_running()):
                if self._suspects:
                    self._dispatch_suspect()
                continue
            limit = workers * (1 + self.ahead)
            while queue and self._in_flight(resources) < limit:
                size = self.batch_size or self._auto_size(resources, len(queue), workers)
                batch = self._take(queue, size)
                if not batch:
                    break
                self._submit(resources, batch)

    def _dispatch_suspect(self) -> None:
        """Run the next suspect alone, once no other `cpu` batch is in flight."""
        if self._in_flight("cpu") == 0:
            spec = self._suspects.popleft()
            self._alone.add(spec.job_id)
            self._submit("cpu", [spec])

    def _suspect_running(self) -> bool:
        """A suspect runs: no other `cpu` batch may join it until it is done, or a death in that
        batch would break the suspect's pool too and be blamed on the suspect."""
        return any(
            resources == "cpu" and len(batch) == 1 and batch[0].job_id in self._alone
            for resources, batch, _ in self._running.values()
        )

    def _auto_size(self, resources: str, queued: int, workers: int) -> int:
        """A batch size for `queued` waiting jobs: a share of the queue, within what the jobs of
        the pool finish in BATCH_SECONDS (FIRST_BATCH while that is not known)."""
        size = max(1, min(MAX_BATCH, queued // (workers * 4)))
        mean = self._job_seconds.get(resources)
        timely = FIRST_BATCH if mean is None else max(1, int(BATCH_SECONDS / max(mean, 1e-6)))
        return min(size, timely)

    def _measure(self, resources: str, results: list[JobResult]) -> None:
        """Fold a finished batch's job times into its pool's running mean."""
        if not results:
            return
        seconds = sum(result.duration for result in results) / len(results)
        known = self._job_seconds.get(resources)
        self._job_seconds[resources] = seconds if known is None else 0.7 * known + 0.3 * seconds

    def _submit(self, resources: str, batch: list[JobSpec]) -> None:
        for spec in batch:
            self._per_rule[spec.rule] = self._per_rule.get(spec.rule, 0) + 1
        generation = self.pools.generation
        try:
            future = self.pools.submit(resources, batch)
        except BrokenProcessPool:  # a worker died; the failure of its batch is not seen here yet
            self._broken(generation)
            generation = self.pools.generation
            future = self.pools.submit(resources, batch)  # a fresh pool, which no death broke
        self._running[future] = (resources, batch, generation)

    def _broken(self, generation: int) -> None:
        """A worker process of pool `generation` died: replace the pool, and make every batch still
        in flight there a suspect now. Their futures cannot be trusted to say so: CPython 3.11 loses
        a batch submitted while the pool was breaking, whose future then never resolves."""
        self.pool_broke = True
        if generation != self.pools.generation:
            return  # that pool was already replaced
        self.pools.renew_processes(generation)
        for future, (resources, batch, sent_to) in list(self._running.items()):
            if resources == "cpu" and sent_to == generation:
                del self._running[future]
                for spec in batch:
                    self._per_rule[spec.rule] -= 1
                self._suspects.extend(batch)

    def _take(self, queue: deque[JobSpec], size: int) -> list[JobSpec]:
        batch: list[JobSpec] = []
        skipped: list[JobSpec] = []
        taken: dict[str, int] = {}
        while queue and len(batch) < size:
            spec = queue.popleft()
            cap = self.caps.get(spec.rule)
            if cap is not None and self._per_rule.get(spec.rule, 0) + taken.get(spec.rule, 0) >= cap:
                skipped.append(spec)
                continue
            taken[spec.rule] = taken.get(spec.rule, 0) + 1
            batch.append(spec)
        queue.extendleft(reversed(skipped))
        return batch

    def _in_flight(self, resources: str) -> int:
        return sum(1 for kind, _, _ in self._running.values() if kind == resources)
