"""A running build: rules are released as the rules they read from finish, and a downstream rule
is re-planned from the bytes its upstream jobs really produced (early cutoff). Results are committed
as they arrive; retries wait on the scheduler's timers, never in a worker.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

from batchit.engine.options import BuildOptions, BuildOutcome, EventSink
from batchit.engine.single import cache_restore_spec, job_spec, twin_failure, twin_restore_spec
from batchit.engine.strangers import refuse_strangers
from batchit.errors import UsageError
from batchit.execute.boundary import NOT_STARTED, JobResult, JobSpec
from batchit.execute.pools import Pools
from batchit.execute.retry import LONGEST_RETRY_AFTER, backoff_delay
from batchit.execute.scheduler import Scheduler
from batchit.execute.signals import GRACE_SECONDS, StopSignals
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
from batchit.plan.jobs import UNKNOWN, Job
from batchit.plan.planner import Planner
from batchit.plan.selection import select_rules
from batchit.record.commits import Committer, quarantines
from batchit.record.events import FLUSH_EVERY
from batchit.record.replays import write_job_log
from batchit.record.runs import evict_cache
from batchit.state.store import StateStore


class RunningBuild:
    """The state of one running build."""

    def __init__(
        self,
        config: Config,
        registry: OperatorRegistry,
        options: BuildOptions,
        store: StateStore,
        emit: EventSink,
        run_id: str,
        planner: Planner,
        predicted: list[Job],
        pools: Pools,
    ) -> None:
        self.config = config
        self.registry = registry
        self.options = options
        self.store = store
        self.emit = emit
        self.run_id = run_id
        self.rules = select_rules(config, options.rules)
        self.planner = planner
        self.predicted = predicted
        cache_dir = config.state_dir / "cache"
        self.pools = pools
        self.scheduler = Scheduler(
            self.pools,
            {r.name: r.concurrency for r in self.rules},
            options.batch_size,
            ahead=0 if options.fail_fast else 1,  # a batch queued ahead starts before a failure is seen
        )
        self.committer = Committer(
            store, self.planner, config, run_id, lambda text: emit({"event": "warning", "message": text})
        )
        self.cache_dir = cache_dir
        self.jobs: dict[str, Job] = {}
        self.by_rule: dict[str, list[Job]] = {}
        self.open_jobs: dict[str, set[str]] = {}
        self.results: dict[str, JobResult] = {}
        self.leaders: dict[str, str] = {}
        self.followers: dict[str, list[Job]] = {}
        self.released: set[str] = set()
        self.specs: dict[str, tuple[JobSpec, str]] = {}
        self.seed = options.seed if options.seed is not None else secrets.randbits(32)
        self.interrupted = False
        self.abandoned = False
        """Jobs still ran when the grace period ended: their threads may write after the build."""
        self.deferred_outputs: set[str] = set()
        """Project-relative outputs of the jobs deferred so far: the jobs reading them are deferred too."""
        self.conflict: UsageError | None = None
        """Why the build stopped releasing rules: an output conflict found only once an upstream
        rule had run (a `{key8}` name). What ran is committed and recorded; the build then raises it."""
        self.signals = StopSignals(
            self._warn,
            self.scheduler.wake,
            self.pools.interrupt,
            self.pools.kill_running,
            options.second_signal_exit,
        )

    def run(self) -> BuildOutcome:
        """Execute every selected rule's stale jobs; commit results as they arrive."""
        predicted = self.predicted
        self.committer.stat_updates(self.planner.stat_updates())
        for rule in self.rules:
            self.by_rule[rule.name] = [j for j in predicted if j.rule == rule.name]
        self.emit(
            {
                "event": "plan",
                "total": sum(j.action != "skip" for j in predicted),
                "jobs": len(predicted),
                "replayed": self.planner.replayed,
                "patched": self.planner.patched,
            }
        )
        with self.signals as stop:
            try:
                self._run_jobs(stop)
            except Exception:  # a write the build needs failed (the state store, a job's log): it
                self.pools.shutdown(cancel=True)  # starts no job, and those running end first
                raise
            if not self.abandoned:
                self.pools.shutdown()
                self._warn_of_threads_left()
            self.interrupted = self.interrupted or stop.requested  # also a Ctrl-C once nothing ran
        self.committer.flush()
        self.committer.forget_failures_of_current(j for jobs in self.by_rule.values() for j in jobs)
        finished = (
            []  # it prunes nothing (outputs still pass between rules that swapped them)
            if self.options.holds_others
            else [r.name for r in self.rules if r.name in self.released and not self.open_jobs[r.name]]
        )
        pruned = (
            []  # a replayed plan is the one the last build left after pruning: nothing to prune
            if self.interrupted or self.planner.replayed or self.conflict
            else self.committer.prune(
                self.by_rule, finished, full=self.options.prunes_as_full_build(self.config)
            )
        )
        evict_cache(self.store, self.cache_dir, self.config.cache_max_size)
        all_jobs = [j for jobs in self.by_rule.values() for j in jobs]
        failures = [(self.jobs[i], r) for i, r in self.results.items() if not r.ok and not r.deferred]
        newly_quarantined = sum(1 for job, result in failures if quarantines(job, result))
        counts = {
            "built": sum(1 for r in self.results.values() if r.ok and not self._restored(r)),
            "restored": sum(1 for r in self.results.values() if r.ok and self._restored(r)),
            "up_to_date": sum(1 for j in all_jobs if j.action == "skip"),
            "failed": len(failures) - newly_quarantined + sum(1 for j in all_jobs if j.action == "blocked"),
            "quarantined": newly_quarantined + sum(1 for j in all_jobs if j.action == "quarantined"),
            "deferred": sum(1 for r in self.results.values() if r.deferred)
            + sum(1 for j in all_jobs if j.action == "deferred"),
            "pruned": len(pruned) + len(self.committer.cleared),
        }
        held = [job for job, result in failures if quarantines(job, result)]
        held += [j for j in all_jobs if j.action == "quarantined"]
        return BuildOutcome(
            all_jobs,
            counts,
            self.run_id,
            failures=failures,
            strict=self.options.strict,
            quarantined_inputs=len({(job.rule, job.inputs[0]) for job in held}),
            unfinished=sum(1 for j in all_jobs if j.action in STARTING and j.job_id not in self.results),
        )

    def _warn(self, text: str) -> None:
        self.emit({"event": "warning", "message": text})

    def _warn_of_threads_left(self) -> None:
        """Say that steps left threads running in worker processes, which were ended without them
        (as batchit itself exits without those left in its own process)."""
        left = sorted(self.pools.threads_left)
        if left:
            names = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
            self._warn(
                f"a step left threads running in worker processes ({names}); "
                "the workers were ended without them"
            )

    def _restored(self, result: JobResult) -> bool:
        return self.jobs[result.job_id].action == "restore"

    def _release_ready(self) -> None:
        """Queue the jobs of every rule whose upstream rules have all finished."""
        for rule in self.rules:
            if rule.name in self.released or any(
                up not in self.released or self.open_jobs[up] for up in rule.from_rules
            ):
                continue
            if self.scheduler.stopped:
                return
            jobs = self.by_rule[rule.name]
            # planned again when an upstream job ran, or when it was planned while its upstream
            # outputs were not known yet (its keys are unknown), even if they turned out unchanged
            if any(job.key == UNKNOWN for job in jobs) or any(
                self._upstream_changed(up) for up in rule.from_rules
            ):
                try:
                    jobs = self._replan(rule.name)
                except UsageError as exc:
                    self.conflict = exc
                    self._drop_queued()  # the jobs in flight finish and are committed
                    return
            self.released.add(rule.name)
            self.open_jobs[rule.name] = set()
            for job in jobs:
                self._dispatch(rule.name, job)

    def _upstream_changed(self, rule: str) -> bool:
        """True when a job of `rule` ran or will: its output may differ from the one planned with."""
        return any(job.action not in ("skip", "held", "quarantined") for job in self.by_rule[rule])

    def _replan(self, name: str) -> list[Job]:
        rule = self.config.rules[name]
        for job in self.by_rule[name]:
            self.planner.claims.claimed.pop(job.output, None)
        upstream = {
            up: [(j.output, self._current_hash(j)) for j in self.by_rule[up] if not self._set_aside(j)]
            for up in rule.from_rules
        }
        if self.options.only_failed:  # their outputs' `{key8}` names are known now
            self.planner.note_rebuilt(
                j for up in rule.from_rules for j in self.by_rule[up] if self._rebuilt(j)
            )
        jobs = self.planner.plan_rule(rule, upstream)
        strangers = self.planner.strangers
        found = {job.output: strangers[job.output] for job in jobs if job.output in strangers}
        refuse_strangers(self.config, found, overwrite=self.options.overwrite)  # at `{key8}` paths
        self.committer.stat_updates(self.planner.stat_updates())
        for job in jobs:
            if job.key == UNKNOWN and job.action in ("run", "restore"):  # a held job stays held
                if self._waits_only_on_deferred(job):
                    job.action = "deferred"
                    job.reasons = ("an upstream job was deferred",)
                    self.deferred_outputs.add(f"{self.config.out}/{job.output}")
                else:
                    job.action = "blocked"
                    job.reasons = ("an upstream job failed",)
        self.by_rule[name] = jobs
        return jobs

    def _waits_only_on_deferred(self, job: Job) -> bool:
        """True when every input of `job` whose hash is not known comes from a deferred job: then
        it is deferred with them (and runs with them next time), else an upstream failure blocks it."""
        unknown = [
            path for path, digest in zip(job.inputs, job.input_hashes, strict=True) if digest == UNKNOWN
        ]
        return bool(unknown) and all(path in self.deferred_outputs for path in unknown)

    def _run_jobs(self, stop: StopSignals) -> None:
        """Dispatch jobs as they become ready and settle their results, until none is left, the
        build is stopped, or running jobs outlive the grace period after a stop (abandoned)."""
        self._release_ready()
        deadline = None
        while self.scheduler.busy():
            if stop.requested and deadline is None:
                self.interrupted = True
                for dropped in self.scheduler.stop():
                    self.open_jobs[dropped.rule].discard(dropped.job_id)
                deadline = time.monotonic() + GRACE_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                self.pools.abandon()  # running jobs did not finish in time: their outputs stay as before
                self.abandoned = True
                return
            self.committer.flush_claims()
            for result in self.scheduler.next_results(timeout=FLUSH_EVERY):
                self._finish(self.jobs[result.job_id], result)
            self.committer.flush_if_due()
            if not stop.requested:
                self._release_ready()

    def _rebuilt(self, job: Job) -> bool:
        """True when this build wrote the job's output."""
        result = self.results.get(job.job_id)
        return result is not None and result.ok

    def _set_aside(self, job: Job) -> bool:
        """A quarantined job's output is no input downstream: the rest go on without it."""
        result = self.results.get(job.job_id)
        return job.action == "quarantined" or (result is not None and quarantines(job, result))

    def _current_hash(self, job: Job) -> str:
        result = self.results.get(job.job_id)
        if result is not None:
            return result.blake3 if result.ok else UNKNOWN
        record = self.planner.records.get(job.output)
        current = record is not None and record.blake3 and job.action in ("skip", "held")
        return record.blake3 if current and record is not None and record.blake3 else UNKNOWN

    def _dispatch(self, rule_name: str, job: Job) -> None:
        if job.action not in ("run", "restore"):
            return
        self.jobs[job.job_id] = job
        self.open_jobs[rule_name].add(job.job_id)
        if job.action == "run" and job.key in self.leaders:
            leader = self.jobs[self.leaders[job.key]]
            done = self.results.get(leader.job_id)
            if done is None:
                self.followers.setdefault(job.key, []).append(job)  # it follows when its leader ends
            elif leader.job_id in self.committer.unsettled:  # its output may mix versions (`_finish`)
                self._submit(job)
            else:  # a downstream rule's job, released after its leader (of an upstream rule) ended
                self._follow(job, leader, done)
            return
        self._submit(job)

    def _submit(self, job: Job) -> None:
        """Send a job to its pool: a `run` job leads the jobs with its key that come after it."""
        spec = job_spec(self.config, self.registry, job, self.by_rule)
        resources = self.config.rules[job.rule].resources
        if job.action == "restore":
            spec = cache_restore_spec(spec, job, self.cache_dir, self.committer.cached_blake3(job.key))
            resources = "io"
        else:
            self.leaders[job.key] = job.job_id
        self.committer.claim(job)
        self.specs[job.job_id] = (spec, resources)
        self.scheduler.add(spec, resources)

    def _finish(self, job: Job, result: JobResult) -> None:
        if not result.ok and (self.signals.requested or result.error_class == NOT_STARTED):
            self._leave_unrun(job)  # a Ctrl-C reaches the job's commands too: no fault of its input
            return
        if not result.ok and job.action == "restore" and result.error_class == "CacheMiss":
            self.committer.drop_cache(job.key)
            job.action = "run"
            self.open_jobs[job.rule].discard(job.job_id)
            self._dispatch(job.rule, job)
            return
        if not result.ok and result.transient and self._retry(job, result):
            return
        self.results[job.job_id] = result
        self.open_jobs[job.rule].discard(job.job_id)
        if result.deferred:  # nothing to commit: its old record stays, so the next build runs it
            self.deferred_outputs.add(f"{self.config.out}/{job.output}")
        changed = [] if result.deferred else self.committer.add(job, result)
        if result.log:
            write_job_log(self.config.state_dir / "runs" / self.run_id, job.output, result.log)
        self.emit(
            {
                "event": "job",
                "rule": job.rule,
                "input": job.inputs[0] if len(job.inputs) == 1 else None,
                "output": f"{self.config.out}/{job.output}",
                "duration": round(result.duration, 6),
                "status": _status_of(job, result),
                "message": None if result.ok else f"{result.error_class}: {result.message}",
            }
        )
        for twin in self.followers.pop(job.key, []) if self.leaders.get(job.key) == job.job_id else []:
            if changed:  # the output may mix an input's versions: no copy of it for the twin
                self._submit(twin)
            else:
                self._follow(twin, job, result)
        if not result.ok and not result.deferred and self.options.fail_fast:
            self._drop_queued()

    def _drop_queued(self) -> None:
        """Run no job that has not started; those running finish."""
        for dropped in self.scheduler.stop():
            self.open_jobs[dropped.rule].discard(dropped.job_id)

    def _follow(self, twin: Job, leader: Job, result: JobResult) -> None:
        """Settle a job with the same action key as one that ended (its leader): a copy of the
        leader's output, or the leader's failure."""
        if result.ok:
            twin.action = "restore"
            self.committer.claim(twin)
            copy = twin_restore_spec(twin, str(self.config.out_dir / leader.output), result)
            self.scheduler.add(copy, "io")
        else:
            self._finish(twin, twin_failure(twin, leader, result))

    def _leave_unrun(self, job: Job) -> None:
        """Record nothing for a job (and its waiting twins) that failed once the build was stopping:
        it stays as it was, and the next build runs it again."""
        for unrun in [job, *self.followers.pop(job.key, [])]:
            self.open_jobs[unrun.rule].discard(unrun.job_id)

    def _retry(self, job: Job, result: JobResult) -> bool:
        """Schedule the next attempt of a transiently failed job, unless attempts are used up."""
        if job.job_id not in self.specs:
            return False  # a twin that followed its leader's last attempt: it ends as the leader did
        spec, resources = self.specs[job.job_id]
        policy = self.config.rules[job.rule].retry
        if spec.attempt >= policy.attempts or self.scheduler.stopped:
            return False
        if result.retry_after is not None and result.retry_after > LONGEST_RETRY_AFTER:
            self.emit(
                {
                    "event": "warning",
                    "message": f"{self.config.out}/{job.output}: the service asks to retry after "
                    f"{result.retry_after:.0f} s, longer than a build waits ({LONGEST_RETRY_AFTER:.0f} s): "
                    "no more attempts now, the next build tries again",
                }
            )
            return False
        delay = backoff_delay(policy, spec.attempt, f"{self.seed}:{job.key}", result.retry_after)
        self.emit(
            {
                "event": "retry",
                "rule": job.rule,
                "output": f"{self.config.out}/{job.output}",
                "attempt": spec.attempt,
                "delay": round(delay, 3),
                "message": f"{result.error_class}: {result.message}",
            }
        )
        following = replace(spec, attempt=spec.attempt + 1)
        self.specs[job.job_id] = (following, resources)
        self.scheduler.add_later(following, resources, delay)
        return True


STARTING = ("run", "restore")
"""The actions of jobs a build starts (the others are decided without running anything)."""


def _status_of(job: Job, result: JobResult) -> str:
    """How a job that ran ended, as its `job` event says (the summary's words: a failure that
    quarantines its input counts as quarantined there, so here too)."""
    if result.ok:
        return "restored" if job.action == "restore" else "built"
    if result.deferred:
        return "deferred"
    return "quarantined" if quarantines(job, result) else "failed"
