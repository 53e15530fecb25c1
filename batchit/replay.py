"""`batchit replay RUN_ID [--failed]`: re-run a past run's jobs on the current files.

The replay uses the run's seed (so retry jitter repeats), its flags (`--flag` values included, so
a step's `when:` decides as it did), its executor and worker settings, and names every input whose
content differs from what the run recorded, so a failure that no longer reproduces can be told apart
from one whose input was fixed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from batchit.engine import BuildOptions, BuildOutcome, EventSink, run_build
from batchit.errors import UsageError
from batchit.hashing import hash_file
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
from batchit.record.replays import load_replay_record


def replay_run(
    config: Config, registry: OperatorRegistry, run_id: str, *, failed_only: bool, emit: EventSink
) -> BuildOutcome:
    """Re-run run `run_id`'s jobs (or only its failed ones) with its seed and settings."""
    record = load_replay_record(config.state_dir / "runs", run_id)
    jobs = [j for j in record["jobs"] if not failed_only or j["status"] in ("failed", "quarantined")]
    if not jobs:
        what = "failed jobs" if failed_only else "jobs that ran"
        raise UsageError(f"run {run_id} has no {what} to replay", hint="pick another run: `batchit runs`")
    for job in jobs:
        for item in job["inputs"]:
            path = config.root / item["path"]
            now = hash_file(path) if path.is_file() else "missing"
            if now != item["blake3"]:
                emit({"event": "warning", "message": f"input changed since run {run_id}: {item['path']}"})
    config = replace(config, flags=_recorded_flags(config, record.get("flags", {}), run_id, emit))
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
    return run_build(config, registry, options, emit)


def _recorded_flags(config: Config, recorded: dict[str, Any], run_id: str, emit: EventSink) -> dict[str, Any]:
    """The config's flags with the values run `run_id` was built with; a flag the config no longer
    declares cannot be read by any rule, so it is left out with a warning."""
    gone = sorted(name for name in recorded if name not in config.flags)
    if gone:
        emit({"event": "warning", "message": f"flags of run {run_id} no longer declared: {', '.join(gone)}"})
    return {**config.flags, **{name: value for name, value in recorded.items() if name in config.flags}}
