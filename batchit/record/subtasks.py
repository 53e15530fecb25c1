"""What each doit sub-task's job did, kept for the report that `_record` writes at the end of the run.

A build holds every job's result in memory when it records its run. Under doit each job is its own
sub-task, perhaps in another process, and `_record` comes last: so each sub-task appends one line
per job to its run's `jobs.jsonl` (a single `write` in append mode, so lines from parallel
processes never interleave), and `_record` completes the report's rows from them: why each job
ran, its time per step, its attempts and the bytes it wrote (SPEC section 5). Each line also holds
the job's entry of the run's replay record, with the input hashes the sub-task planned it with.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

from batchit.execute.boundary import JobResult
from batchit.plan.jobs import Job
from batchit.record.replays import replay_entry, tried_status
from batchit.record.rundata import JobRow

JOB_RESULTS = "jobs.jsonl"
RAN = frozenset({"built", "restored", "failed", "quarantined"})
"""Row statuses of jobs a sub-task of this run ran (the others did not run, or ran in another run)."""


class _Noted(TypedDict):
    """One line of `jobs.jsonl`."""

    job: str
    reasons: list[str]
    seconds: float
    steps: list[list[Any]]
    attempts: int
    size: int
    logged: bool
    replay: dict[str, Any]
    """The job's entry of the run's replay record (`replay_entry`)."""


Noted = dict[str, _Noted]
"""What the sub-tasks of a run noted, by job id (the last line of each job)."""


def append_job_result(run_dir: Path, job: Job, result: JobResult) -> None:
    """Note what a sub-task's job did, for its run's report."""
    line: _Noted = {
        "job": job.job_id,
        "reasons": list(job.reasons),
        "seconds": result.duration,
        "steps": [list(step) for step in result.step_seconds],
        "attempts": result.attempts,
        "size": result.size,
        "logged": bool(result.log),
        "replay": replay_entry(job, tried_status(job, result)),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / JOB_RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def read_job_results(run_dir: Path) -> Noted:
    """What the sub-tasks of the run in `run_dir` noted (nothing when none ran a job)."""
    try:
        lines = (run_dir / JOB_RESULTS).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    noted: Noted = {}
    for line in lines:
        try:
            item: _Noted = json.loads(line)
        except ValueError:
            continue  # the last line of a sub-task killed as it wrote
        noted[item["job"]] = item
    return noted


def with_job_results(rows: list[JobRow], noted: Noted) -> list[JobRow]:
    """`rows`, each job a sub-task of this run ran completed with what it `noted` (its last line)."""
    completed = []
    for row in rows:
        found = noted.get(row.job_id)
        if found is None or row.status not in RAN:
            completed.append(row)
            continue
        steps = tuple((str(operator), float(seconds)) for operator, seconds in found["steps"])
        completed.append(
            replace(
                row,
                reasons=tuple(found["reasons"]),
                seconds=found["seconds"],
                steps=steps,
                attempts=found["attempts"],
                size=found["size"],
                logged=found["logged"],
            )
        )
    return completed


def tried_entries(noted: Noted) -> list[dict[str, Any]]:
    """The replay record's entries of the jobs the run's sub-tasks ran (lines noted by an older
    batchit hold none)."""
    return [item["replay"] for item in noted.values() if isinstance(item.get("replay"), dict)]
