"""What `batchit replay` needs from a past run: its jobs with their input hashes, seed and settings.

Written as `replay.json` in the run's directory, by a build and by a doit run's `_record`; job logs
of `python` and `shell` steps go to its `logs/` folder, one file per job, named after the output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchit.execute.boundary import JobResult
from batchit.fsutil import atomic_write_text, companion_name
from batchit.plan.jobs import Job
from batchit.record.commits import quarantines

REPLAY_FILE = "replay.json"
LOGS = "logs"


def log_name(output: str) -> str:
    """The log file of a job under the run's `logs/`: its output path relative to `out`, folders
    and all, plus `.log` (one per output: no two outputs' logs can share a name; a name too long to
    take `.log` is cut short and ends in a hash of itself)."""
    return companion_name(output, ".log")


def write_job_log(run_dir: Path, output: str, text: str) -> Path:
    """Keep what a job printed and logged."""
    path = run_dir / LOGS / log_name(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def replay_entry(job: Job, status: str) -> dict[str, Any]:
    """One job of a replay record: its id, rule, output and inputs with the hashes it was planned
    with, and `status`, what the run did to it (built, failed, quarantined, deferred)."""
    return {
        "job": job.job_id,
        "rule": job.rule,
        "output": job.output,
        "inputs": [{"path": p, "blake3": h} for p, h in zip(job.inputs, job.input_hashes, strict=True)],
        "status": status,
    }


def tried_status(job: Job, result: JobResult) -> str:
    """What a run did to a job it ran, as its replay record says."""
    if result.ok:
        return "built"
    if result.deferred:
        return "deferred"
    return "quarantined" if quarantines(job, result) else "failed"


def replay_record(
    run_id: str, seed: int, flags: Mapping[str, Any], settings: dict[str, Any], entries: list[dict[str, Any]]
) -> dict[str, Any]:
    """The replay record of a run: its seed, flags and settings, and its jobs (`replay_entry`), in
    job order."""
    jobs = sorted(entries, key=lambda entry: str(entry["job"]))
    return {"run_id": run_id, "seed": seed, "flags": dict(flags), "settings": settings, "jobs": jobs}


def write_replay_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Store the run's jobs, seed and settings (a JSON document; see `batchit.replay`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / REPLAY_FILE, json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
