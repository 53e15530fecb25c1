"""What a run's report shows, computed once when the run is recorded and kept as `run.json`.

The engine hands over one `JobRow` per job; `run_document` folds them into counts, time per rule and
per stage, throughput, the slowest jobs, failures, rebuild reasons and deferred jobs. Long lists are
capped at `ROW_CAP` rows with the number left out, so `run.json` and the report stay small for a
100,000-job run, and `batchit report` can re-render a run without its jobs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from batchit import __version__
from batchit.execute.boundary import JobResult
from batchit.plan.jobs import Job
from batchit.record.manifest import RunInfo, iso_time
from batchit.record.replays import log_name
from batchit.state.rows import Failure

RUN_FILE = "run.json"
RUN_FORMAT = "batchit-run"
ROW_CAP = 200
"""Rows kept per table: a 100,000-job report stays well under 5 MB."""
SLOWEST = 10
STAGES = ("ingest", "validate", "transform", "enrich", "export")
FAILED = frozenset({"failed", "quarantined", "blocked"})
REBUILT = frozenset({"built", "restored", "failed", "quarantined", "deferred"})
"""Statuses of jobs that were run this time, whose rebuild reasons the report lists."""


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job of a run as the report sees it."""

    job_id: str
    rule: str
    output: str
    """Path relative to `out`."""
    inputs: str
    """The input path, or "N inputs" for an aggregate."""
    status: str
    """built, restored, up_to_date, failed, blocked, deferred, quarantined, held or not_run."""
    reasons: tuple[str, ...] = ()
    seconds: float = 0.0
    steps: tuple[tuple[str, float], ...] = ()
    error_class: str = ""
    message: str = ""
    attempts: int = 1
    size: int = 0
    logged: bool = False
    """The job's `python`/`shell` output was kept under the run's `logs/`."""


def job_row(job: Job, result: JobResult | None) -> JobRow:
    """The report's row for a planned job and its result (None when it did not run)."""
    label = job.inputs[0] if len(job.inputs) == 1 else f"{len(job.inputs)} inputs"
    if result is None:
        status = {"skip": "up_to_date", "run": "not_run", "restore": "not_run"}.get(job.action, job.action)
        return JobRow(job.job_id, job.rule, job.output, label, status, tuple(job.reasons))
    status = ("restored" if job.action == "restore" else "built") if result.ok else "failed"
    if result.deferred:
        status = "deferred"
    return JobRow(
        job.job_id,
        job.rule,
        job.output,
        label,
        status,
        tuple(job.reasons),
        result.duration,
        result.step_seconds,
        result.error_class,
        result.message,
        result.attempts,
        result.size,
        bool(result.log),
    )


def stage_of(operator: str) -> str:
    """The pipeline stage an operator's time counts towards (the output write is `export`)."""
    if operator.endswith(".load") or operator == "file.copy":
        return "ingest"
    if operator in ("data.validate", "validate", "contracts"):
        return "validate"
    if operator == "http.enrich":
        return "enrich"
    if operator in ("write", "image.save", "data.dump"):
        return "export"
    return "transform"


class Capped:
    """A table that keeps its first `ROW_CAP` rows and counts the rest."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.left_out = 0

    def add(self, row: dict[str, Any]) -> None:
        """Keep `row` while there is room, else count it as left out."""
        if len(self.rows) < ROW_CAP:
            self.rows.append(row)
        else:
            self.left_out += 1

    def as_json(self, name: str) -> dict[str, Any]:
        """`{name: rows, name_left_out: count}`."""
        return {name: self.rows, f"{name}_left_out": self.left_out}


def run_document(
    info: RunInfo,
    rows: Iterable[JobRow],
    key: tuple[str, bool],
    out: str,
    failures: Iterable[Failure],
    warnings: Iterable[str] = (),
    retries: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The JSON document the report renders (`run.json`); `key` is (key id, minted during the run)."""
    recorded = {f.job_id: f for f in failures}
    quarantine = {job_id: f.quarantine for job_id, f in recorded.items()}
    per_rule: dict[str, dict[str, Any]] = {}
    stages = dict.fromkeys(STAGES, 0.0)
    ran: list[JobRow] = []
    tables = {name: Capped() for name in ("failures", "rebuilt", "deferred", "warnings", "retries")}
    written = 0
    for row in rows:
        status = "quarantined" if row.status == "failed" and quarantine.get(row.job_id) else row.status
        rule = per_rule.setdefault(row.rule, {"rule": row.rule, "jobs": 0, "seconds": 0.0, "counts": {}})
        rule["jobs"] += 1
        rule["seconds"] += row.seconds
        rule["counts"][status] = rule["counts"].get(status, 0) + 1
        if row.seconds:
            ran.append(row)
            for operator, seconds in row.steps or (("write", row.seconds),):
                stages[stage_of(operator)] += seconds
        if status in ("built", "restored"):
            written += row.size
        if status in FAILED:
            known = recorded.get(row.job_id)  # a held quarantined job's is from the run that failed it
            failure = {
                "class": row.error_class or (known.error_class if known else status),
                "message": row.message or (known.message if known else "; ".join(row.reasons)),
            }
            tables["failures"].add({**_brief(row), **failure, "quarantine": quarantine.get(row.job_id)})
        elif status == "deferred":
            tables["deferred"].add({**_brief(row), "message": row.message})
        if status in REBUILT:
            tables["rebuilt"].add({**_brief(row), "status": status, "reasons": list(row.reasons)})
    for warning in warnings:
        tables["warnings"].add({"message": warning})
    for retry in retries:
        tables["retries"].add(dict(retry))
    seconds = max((info.finished - info.started).total_seconds(), 1e-9)
    jobs_done = sum(1 for r in ran if r.status in ("built", "restored"))
    slowest = heapq.nlargest(SLOWEST, ran, key=lambda r: r.seconds)
    document = {
        "format": RUN_FORMAT,
        "format_version": 1,
        "run_id": info.run_id,
        "status": info.status,
        "started": iso_time(info.started),
        "finished": iso_time(info.finished),
        "seconds": round(seconds, 3),
        "batchit_version": __version__,
        "out": out,
        "key_id": key[0],
        "key_created": key[1],
        "audit_head": info.audit_head,
        "summary": info.summary,
        "rules": [{**r, "seconds": round(r["seconds"], 6)} for r in per_rule.values()],
        "stages": {name: round(value, 6) for name, value in stages.items()},
        "throughput": {
            "jobs": jobs_done,
            "jobs_per_second": round(jobs_done / seconds, 3),
            "bytes": written,
            "bytes_per_second": round(written / seconds, 1),
        },
        "slowest": [{**_brief(r), "seconds": round(r.seconds, 6), "status": r.status} for r in slowest],
    }
    for name, table in tables.items():
        document.update(table.as_json(name))
    return document


def _brief(row: JobRow) -> dict[str, Any]:
    return {
        "rule": row.rule,
        "output": row.output,
        "inputs": row.inputs,
        "log": f"logs/{log_name(row.output)}" if row.logged else None,
    }
