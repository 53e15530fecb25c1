"""One build, start to finish: plan, check, lock, execute rule by rule, commit, prune, record.

The build plans first, read-only, so a plan-time error (two jobs writing one output, a stranger file
at an output path) exits before anything is written; the plan is reused under the lock unless another
run wrote the state store in between.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from batchit.config.validation import record_checked
from batchit.engine.closing import record_run, settled_outputs, write_replay
from batchit.engine.options import BuildOptions, BuildOutcome, Event, EventSink
from batchit.engine.running import RunningBuild
from batchit.engine.strangers import mark_refused, refuse_strangers
from batchit.engine.workers import build_pools
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
from batchit.plan.jobs import Job
from batchit.plan.planner import Planner
from batchit.plan.pruning import once_written, prunable
from batchit.plan.remember import remember_plan
from batchit.plan.selection import select_rules
from batchit.plan.snapshot import forget_snapshot
from batchit.record.alerts import alert, alert_failure
from batchit.record.commits import quarantines
from batchit.record.manifest import new_run_id
from batchit.record.recorder import Recorder
from batchit.record.runs import UNFINISHED, UNFINISHED_RUN, audit_unaudited_run, mark_unfinished, swept
from batchit.state.lock import ProjectLock
from batchit.state.store import StateStore


def plan_build(
    config: Config,
    registry: OperatorRegistry,
    options: BuildOptions,
    *,
    with_prunes: bool = False,
    emit: EventSink | None = None,
) -> BuildOutcome:
    """What a build would do and why, changing nothing (`plan`, `build --dry-run`): each job's
    action and, `with_prunes`, the outputs it would prune if every selected rule finished (that
    reads every output's record, which `explain` and `clean` do without). A job whose output path
    holds something the build would stop for is `refuse` (a plan never stops for it). `emit` gets
    the warnings the build would give about its plan (a rule whose globs match nothing)."""
    store = StateStore.open_readonly(config.state_dir / "state.db")
    pruned: list[str] = []
    try:
        planner, jobs = _plan(config, registry, options, store)
        mark_refused(jobs, planner.strangers, overwrite=options.overwrite)
        if emit is not None:
            _warn_of_empty_rules(config, options, jobs, emit)
        # a replayed plan is the one a build left after pruning, with nothing changed since
        if with_prunes and not planner.replayed and not options.holds_others:
            by_rule: dict[str, list[Job]] = {rule.name: [] for rule in select_rules(config, options.rules)}
            for job in jobs:
                by_rule[job.rule].append(job)
            owned = planner.owned_rules()
            full = options.prunes_as_full_build(config)
            doomed = prunable(owned, config.rules, store, by_rule, by_rule, full=full, foretold=True)
            pruned = once_written(doomed, planner.records)  # as the build counts what it pruned
    finally:
        if store:
            store.close()
    counts = {"run": 0, "restore": 0, "skip": 0, "refuse": 0}
    for job in jobs:
        counts[job.action] = counts.get(job.action, 0) + 1
    return BuildOutcome(jobs, counts, pruned=sorted(pruned))


def run_build(
    config: Config,
    registry: OperatorRegistry,
    options: BuildOptions,
    emit: EventSink,
    *,
    said_before: Sequence[Event] = (),
) -> BuildOutcome:
    """Build the selected rules under the project lock and write the run's manifest.

    Planning happens first and read-only, so every plan-time error surfaces before anything is
    written; the plan is reused under the lock unless another run changed the state in between.
    `said_before` are events of the caller's about this run (a replay's warnings), said first and
    kept in the run's event log and report like the build's own.
    """
    started = datetime.now(UTC)
    clock = time.perf_counter()
    run_id = new_run_id(started)
    recorder = Recorder(config, run_id, emit)  # checks the signing key before any work
    emit = recorder.events  # every event also goes to the run's events.jsonl
    for event in said_before:
        emit(event)
    pools = build_pools(config, registry, options)
    cpu_rules = {r.name for r in select_rules(config, options.rules) if r.resources == "cpu"}
    if cpu_rules and not (config.state_dir / "state.db").exists():
        pools.warm_up()  # a first build: every job will run
    planner, predicted = _plan_read_only(config, registry, options)
    refuse_strangers(config, planner.strangers, overwrite=options.overwrite)
    _warn_of_empty_rules(config, options, predicted, emit)
    cpu_jobs = sum(1 for job in predicted if job.action == "run" and job.rule in cpu_rules)
    pools.expect(cpu_jobs)
    if cpu_jobs:
        pools.warm_up()
    with ProjectLock(config.state_dir / "lock"):
        unfinished = config.state_dir / UNFINISHED
        killed = unfinished.exists()  # the last run was killed: what it was writing is litter
        mark_unfinished(config.state_dir)
        if config.checked is not None:  # the config passed its schema checks: the next load may skip them
            record_checked(config.state_dir, config.checked)
        store = StateStore.open(config.state_dir / "state.db", fsync=config.durability == "fsync")
        try:
            if killed:
                _sweep(config, store, emit, UNFINISHED_RUN)
                _audit_killed_run(config, store, emit)
            store.adopt_config(config.file)  # planning refused the state of another config
            _adopt_out(config, store, emit)
            if store.generation() != planner.generation:
                planner, predicted = _plan(config, registry, options, store)
                refuse_strangers(config, planner.strangers, overwrite=options.overwrite)
            planner.view.store = store
            build = RunningBuild(config, registry, options, store, emit, run_id, planner, predicted, pools)
            with build.signals:  # a stop after the last job still lets the run commit and be recorded
                outcome = build.run()
                if (build.scheduler.pool_broke or pools.worker_lost) and not build.abandoned:
                    _sweep(config, store, emit, "a worker that died")
                build.interrupted = build.interrupted or build.signals.requested
                write_replay(build)
                outcome.manifest = record_run(build, started, outcome, recorder)
                _remember_plan(config, planner, build, outcome)
        finally:
            store.close()
        if not build.abandoned:  # else threads left running may still write: the next build sweeps
            unfinished.unlink()
    outcome.seconds = time.perf_counter() - clock
    outcome.interrupted = build.interrupted or build.signals.requested  # also while it was recorded
    outcome.conflict = build.conflict
    _alert(config, outcome, emit)
    if outcome.conflict is not None:  # found once an upstream rule had run; what ran is recorded
        raise outcome.conflict
    return outcome


def _warn_of_empty_rules(config: Config, options: BuildOptions, jobs: list[Job], emit: EventSink) -> None:
    """Say which selected rules' input globs match no file: a typo there (`scr/**`) would otherwise
    go unnoticed while the build prunes everything the rule wrote before."""
    if options.sample is not None:
        return  # a sample may leave a rule without inputs
    planned = {job.rule for job in jobs}
    for rule in select_rules(config, options.rules):
        if rule.globs and not rule.from_rules and rule.name not in planned:
            globs = ", ".join(rule.globs)
            message = f"rule '{rule.name}': its inputs ({globs}) match no file, so it has no job"
            emit({"event": "warning", "message": message + " (and a build prunes what it wrote before)"})


def _sweep(config: Config, store: StateStore, emit: EventSink, culprit: str) -> None:
    """Remove the litter `culprit` left (`sweep_litter`), saying what went."""
    for message in swept(config, store, culprit):
        emit({"event": "warning", "message": message})


def _audit_killed_run(config: Config, store: StateStore, emit: EventSink) -> None:
    """Append the audit entry of a run the killed build recorded but never audited, saying so."""
    run_id = audit_unaudited_run(config.state_dir, store, fsync=config.durability == "fsync")
    if run_id is not None:
        message = (
            f"added run {run_id} to the audit log: the build that recorded it stopped before it could "
            "(it was killed, or failed to write its record)"
        )
        emit({"event": "warning", "message": message})


def _adopt_out(config: Config, store: StateStore, emit: EventSink) -> None:
    """Make `out` the output root the state store's rows belong to. When `out` changed, the rows
    name files in the old one: they are forgotten and those files left there, never deleted (that
    folder may be the user's again), and the build owns nothing in the new `out` until it writes."""
    moved = store.adopt_out(config.out)
    if moved is not None:
        old, count = moved
        message = (
            f"`out` changed from {old} to {config.out}: batchit no longer tracks the {count} output(s) "
            f"it wrote under {old} and left them there; remove {old} yourself if nothing needs it"
        )
        emit({"event": "warning", "message": message})


def _remember_plan(config: Config, planner: Planner, build: RunningBuild, outcome: BuildOutcome) -> None:
    """Leave a snapshot of the plan the next build will make, when it is known: every job is now up
    to date with the key it was recorded with, or held back by its quarantined input
    (batchit.plan.remember). Otherwise remove the old one, which can no longer match. Call it after
    the build's last write to the state store."""
    if build.interrupted or build.conflict or outcome.counts["failed"]:
        forget_snapshot(config.state_dir)
    else:
        remember_plan(planner, build.store.generation(), lambda: settled_outputs(build, outcome.jobs))


def _alert(config: Config, outcome: BuildOutcome, emit: EventSink) -> None:
    """POST the run's summary to `alerts.webhook` when asked; a failed delivery is only a warning."""
    troubled = outcome.exit_code != 0
    failures = [
        alert_failure(
            job.rule, job.inputs, job.output, result.error_class, result.message, quarantines(job, result)
        )
        for job, result in outcome.failures[:100]
    ]
    alert(
        config,
        outcome.run_id or "",
        "interrupted" if outcome.interrupted else ("failed" if troubled else "ok"),
        outcome.counts,
        failures,
        str(outcome.manifest) if outcome.manifest else None,
        lambda message: emit({"event": "warning", "message": message}),
    )


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
        options.plan_options(config),
    )
    return planner, planner.predict(select_rules(config, options.rules))
