"""Closing a build: the run's record (signed manifest, provenance, report), its replay record,
and the settled plan the next build replays (batchit.plan.remember)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from batchit.engine.options import BuildOutcome
from batchit.errors import PermanentError
from batchit.execute.boundary import JobResult
from batchit.fsutil import stat_identity
from batchit.hashing import hash_file
from batchit.plan.decide import QUARANTINED
from batchit.plan.jobs import Job
from batchit.plan.remember import Settled, settled_unrun
from batchit.record.commits import quarantines
from batchit.record.manifest import RunInfo
from batchit.record.recorder import Recorder
from batchit.record.replays import replay_entry, replay_record, tried_status, write_replay_record
from batchit.record.rundata import job_row
from batchit.state.rows import ListedOutput

if TYPE_CHECKING:
    from batchit.engine.running import RunningBuild


def write_replay(build: RunningBuild) -> None:
    """Record the jobs this run tried, and those it held back for a quarantined input (its
    failures too, which `replay --failed` runs again), with their input hashes, seed and settings."""
    tried = [
        replay_entry(job := build.jobs[job_id], tried_status(job, r)) for job_id, r in build.results.items()
    ]
    held = [
        replay_entry(j, "quarantined")
        for planned in build.by_rule.values()
        for j in planned
        if j.action == "quarantined"
    ]
    options = build.options
    settings = {
        "jobs": options.jobs,
        "executor": options.executor,
        "dask_address": options.dask_address,
        "sample": list(options.sample) if options.sample else None,
        "fail_fast": options.fail_fast,
        "batch_size": options.batch_size,
        "rules": list(options.rules),
    }
    record = replay_record(build.run_id, build.seed, build.config.flags, settings, [*tried, *held])
    write_replay_record(build.config.state_dir / "runs" / build.run_id, record)


def settled_outputs(build: RunningBuild, jobs: list[Job]) -> Settled | None:
    """Each job as the next plan will see it, with its output's stat and BLAKE3, when every job
    is now up to date (skipped, or run or restored and recorded) or held back by a quarantined
    input (its output's stat only); None when the next plan cannot be told (a failure, an input
    that changed while its job ran, or a key that moved with discovered dependencies and names
    the output through `{key8}`)."""
    settled: Settled = []
    for job in jobs:
        result = build.results.get(job.job_id)
        if result is not None and quarantines(job, result):
            job = replace(job, action="quarantined", reasons=QUARANTINED)
            result = None
        if result is None:
            item = settled_unrun(build.planner, job)
            if item is None:
                return None
            settled.append(item)
            continue
        if (
            job.action not in ("run", "restore")
            or not result.ok
            or result.output_stat is None
            or job.job_id in build.committer.unsettled
        ):
            return None
        recorded = build.committer.rekeyed.get(job.job_id)
        if recorded is not None:
            key, discovered = recorded
            if key != job.key and "{key8}" in build.config.rules[job.rule].output:
                return None  # the next plan names the output after the new key
            job = replace(job, key=key, discovered=discovered, action="skip", reasons=())
        settled.append((job, result.output_stat, result.blake3))
    return settled


def record_run(build: RunningBuild, started: datetime, outcome: BuildOutcome, recorder: Recorder) -> Path:
    """Write the run's record: signed manifest, provenance, report, audit entry, copies in `out`."""
    troubled = outcome.counts["failed"] or outcome.counts["quarantined"] or build.conflict
    troubled = troubled or (build.options.strict and outcome.counts["deferred"])  # exit 1 too
    status = "interrupted" if build.interrupted else ("failed" if troubled else "ok")
    _forget_vanished_held_outputs(build, outcome.jobs)
    statuses = {j.output: _status(j, build.results.get(j.job_id)) for j in outcome.jobs}
    blocked = [j.job_id for j in outcome.jobs if j.action == "blocked"]  # the outputs they keep, also
    statuses.update(dict.fromkeys(build.store.outputs_of_jobs(blocked), "blocked"))  # by an old {key8}
    info = RunInfo(build.run_id, started, datetime.now(UTC), build.config.config_hash, status, outcome.counts)
    rows = [job_row(j, build.results.get(j.job_id)) for j in outcome.jobs]
    outcome.record = recorder.write(
        build.store,
        info,
        statuses,
        rows,
        build.options.rules,
        lambda outputs: _changed_behind_its_record(build, outputs, statuses),
    )
    outcome.key_created = outcome.record.key_created
    return outcome.record.manifest


def _forget_vanished_held_outputs(build: RunningBuild, jobs: list[Job]) -> None:
    """A held job's output that someone removed cannot be built again while its job is held: the
    record lets it go, so the manifest lists only outputs that are there. Outputs that were never
    written (an input quarantined on its first build) go without a word."""
    gone = [
        j
        for j in jobs
        if j.action in ("held", "quarantined") and not (build.config.out_dir / j.output).exists()
    ]
    if not gone:
        return
    records = build.planner.records
    written = [j for j in gone if (record := records.get(j.output)) is not None and record.blake3]
    with build.store.transaction():
        build.store.forget_outputs([j.output for j in gone])
    for job in written:
        when = (
            "once its input is released or changes"
            if job.action == "quarantined"
            else "by a build that runs it"
        )
        message = f"{build.config.out}/{job.output} is gone; its job is held, so it is built again {when}"
        build.emit({"event": "warning", "message": message})


def _changed_behind_its_record(
    build: RunningBuild, outputs: list[ListedOutput], statuses: dict[str, str]
) -> set[str]:
    """The outputs this run neither wrote nor found up to date (a rule it did not build, a job it
    held or that an upstream failure blocked) whose file is gone or holds other bytes than batchit
    recorded: the manifest leaves them out, since it vouches for what it lists, and says why. Their
    records stay, so the next build that runs their jobs builds them again."""
    left = [output for output in outputs if statuses.get(output.path) not in PRODUCED]
    out, store = build.config.out, build.store
    owned = store.load_owned(out) if len(left) > BULK_FROM else None
    changed = set()
    for output in left:
        now = stat_identity(f"{build.config.out_dir}/{output.path}")
        recorded = owned.get(output.path) if owned is not None else store.owned_one(out, output.path)
        if now is not None and recorded is not None and now == recorded.stat:
            continue
        if now is not None and output.blake3 is not None:
            with contextlib.suppress(OSError, PermanentError):
                if hash_file(build.config.out_dir / output.path) == output.blake3:
                    continue
        changed.add(output.path)
        what = "is gone" if now is None else "was changed since batchit wrote it"
        build.emit(
            {
                "event": "warning",
                "message": f"{out}/{output.path} {what}; this run's manifest leaves it out, and a build "
                "that runs its job writes it again",
            }
        )
    return changed


BULK_FROM = 1000
"""Outputs to check from which their records are read at once rather than one by one."""

PRODUCED = frozenset({"built", "restored", "up_to_date"})
"""The manifest statuses of outputs this run wrote or found up to date."""


def _status(job: Job, result: JobResult | None) -> str:
    if job.action == "skip":
        return "up_to_date"
    if job.action in ("held", "quarantined"):
        return "unchanged"
    if job.action in ("deferred", "blocked"):  # not run: an upstream job was deferred, or failed
        return job.action
    if result is None:
        return "stale"
    if not result.ok:
        return "deferred" if result.deferred else "failed"
    return "restored" if job.action == "restore" else "built"
