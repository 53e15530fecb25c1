"""`batchit replay RUN_ID [--failed]`: re-run a past run's jobs on the current files.

The replay uses the run's seed (so retry jitter repeats), its flags (`--flag` values included, so
a step's `when:` decides as it did), its executor and worker settings, and names every input whose
content differs from what the run recorded, so a failure that no longer reproduces can be told apart
from one whose input was fixed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from batchit.engine import BuildOptions, BuildOutcome, Event, EventSink, run_build
from batchit.errors import UsageError
from batchit.hashing import hash_file
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
from batchit.record.replays import REPLAY_FILE
from batchit.record.runs import find_run

SHOWN_JOBS = 5
"""How many of a run's jobs that the config no longer has are named in the warning about them."""


def replay_run(
    config: Config, registry: OperatorRegistry, run_id: str, *, failed_only: bool, emit: EventSink
) -> BuildOutcome:
    """Re-run run `run_id`'s jobs (or only its failed ones) with its seed and settings."""
    record = load_replay_record(config.state_dir / "runs", run_id)
    run_id = record["run_id"]
    jobs = [j for j in record["jobs"] if not failed_only or j["status"] in ("failed", "quarantined")]
    if not jobs:
        what = "failed jobs" if failed_only else "jobs that ran"
        raise UsageError(f"run {run_id} has no {what} to replay", hint="pick another run: `batchit runs`")
    said: list[Event] = []  # warnings, recorded with the run
    gone_rules = sorted({job["rule"] for job in jobs} - set(config.rules))
    if gone_rules:
        message = f"rules of run {run_id} no longer in the config, whose jobs are not replayed: "
        said.append({"event": "warning", "message": message + ", ".join(gone_rules)})
    inputs = {item["path"]: item["blake3"] for job in jobs for item in job["inputs"]}
    for path, recorded in sorted(inputs.items()):
        now = hash_file(config.root / path) if (config.root / path).is_file() else None
        if now is None:
            said.append({"event": "warning", "message": f"input gone since run {run_id}: {path}"})
        elif now != recorded:
            said.append({"event": "warning", "message": f"input changed since run {run_id}: {path}"})
    config = replace(config, flags=_recorded_flags(config, record.get("flags", {}), run_id, said.append))
    settings = record["settings"]
    options = BuildOptions(
        jobs=settings.get("jobs"),
        executor=settings.get("executor", "local"),
        dask_address=settings.get("dask_address"),
        fail_fast=settings.get("fail_fast", False),
        use_cache=False,
        batch_size=settings.get("batch_size"),
        seed=record["seed"],
        only_jobs=frozenset(job["job"] for job in jobs),
    )
    outcome = run_build(config, registry, options, emit, said_before=said)
    _warn_of_unplanned(config, jobs, outcome, run_id, emit)
    return outcome


def _warn_of_unplanned(
    config: Config, jobs: list[dict[str, Any]], outcome: BuildOutcome, run_id: str, emit: EventSink
) -> None:
    """Name the replayed jobs the build did not plan although their rule and inputs are still there
    (the rule's matrix, output or partitions changed): replaying nothing in silence would look like
    a failure that no longer reproduces. Jobs of a gone rule or input were named before the build."""
    planned = {job.job_id for job in outcome.jobs}
    unplanned = sorted(
        job["job"]
        for job in jobs
        if job["job"] not in planned
        and job["rule"] in config.rules
        and all((config.root / item["path"]).is_file() for item in job["inputs"])
    )
    if unplanned:
        more = f" and {len(unplanned) - SHOWN_JOBS} more" if len(unplanned) > SHOWN_JOBS else ""
        message = f"jobs of run {run_id} that the config no longer has, not replayed: "
        emit({"event": "warning", "message": message + ", ".join(unplanned[:SHOWN_JOBS]) + more})


ANOTHER_RUN = "pick another run (`batchit runs` lists them)"


def load_replay_record(runs_dir: Path, run_id: str) -> dict[str, Any]:
    """Run `run_id`'s replay record (a unique prefix of the id will do); a run that is unknown, kept
    none, or whose record is damaged is a usage error naming it."""
    path = find_run(runs_dir, run_id) / REPLAY_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"run {path.parent.name} kept no replay record ({REPLAY_FILE})",
            hint="its replay.json was removed, or an older batchit recorded it; " + ANOTHER_RUN,
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint=ANOTHER_RUN) from exc
    if not _replayable(record):
        raise UsageError(
            f"{path} is not a replay record (damaged?)", hint="pick another run (`batchit runs`)"
        )
    record["run_id"] = path.parent.name
    return record  # type: ignore[no-any-return]


def _replayable(record: Any) -> bool:
    """Whether `record` has the shape `replay_run` reads."""
    try:
        return (
            isinstance(record["settings"], dict)
            and isinstance(record["seed"], int)
            and all(
                isinstance(job["job"], str)
                and isinstance(job["rule"], str)
                and isinstance(job["status"], str)
                and all(isinstance(i["path"], str) and isinstance(i["blake3"], str) for i in job["inputs"])
                for job in record["jobs"]
            )
        )
    except (KeyError, TypeError):
        return False


def _recorded_flags(config: Config, recorded: dict[str, Any], run_id: str, emit: EventSink) -> dict[str, Any]:
    """The config's flags with the values run `run_id` was built with; a flag the config no longer
    declares cannot be read by any rule, so it is left out with a warning."""
    gone = sorted(name for name in recorded if name not in config.flags)
    if gone:
        emit({"event": "warning", "message": f"flags of run {run_id} no longer declared: {', '.join(gone)}"})
    return {**config.flags, **{name: value for name, value in recorded.items() if name in config.flags}}
