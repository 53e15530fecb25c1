"""One build, start to finish: plan, check, lock, execute rule by rule, commit, prune, record.

The build plans first, read-only, so a plan-time error (two jobs writing one output, a stranger file
at an output path) exits before anything is written. Rules are then released as the rules they read
from finish; a downstream rule is re-planned from the bytes its upstream jobs really produced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchit.errors import BuildInterrupted, OutputConflictError
from batchit.execute.pools import ExecutorKind, Pools
from batchit.execute.scheduler import Scheduler
from batchit.execute.worker import JobResult, JobSpec, WorkerSettings
from batchit.fsutil import sweep_temp_files
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
from batchit.plan import Planner, PlanOptions, select_rules
from batchit.plan.jobs import UNKNOWN, Job
from batchit.record.commits import FLUSH_EVERY, Committer
from batchit.record.manifest import RunInfo, apply_retention, new_run_id, render_manifest, write_run
from batchit.state.lock import ProjectLock
from batchit.state.store import StateStore

Event = dict[str, Any]
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class BuildOptions:
    """What `batchit build` was asked to do."""

    rules: tuple[str, ...] = ()
    jobs: int | None = None
    executor: ExecutorKind = "local"
    fail_fast: bool = False
    dry_run: bool = False
    force: bool = False
    use_cache: bool = True
    overwrite: bool = False
    batch_size: int | None = None


@dataclass
class BuildOutcome:
    """What a build did: the jobs with their decisions, the counts, and where its record is."""

    jobs: list[Job]
    counts: dict[str, int]
    run_id: str | None = None
    manifest: Path | None = None
    failures: list[tuple[Job, JobResult]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, else 1 (SPEC section 4)."""
        return 1 if self.counts.get("failed") else 0


def plan_build(config: Config, registry: OperatorRegistry, options: BuildOptions) -> BuildOutcome:
    """What a build would do and why, changing nothing (`plan`, `build --dry-run`)."""
    _, jobs = _plan_read_only(config, registry, options)
    counts = {"run": 0, "restore": 0, "skip": 0}
    for job in jobs:
        counts[job.action] = counts.get(job.action, 0) + 1
    return BuildOutcome(jobs, counts)


def run_build(
    config: Config, registry: OperatorRegistry, options: BuildOptions, emit: EventSink
) -> BuildOutcome:
    """Build the selected rules under the project lock and write the run's manifest.

    Planning happens first and read-only, so every plan-time error surfaces before anything is
    written; the plan is reused under the lock unless another run changed the state in between.
    """
    started = datetime.now(UTC)
    clock = time.perf_counter()
    planner, predicted = _plan_read_only(config, registry, options)
    with ProjectLock(config.state_dir / "lock"):
        in_progress = config.state_dir / "build-in-progress"
        if in_progress.exists():  # the last build was killed: its temporary files are litter
            for leftover in sweep_temp_files(config.out_dir) + sweep_temp_files(config.state_dir / "cache"):
                emit({"event": "warning", "message": f"removed {leftover.name} left by a killed build"})
        in_progress.touch()
        store = StateStore.open(config.state_dir / "state.db", fsync=config.durability == "fsync")
        try:
            if store.generation() != planner.generation:
                planner, predicted = _plan(config, registry, options, store)
            planner.view.store = store
            build = _Build(config, registry, options, store, emit, new_run_id(started), planner, predicted)
            outcome = build.run()
            outcome.manifest = build.record(started, outcome)
        finally:
            store.close()
        in_progress.unlink()
    outcome.seconds = time.perf_counter() - clock
    if build.interrupted:
        raise BuildInterrupted(f"build interrupted; finished jobs are committed (run {build.run_id})")
    return outcome


def _plan_read_only(
    config: Config, registry: OperatorRegistry, options: BuildOptions
) -> tuple[Planner, list[Job]]:
    store = StateStore.open_readonly(config.state_dir / "state.db")
    try:
        return _plan(config, registry, options, store)
    finally:
        if store:
            store.close()


def _plan(
    config: Config, registry: OperatorRegistry, options: BuildOptions, store: StateStore | None
) -> tuple[Planner, list[Job]]:
    planner = Planner.open(config, registry, store, PlanOptions(options.force, options.use_cache))
    jobs = planner.predict(select_rules(config, options.rules))
    _refuse_strangers(config, planner, options)
    return planner, jobs


def _refuse_strangers(config: Config, planner: Planner, options: BuildOptions) -> None:
    strangers = planner.decider.strangers
    if strangers and not options.overwrite:
        listed = "\n  ".join(f"{config.out}/{p}" for p in strangers[:20])
        more = f"\n  ... and {len(strangers) - 20} more" if len(strangers) > 20 else ""
        raise OutputConflictError(
            f"{len(strangers)} output path(s) hold files batchit did not write:\n  {listed}{more}",
            hint="move them away, or run `batchit build --overwrite` to replace them",
        )


class _Build:
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
        workers = options.jobs or config.jobs or os.cpu_count() or 1
        cache_dir = config.state_dir / "cache"
        settings = WorkerSettings(
            str(config.root),
            config.out,
            str(cache_dir) if options.use_cache else None,
            config.durability == "fsync",
        )
        self.pools = Pools(settings, workers, options.executor)
        self.scheduler = Scheduler(
            self.pools, {r.name: r.concurrency for r in self.rules}, options.batch_size
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
        self.interrupted = False

    def run(self) -> BuildOutcome:
        """Execute every selected rule's stale jobs; commit results as they arrive."""
        predicted = self.predicted
        self.committer.stat_updates(self.planner.stat_updates())
        for rule in self.rules:
            self.by_rule[rule.name] = [j for j in predicted if j.rule == rule.name]
        self.emit(
            {"event": "plan", "total": sum(j.action != "skip" for j in predicted), "jobs": len(predicted)}
        )
        try:
            self._release_ready()
            while self.scheduler.busy():
                self.committer.flush_claims()
                for result in self.scheduler.next_results(timeout=FLUSH_EVERY):
                    self._finish(self.jobs[result.job_id], result)
                self.committer.flush_if_due()
                self._release_ready()
        except KeyboardInterrupt:
            self.interrupted = True
            self.scheduler.stop()
            self.pools.shutdown(cancel=True)
        finally:
            self.pools.shutdown()
        self.committer.flush()
        finished = [r.name for r in self.rules if r.name in self.released and not self.open_jobs[r.name]]
        pruned = (
            []
            if self.interrupted
            else self.committer.prune(self.by_rule, finished, full=not self.options.rules)
        )
        self.committer.evict_cache(self.cache_dir, self.config.cache_max_size)
        all_jobs = [j for jobs in self.by_rule.values() for j in jobs]
        failures = [(self.jobs[i], r) for i, r in self.results.items() if not r.ok]
        counts = {
            "built": sum(1 for r in self.results.values() if r.ok and not self._restored(r)),
            "restored": sum(1 for r in self.results.values() if r.ok and self._restored(r)),
            "up_to_date": sum(1 for j in all_jobs if j.action == "skip"),
            "failed": len(failures) + sum(1 for j in all_jobs if j.action == "blocked"),
            "quarantined": 0,
            "deferred": 0,
            "pruned": len(pruned),
        }
        return BuildOutcome(all_jobs, counts, self.run_id, failures=failures)

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
            if any(self._upstream_changed(up) for up in rule.from_rules):
                jobs = self._replan(rule.name)
            self.released.add(rule.name)
            self.open_jobs[rule.name] = set()
            for job in jobs:
                self._dispatch(rule.name, job)

    def _upstream_changed(self, rule: str) -> bool:
        return any(job.action != "skip" for job in self.by_rule[rule])

    def _replan(self, name: str) -> list[Job]:
        rule = self.config.rules[name]
        for job in self.by_rule[name]:
            self.planner.claimed.pop(job.output, None)
        upstream = {
            up: [(j.output, self._current_hash(j)) for j in self.by_rule[up]] for up in rule.from_rules
        }
        jobs = self.planner.plan_rule(rule, upstream)
        self.committer.stat_updates(self.planner.stat_updates())
        for job in jobs:
            if job.key == UNKNOWN:
                job.action = "blocked"
                job.reasons = ["an upstream job failed"]
        self.by_rule[name] = jobs
        return jobs

    def _current_hash(self, job: Job) -> str:
        result = self.results.get(job.job_id)
        if result is not None:
            return result.blake3 if result.ok else UNKNOWN
        record = self.planner.records.get(job.output)
        return record.blake3 if record is not None and record.blake3 and job.action == "skip" else UNKNOWN

    def _dispatch(self, rule_name: str, job: Job) -> None:
        if job.action in ("skip", "blocked"):
            return
        self.jobs[job.job_id] = job
        self.open_jobs[rule_name].add(job.job_id)
        if job.action == "run" and job.key in self.leaders:
            self.followers.setdefault(job.key, []).append(job)
            return
        rule = self.config.rules[rule_name]
        spec = JobSpec(
            job.job_id,
            job.rule,
            job.inputs,
            job.aggregate,
            job.output,
            job.recipe.steps,
            job.key,
            rule.expect,
            rule.validate,
            rule.retry,
            cache=not self._cheap(job),
        )
        resources = rule.resources
        if job.action == "restore":
            spec = self._restore_spec(spec, str(self.cache_dir / job.key[:2] / job.key))
            resources = "io"
        else:
            self.leaders[job.key] = job.job_id
        self.committer.claim(job)
        self.scheduler.add(spec, resources)

    def _cheap(self, job: Job) -> bool:
        return all(self.registry.get(step.operator).cheap for step in job.recipe.steps)

    def _restore_spec(self, spec: JobSpec, source: str) -> JobSpec:
        return replace(
            spec, steps=(), restore_from=source, restore_blake3=self.committer.cached_blake3(spec.key)
        )

    def _finish(self, job: Job, result: JobResult) -> None:
        if not result.ok and job.action == "restore" and result.error_class == "CacheMiss":
            self.committer.drop_cache(job.key)
            job.action = "run"
            self.open_jobs[job.rule].discard(job.job_id)
            self._dispatch(job.rule, job)
            return
        self.results[job.job_id] = result
        self.open_jobs[job.rule].discard(job.job_id)
        self.committer.add(job, result)
        self.emit(
            {
                "event": "job",
                "rule": job.rule,
                "input": job.inputs[0] if len(job.inputs) == 1 else None,
                "output": f"{self.config.out}/{job.output}",
                "duration": round(result.duration, 6),
                "status": ("restored" if job.action == "restore" else "built") if result.ok else "failed",
                "message": None if result.ok else f"{result.error_class}: {result.message}",
            }
        )
        for twin in self.followers.pop(job.key, []) if self.leaders.get(job.key) == job.job_id else []:
            if result.ok:
                twin.action = "restore"
                self.committer.claim(twin)
                spec = JobSpec(twin.job_id, twin.rule, twin.inputs, twin.aggregate, twin.output, (), twin.key)
                source = str(self.config.out_dir / job.output)
                self.scheduler.add(replace(spec, restore_from=source, restore_blake3=result.blake3), "io")
            else:
                self._finish(twin, result)
        if not result.ok and self.options.fail_fast:
            for dropped in self.scheduler.stop():
                self.open_jobs[dropped.rule].discard(dropped.job_id)

    def record(self, started: datetime, outcome: BuildOutcome) -> Path:
        """Write the run's manifest and its copy in `out`, and apply run retention."""
        status = "interrupted" if self.interrupted else ("failed" if outcome.counts["failed"] else "ok")
        statuses = {j.output: _status(j, self.results.get(j.job_id)) for j in outcome.jobs}
        info = RunInfo(
            self.run_id, started, datetime.now(UTC), self.config.config_hash, status, outcome.counts
        )
        outputs = [r for r in self.store.load_outputs().values() if r.blake3]
        outputs.sort(key=lambda r: r.path)
        failures = list(self.store.load_failures().values())
        manifest = render_manifest(info, outputs, statuses, failures)
        runs_dir = self.config.state_dir / "runs"
        path = write_run(
            runs_dir, self.config.out_dir, self.run_id, manifest, fsync=self.config.durability == "fsync"
        )
        apply_retention(runs_dir, self.config.runs_keep)
        return path


def _status(job: Job, result: JobResult | None) -> str:
    if job.action == "skip":
        return "up_to_date"
    if result is None:
        return "stale"
    if not result.ok:
        return "failed"
    return "restored" if job.action == "restore" else "built"
