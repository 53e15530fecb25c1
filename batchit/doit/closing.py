"""doit's `_record` sub-task: what a doit run leaves behind, as `batchit build` does at its end: its
check, its action, and the record made as doit exits when no `_record` ran after a job."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from doit.action import Writer
from doit.exceptions import TaskFailed

from batchit.model import RESERVED_OUTPUTS
from batchit.operators.capture import ThreadStream
from batchit.operators.commands import stop_requested
from batchit.plan.jobs import Job
from batchit.plan.remember import remember_plan, settled_plan
from batchit.record.alerts import alert, alert_failure
from batchit.record.commits import Committer
from batchit.record.manifest import RunInfo, new_run_id
from batchit.record.quarantine import rename_run_in_reasons
from batchit.record.recorder import Recorder
from batchit.record.replays import replay_entry, replay_record, write_replay_record
from batchit.record.rundata import JobRow
from batchit.record.runs import IN_PROGRESS, UNFINISHED, audit_unaudited_run, latest_run, swept
from batchit.record.subtasks import Noted, read_job_results, tried_entries, with_job_results
from batchit.state.lock import doit_record_locks
from batchit.state.opening import REFUSALS, as_failure
from batchit.state.rows import Failure, OutputRecord
from batchit.state.store import StateStore

if TYPE_CHECKING:
    from batchit.doit.session import Session

RECORD = "_record"
"""The name of the sub-task that records a doit run."""
RUNS = frozenset({"run", "restore"})
"""The actions of jobs still to run."""
SUMMARY = ("built", "restored", "up_to_date", "failed", "quarantined", "deferred", "pruned")


def record_is_current(session: Session) -> bool:
    """`_record`'s check: no job ran in this doit run, nothing is left to prune, the latest
    manifest matches the state, and its copies are in `out`."""
    if not session.state_db.exists():
        return True  # nothing was ever built: nothing to record
    if (session.config.state_dir / UNFINISHED).exists():
        return False  # a run was killed: `_record` sweeps what it left
    if not all((session.config.out_dir / name).is_file() for name in RESERVED_OUTPUTS):
        return False  # whoever receives `out` needs them to verify it
    store = session.read_only()
    if not session.predict()[2].issuperset(store.output_paths(session.config.out)):
        return False
    outputs, failures = store.load_outputs(), store.load_failures()
    actions = session.predict()[1]
    if (
        any(r.run_id == session.run_id for r in outputs.values())
        or any(f.run_id == session.run_id for f in failures.values())
        or any(actions.get(job_id) == "skip" for job_id in failures)
    ):
        return False  # a job ran, failed, or is up to date again with its failure still on record
    runs = session.config.state_dir / "runs"
    latest = latest_run(runs)
    try:
        manifest = json.loads((runs / latest / "manifest.json").read_bytes()) if latest else None
    except (OSError, ValueError):
        manifest = None
    if manifest is None or manifest.get("config_hash") != session.config.config_hash:
        return False
    recorded = {(o["path"], o["blake3"], o["action_key"]) for o in manifest.get("outputs", [])}
    current = {(r.path, r.blake3, r.action_key or "") for r in outputs.values() if r.blake3}
    recorded_failures = {
        (f["rule"], f["input"], f["class"], f["message"]) for f in manifest.get("failures", [])
    }
    current_failures = {(f.rule, f.input, f.error_class, f.message) for f in failures.values()}
    return recorded == current and recorded_failures == current_failures


def record(session: Session) -> TaskFailed | None:
    """`_record`'s action: the signed manifest and report of this doit run, unless it ran no job
    and, once the locks are taken, another doit run has recorded the state this one would."""
    try:
        _write_record(session, complete=True, unless_current=not _ran_jobs(session))
    except REFUSALS as exc:
        return TaskFailed(f"batchit: {as_failure(exc)}")
    return None


def record_at_exit(session: Session) -> None:
    """At doit's exit, record this run if a sub-task ran a job and `_record` did not run after
    it: doit runs no task whose dependency failed, and `doit site:<output>` selects no
    `_record`. Else a quarantine, a failure and the job logs would name a run that `batchit
    runs` does not know. A run stopped by Ctrl-C is left to the next run to sweep, as before."""
    if os.getpid() != session.pid or stop_requested():
        return  # a forked worker, or a stopped run: its workers may still be going
    if not _ran_jobs(session):
        return  # no job ran, or `_record` recorded the run (and took the mark away)
    with doit_stderr():  # no sub-task runs now: what the record says goes to doit's stderr
        try:
            run_id = _write_record(session, complete=False, unless_current=False)
        except REFUSALS as exc:
            warn(f"this doit run ran jobs but is not recorded: {as_failure(exc)}")
            return
        assert run_id is not None, "it records whether or not the latest record is current"
        report = session.config.state_dir / "runs" / run_id / "report.html"
        print(
            f"batchit: doit ran no {session.basename}:{RECORD}; this run is recorded as {run_id} ({report})",
            file=sys.stderr,
        )


def _ran_jobs(session: Session) -> bool:
    """True when a sub-task of this run ran a job and no record of the run was written since."""
    return (session.config.state_dir / "runs" / session.run_id / IN_PROGRESS).exists()


def _write_record(session: Session, *, complete: bool, unless_current: bool) -> str | None:
    """Write this run's record once no other doit run's sub-task runs; return its run id (None:
    `unless_current` and the latest record is current). `complete`: every job sub-task ran
    (`_record`'s case), so every rule's outputs that no job produces go."""
    with doit_record_locks(session.config.state_dir):
        if unless_current and record_is_current(session):
            return None
        store = StateStore.open(session.state_db, fsync=session.config.durability == "fsync")
        try:
            return write_doit_record(session, store, complete=complete)
        finally:
            store.close()


def write_doit_record(session: Session, store: StateStore, *, complete: bool) -> str:
    """`_record`'s work, under `doit_record_locks`: sweep what a killed run left, prune, forget
    failures of jobs now up to date, then write the run's record and leave the settled plan; return
    the run id it is recorded under. Not `complete` (a sub-task failed, or doit ran only some), the
    rules with a job still to run keep their outputs, as those of a build stopped at a failure do."""
    unfinished = session.config.state_dir / UNFINISHED
    if unfinished.exists():  # no sub-task runs, of this doit run or another (`doit_record_locks`)
        for message in swept(session.config, store):
            warn(message)
        audit_unaudited_run(session.config.state_dir, store, fsync=session.config.durability == "fsync")
    run_id = _record_id(session, store)
    planner, jobs = session.plan(store)
    store.adopt_config(session.config.file)  # the plan refused the state of another config
    by_rule: dict[str, list[Job]] = {name: [] for name in session.config.rules}
    for job in jobs:
        by_rule[job.rule].append(job)
    committer = Committer(store, planner, session.config, run_id, warn)
    finished = [
        rule for rule, planned in by_rule.items() if complete or not any(j.action in RUNS for j in planned)
    ]
    pruned = committer.prune(by_rule, finished, full=complete)
    committer.forget_failures_of_current(jobs)
    outputs, failures = store.load_outputs(), store.load_failures()
    rows = [_row(run_id, job, outputs.get(job.output), failures.get(job.job_id)) for job in jobs]
    run_dir = session.config.state_dir / "runs" / run_id
    noted = read_job_results(run_dir)
    rows = with_job_results(rows, noted)
    _write_replay(session, run_id, jobs, noted)
    failed_here = {job_id for job_id, failure in failures.items() if failure.run_id == run_id}
    statuses = {row.output: _manifest_status(row, failed_here) for row in rows}
    counts = dict.fromkeys(SUMMARY, 0)
    counts["pruned"] = len(pruned)
    for row in rows:
        if row.status in counts:
            counts[row.status] += 1
    troubled = counts["failed"] or counts["quarantined"]
    info = RunInfo(
        run_id,
        session.started,
        datetime.now(UTC),
        session.config.config_hash,
        "failed" if troubled else "ok",
        counts,
    )
    renamed = {"loaded_as": session.run_id} if run_id != session.run_id else {}
    record = Recorder(session.config, run_id, _say).write(store, info, statuses, rows, (), audit=renamed)
    failed = [
        alert_failure(
            row.rule, job.inputs, row.output, row.error_class, row.message, row.status == "quarantined"
        )
        for job, row in zip(jobs, rows, strict=True)
        if row.job_id in failed_here
    ]  # as a build's alert: the jobs it ran that failed, not those held by an earlier quarantine
    alert(session.config, run_id, info.status, counts, failed, str(record.manifest), warn)
    (session.config.state_dir / "runs" / run_id / IN_PROGRESS).unlink(missing_ok=True)
    unfinished.unlink(missing_ok=True)
    remember_plan(planner, store.generation(), lambda: settled_plan(planner, jobs))
    return run_id


DOIT_SETTINGS: dict[str, Any] = {
    "jobs": None,
    "executor": "local",
    "dask_address": None,
    "sample": None,
    "fail_fast": False,
    "batch_size": None,
    "rules": [],
}
"""A doit run's settings in its replay record: doit decides its workers (`-n`, `-P`) and whether
it stops at a failure (`--continue`), so `batchit replay` runs its jobs with batchit's defaults."""


def _write_replay(session: Session, run_id: str, jobs: list[Job], noted: Noted) -> None:
    """The run's replay record, as a build keeps one: the jobs its sub-tasks ran, with the input
    hashes each was planned with, and those held back by a quarantined input, with the run's seed."""
    held = [
        replay_entry(job, "quarantined")
        for job in jobs
        if job.action == "quarantined" and job.job_id not in noted
    ]
    record = replay_record(
        run_id, session.seed, session.config.flags, dict(DOIT_SETTINGS), [*tried_entries(noted), *held]
    )
    write_replay_record(session.config.state_dir / "runs" / run_id, record)


def _record_id(session: Session, store: StateStore) -> str:
    """The id to record this doit run under: the one minted when doit loaded the tasks, unless a
    run recorded since sorts after it (a `batchit build` between two sub-tasks, another doit run);
    then a new one. So run ids sort in the order runs were recorded, which retention, LATEST and
    the report's trend rely on. What the sub-tasks wrote under the first id moves to the new one:
    their logs, and the output and failure rows and quarantine reasons they committed, so each
    names a run that `batchit runs` knows (the log's `quarantine` entries keep the first id, which
    the run's own entry names as `loaded_as`)."""
    runs = session.config.state_dir / "runs"
    newest = max((p.name for p in runs.iterdir() if p.is_dir()), default="") if runs.is_dir() else ""
    if newest <= session.run_id:
        return session.run_id
    run_id = new_run_id()
    if (runs / session.run_id).is_dir():
        os.replace(runs / session.run_id, runs / run_id)
    renamed = [f for f in store.load_failures().values() if f.run_id == session.run_id]
    with store.transaction():
        store.rename_run(session.run_id, run_id)
    rename_run_in_reasons(session.config.root, renamed, session.run_id, run_id)
    return run_id


def _row(run_id: str, job: Job, record: OutputRecord | None, failure: Failure | None) -> JobRow:
    """The report's row for a job: what doit run `run_id` did to it, read back from the state store."""
    message = ""
    if failure is not None and failure.run_id == run_id:
        status = "quarantined" if failure.quarantine else "failed"
        message = failure.message
    elif record is not None and record.run_id == run_id and record.job_id == job.job_id:
        status = record.status
    else:  # held by an input a run before this one quarantined: counted as `batchit build` counts it
        status = {"skip": "up_to_date", "quarantined": "quarantined"}.get(job.action, "not_run")
    error = failure.error_class if message and failure else ""
    return JobRow(
        job.job_id,
        job.rule,
        job.output,
        job_label(job),
        status,
        tuple(job.reasons),
        error_class=error,
        message=message,
    )


def _manifest_status(row: JobRow, failed_here: set[str]) -> str:
    """What the run did to a job's output, for the manifest, as a build says: a job not run left
    it `stale`, one that failed here (and quarantined its input) `failed`, one held by an input
    an earlier run quarantined `unchanged`."""
    if row.status == "not_run":
        return "stale"
    if row.status == "quarantined":
        return "failed" if row.job_id in failed_here else "unchanged"
    return row.status


def job_label(job: Job) -> str:
    """A job as doit lists it: its input, or how many inputs an aggregate reads."""
    return job.inputs[0] if len(job.inputs) == 1 else f"{len(job.inputs)} inputs"


@contextlib.contextmanager
def doit_stderr() -> Iterator[None]:
    """`sys.stderr` as doit's own stream while the block runs: at doit's exit after `-P thread`,
    it can still be the Writer of one sub-task's action (doit's threads swap it in and put back
    what they found, in any order), which at verbosity 0 only captures what is written. A python
    step may have put batchit's per-thread stand-in over such a Writer (`ThreadStream`), which
    doit's threads then put back in its place: the Writer is looked for behind it too."""
    stream = sys.stderr.real if isinstance(sys.stderr, ThreadStream) else sys.stderr
    if isinstance(stream, Writer) and sys.__stderr__ is not None:
        with contextlib.redirect_stderr(sys.__stderr__):
            yield
    else:
        yield


def warn(text: str) -> None:
    """A warning on stderr, where doit leaves its sub-tasks' own output."""
    print(f"batchit: warning: {text}", file=sys.stderr)


def _say(event: dict[str, Any]) -> None:
    """Show the events a recorded run emits that a person should see (warnings, a new key)."""
    if event.get("event") == "warning":
        warn(str(event["message"]))
    elif event.get("event") == "key_created":
        print(f"batchit: created signing key {event['key_id']} ({event['path']})", file=sys.stderr)
