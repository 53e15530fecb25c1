"""One build, start to finish: plan, check, lock, execute rule by rule, commit, prune, record.

The build plans first, read-only, so a plan-time error (two jobs writing one output, a stranger file
at an output path) exits before anything is written. Rules are then released as the rules they read
from finish; a downstream rule is re-planned from the bytes its upstream jobs really produced.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchit.errors import BuildInterrupted, OutputConflictError
from batchit.execute.pools import ExecutorKind, Pools
from batchit.execute.retry import backoff_delay
from batchit.execute.scheduler import Scheduler
from batchit.execute.signals import GRACE_SECONDS, StopSignals
from batchit.execute.worker import JobResult, JobSpec, WorkerSettings, run_job
from batchit.fsutil import sweep_temp_files
from batchit.model import Config
from batchit.operators.base import UpstreamSource
from batchit.operators.registry import OperatorRegistry
from batchit.plan import Planner, PlanOptions, select_rules
from batchit.plan.jobs import UNKNOWN, Job
from batchit.record.alerts import send_alert, should_alert
from batchit.record.commits import FLUSH_EVERY, Committer, quarantines
from batchit.record.manifest import RunInfo, new_run_id
from batchit.record.recorder import Recorder, RunRecord
from batchit.record.replays import write_job_log, write_replay_record
from batchit.record.rundata import job_row
from batchit.record.runs import evict_cache
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
    only_failed: bool = False
    strict: bool = False
    seed: int | None = None
    """Seeds the retry jitter (and sampling): a replay passes the recorded one. None: a fresh seed."""
    only_jobs: frozenset[str] | None = None
    """Run exactly these jobs (a replay) and hold every other."""


@dataclass
class BuildOutcome:
    """What a build did: the jobs with their decisions, the counts, and where its record is."""

    jobs: list[Job]
    counts: dict[str, int]
    run_id: str | None = None
    manifest: Path | None = None
    failures: list[tuple[Job, JobResult]] = field(default_factory=list)
    seconds: float = 0.0
    key_created: bool = False
    """A signing key was minted during this run (an error with --strict)."""
    record: RunRecord | None = None
    """Where the run's record (manifest, report) went and which key signed it."""
    strict: bool = False
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        """130 when interrupted; 1 when a job failed or an input stays quarantined (with --strict also
        deferred jobs and a key minted during the run); else 0 (SPEC section 4)."""
        counts = self.counts
        if self.interrupted:
            return BuildInterrupted.exit_code
        if counts.get("failed") or counts.get("quarantined"):
            return 1
        if self.strict and (counts.get("deferred") or self.key_created):
            return 1
        return 0


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
    run_id = new_run_id(started)
    recorder = Recorder(config, run_id, emit)  # checks the signing key before any work
    emit = recorder.events  # every event also goes to the run's events.jsonl
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
            build = _Build(config, registry, options, store, emit, run_id, planner, predicted)
            outcome = build.run()
            build.write_replay()
            outcome.manifest = build.record(started, outcome, recorder)
        finally:
            store.close()
        in_progress.unlink()
    outcome.seconds = time.perf_counter() - clock
    outcome.interrupted = build.interrupted
    _alert(config, outcome, emit)
    return outcome


def _alert(config: Config, outcome: BuildOutcome, emit: EventSink) -> None:
    """POST the run's summary to `alerts.webhook` when asked; a failed delivery is only a warning."""
    troubled = outcome.exit_code != 0
    if config.alerts is None or not should_alert(config.alerts, troubled):
        return
    payload = {
        "run_id": outcome.run_id,
        "status": "interrupted" if outcome.interrupted else ("failed" if troubled else "ok"),
        "summary": outcome.counts,
        "failures": [
            {"rule": job.rule, "output": job.output, "class": result.error_class, "message": result.message}
            for job, result in outcome.failures[:100]
        ],
        "manifest": str(outcome.manifest) if outcome.manifest else None,
        "report": str(outcome.manifest.with_name("report.html")) if outcome.manifest else None,
    }
    problem = send_alert(config.alerts.webhook, outcome.run_id or "", payload)
    if problem is not None:
        emit({"event": "warning", "message": f"alert to {config.alerts.webhook} not delivered: {problem}"})


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
    planner = Planner.open(
        config,
        registry,
        store,
        PlanOptions(options.force, options.use_cache, options.only_failed, options.only_jobs),
    )
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
        self.specs: dict[str, tuple[JobSpec, str]] = {}
        self.seed = options.seed if options.seed is not None else secrets.randbits(32)
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
        with StopSignals(self._warn, self.scheduler.wake) as stop:
            self._release_ready()
            deadline = None
            abandoned = False
            while self.scheduler.busy():
                if stop.requested and deadline is None:
                    self.interrupted = True
                    for dropped in self.scheduler.stop():
                        self.open_jobs[dropped.rule].discard(dropped.job_id)
                    deadline = time.monotonic() + GRACE_SECONDS
                if deadline is not None and time.monotonic() > deadline:
                    self.pools.abandon()  # running jobs did not finish in time: their outputs stay as before
                    abandoned = True
                    break
                self.committer.flush_claims()
                for result in self.scheduler.next_results(timeout=FLUSH_EVERY):
                    self._finish(self.jobs[result.job_id], result)
                self.committer.flush_if_due()
                if not stop.requested:
                    self._release_ready()
            if not abandoned:
                self.pools.shutdown()
        self.committer.flush()
        finished = [r.name for r in self.rules if r.name in self.released and not self.open_jobs[r.name]]
        pruned = (
            []
            if self.interrupted
            else self.committer.prune(self.by_rule, finished, full=not self.options.rules)
        )
        evict_cache(self.store, self.cache_dir, self.config.cache_max_size)
        all_jobs = [j for jobs in self.by_rule.values() for j in jobs]
        failures = [(self.jobs[i], r) for i, r in self.results.items() if not r.ok]
        newly_quarantined = sum(1 for job, result in failures if quarantines(job, result))
        counts = {
            "built": sum(1 for r in self.results.values() if r.ok and not self._restored(r)),
            "restored": sum(1 for r in self.results.values() if r.ok and self._restored(r)),
            "up_to_date": sum(1 for j in all_jobs if j.action == "skip"),
            "failed": len(failures) - newly_quarantined + sum(1 for j in all_jobs if j.action == "blocked"),
            "quarantined": newly_quarantined + sum(1 for j in all_jobs if j.action == "quarantined"),
            "deferred": 0,
            "pruned": len(pruned),
        }
        return BuildOutcome(all_jobs, counts, self.run_id, failures=failures, strict=self.options.strict)

    def _warn(self, text: str) -> None:
        self.emit({"event": "warning", "message": text})

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
        return any(job.action not in ("skip", "held", "quarantined") for job in self.by_rule[rule])

    def _replan(self, name: str) -> list[Job]:
        rule = self.config.rules[name]
        for job in self.by_rule[name]:
            self.planner.claimed.pop(job.output, None)
        upstream = {
            up: [(j.output, self._current_hash(j)) for j in self.by_rule[up] if not self._set_aside(j)]
            for up in rule.from_rules
        }
        jobs = self.planner.plan_rule(rule, upstream)
        self.committer.stat_updates(self.planner.stat_updates())
        for job in jobs:
            if job.key == UNKNOWN:
                job.action = "blocked"
                job.reasons = ["an upstream job failed"]
        self.by_rule[name] = jobs
        return jobs

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
            self.followers.setdefault(job.key, []).append(job)
            return
        spec = job_spec(self.config, self.registry, job, self.by_rule)
        resources = self.config.rules[rule_name].resources
        if job.action == "restore":
            spec = self._restore_spec(spec, str(self.cache_dir / job.key[:2] / job.key))
            resources = "io"
        else:
            self.leaders[job.key] = job.job_id
        self.committer.claim(job)
        self.specs[job.job_id] = (spec, resources)
        self.scheduler.add(spec, resources)

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
        if not result.ok and result.transient and self._retry(job, result):
            return
        self.results[job.job_id] = result
        self.open_jobs[job.rule].discard(job.job_id)
        self.committer.add(job, result)
        if result.log:
            write_job_log(self.config.state_dir / "runs" / self.run_id, job.output, result.log)
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

    def write_replay(self) -> None:
        """Record the jobs this run tried, with their input hashes, seed and settings."""
        options = self.options
        jobs = []
        for job_id, result in sorted(self.results.items()):
            job = self.jobs[job_id]
            status = "built" if result.ok else ("quarantined" if quarantines(job, result) else "failed")
            inputs = [{"path": p, "blake3": h} for p, h in zip(job.inputs, job.input_hashes, strict=True)]
            jobs.append(
                {"job": job_id, "rule": job.rule, "output": job.output, "inputs": inputs, "status": status}
            )
        settings = {
            "jobs": options.jobs,
            "executor": options.executor,
            "fail_fast": options.fail_fast,
            "batch_size": options.batch_size,
            "rules": list(options.rules),
        }
        record = {
            "run_id": self.run_id,
            "seed": self.seed,
            "flags": self.config.flags,
            "settings": settings,
            "jobs": jobs,
        }
        write_replay_record(self.config.state_dir / "runs" / self.run_id, record)

    def _retry(self, job: Job, result: JobResult) -> bool:
        """Schedule the next attempt of a transiently failed job, unless attempts are used up."""
        spec, resources = self.specs[job.job_id]
        policy = self.config.rules[job.rule].retry
        if spec.attempt >= policy.attempts or self.scheduler.stopped:
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

    def record(self, started: datetime, outcome: BuildOutcome, recorder: Recorder) -> Path:
        """Write the run's record: signed manifest, provenance, report, audit entry, copies in `out`."""
        troubled = outcome.counts["failed"] or outcome.counts["quarantined"]
        status = "interrupted" if self.interrupted else ("failed" if troubled else "ok")
        statuses = {j.output: _status(j, self.results.get(j.job_id)) for j in outcome.jobs}
        info = RunInfo(
            self.run_id, started, datetime.now(UTC), self.config.config_hash, status, outcome.counts
        )
        rows = [job_row(j, self.results.get(j.job_id)) for j in outcome.jobs]
        outcome.record = recorder.write(self.store, info, statuses, rows, self.options.rules)
        outcome.key_created = outcome.record.key_created
        return outcome.record.manifest


def _status(job: Job, result: JobResult | None) -> str:
    if job.action == "skip":
        return "up_to_date"
    if job.action in ("held", "quarantined"):
        return "unchanged"
    if result is None:
        return "stale"
    if not result.ok:
        return "failed"
    return "restored" if job.action == "restore" else "built"


def upstream_sources(
    config: Config, job: Job, by_rule: Mapping[str, list[Job]]
) -> dict[str, UpstreamSource] | None:
    """For an aggregate over other rules' outputs: the upstream job behind each input (`ctx.sources`).

    `cdn.manifest` and `template.render` read it to name each output's source file and matrix values.
    """
    upstream = config.rules[job.rule].from_rules
    if not job.aggregate or not upstream:
        return None
    wanted = set(job.inputs)
    found = {
        f"{config.out}/{up.output}": UpstreamSource(up.rule, up.inputs, dict(up.matrix))
        for name in upstream
        for up in by_rule.get(name, [])
        if f"{config.out}/{up.output}" in wanted
    }
    return found or None


def job_spec(
    config: Config, registry: OperatorRegistry, job: Job, by_rule: Mapping[str, list[Job]]
) -> JobSpec:
    """The worker's view of a planned job: its steps, contracts and the upstream jobs it reads.

    A pipeline of only cheap steps is not copied into the cache (re-running it costs no more).
    """
    rule = config.rules[job.rule]
    cheap = all(registry.get(step.operator).cheap for step in job.recipe.steps)
    return JobSpec(
        job.job_id,
        job.rule,
        job.inputs,
        job.aggregate,
        job.output,
        job.recipe.steps,
        job.key,
        rule.expect,
        rule.validate,
        cache=not cheap,
        sources=upstream_sources(config, job, by_rule),
    )


def run_planned_job(
    config: Config,
    registry: OperatorRegistry,
    store: StateStore,
    planner: Planner,
    job: Job,
    run_id: str,
    by_rule: Mapping[str, list[Job]],
    warn: Callable[[str], None],
) -> JobResult:
    """Run one planned `run` or `restore` job in this process and commit its result (a doit sub-task).

    The same steps as a build takes for each job: claim the output before anything is renamed into
    it, restore from the cache (a missing entry runs the job instead), retry transient failures with
    the rule's backoff, commit the result, keep the job's log. The caller holds the project lock
    (shared: doit runs several of these at once) and planned `job` with `planner` on `store`.
    """
    cache_dir = config.state_dir / "cache"
    settings = WorkerSettings(str(config.root), config.out, str(cache_dir), config.durability == "fsync")
    committer = Committer(store, planner, config, run_id, warn)
    committer.stat_updates(planner.stat_updates())
    spec = job_spec(config, registry, job, by_rule)
    if job.action == "restore":
        entry = str(cache_dir / job.key[:2] / job.key)
        spec = replace(spec, steps=(), restore_from=entry, restore_blake3=committer.cached_blake3(job.key))
    committer.claim(job)
    committer.flush_claims()
    result = run_job(settings, spec)
    if not result.ok and job.action == "restore" and result.error_class == "CacheMiss":
        committer.drop_cache(job.key)
        job.action = "run"
        spec = job_spec(config, registry, job, by_rule)
        result = run_job(settings, spec)
    policy = config.rules[job.rule].retry
    while not result.ok and result.transient and spec.attempt < policy.attempts:
        time.sleep(backoff_delay(policy, spec.attempt, f"{run_id}:{job.key}", result.retry_after))
        spec = replace(spec, attempt=spec.attempt + 1)
        result = run_job(settings, spec)
    committer.add(job, result)
    committer.flush()
    if result.log:
        write_job_log(config.state_dir / "runs" / run_id, job.output, result.log)
    return result
