"""`batchit explain PATH`: why one output is or is not up to date, from the same data `plan` uses."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchit.engine import BuildOptions, plan_build
from batchit.errors import UsageError
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
from batchit.plan.jobs import Job
from batchit.plan.pruning import keeps_last_output
from batchit.state.rows import Failure
from batchit.state.store import StateStore


@dataclass
class Explanation:
    """The verdict on one output and the evidence for it."""

    output: str
    rule: str
    job_id: str
    action: str
    reasons: list[str]
    key: str
    recorded_key: str | None
    inputs: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The explanation as a JSON-ready mapping."""
        return {
            "output": self.output,
            "rule": self.rule,
            "job": self.job_id,
            "up_to_date": self.action == "skip",
            "action": self.action,
            "reasons": self.reasons,
            "action_key": self.key,
            "recorded_key": self.recorded_key,
            "inputs": self.inputs,
        }


def explain(config: Config, registry: OperatorRegistry, path: str) -> Explanation:
    """Explain output `path`: relative to `out`, or to the project root (`_build/a.html`,
    `./_build/a.html`), or absolute. An output that no current job produces but batchit recorded
    (its input is gone, or its `{key8}` name moved) is explained as one the next build prunes, or
    as one kept while its job has no output of its own (a quarantined input, a failure)."""
    outcome = plan_build(config, registry, BuildOptions())  # a stranger's job is explained as `refuse`
    jobs = {job.output: job for job in outcome.jobs}
    candidates = _candidates(config, path)
    job = next((jobs[c] for c in candidates if c in jobs), None)
    store = StateStore.open_readonly(config.state_dir / "state.db")
    try:
        if job is None:
            recorded = (
                next((r for r in map(store.output, candidates) if r is not None), None) if store else None
            )
            if recorded is None or recorded.blake3 is None:  # no record, or a claim never written
                raise _not_an_output(config, path, candidates, outcome.jobs)
            now = next((j for j in outcome.jobs if j.job_id == recorded.job_id), None)
            moved = [f"its job now writes {config.out}/{now.output}"] if now is not None else []
            kept = _kept_by(now, store.load_failures().get(recorded.job_id) if store and now else None)
            return Explanation(
                output=f"{config.out}/{recorded.path}",
                rule=recorded.rule,
                job_id=recorded.job_id,
                action="prune" if kept is None else "kept",
                reasons=[kept or "no current job produces it: the next full build removes it", *moved],
                key="",
                recorded_key=recorded.action_key,
            )
        record = store.output(job.output) if store else None
        failure = store.load_failures().get(job.job_id) if store else None
    finally:
        if store:
            store.close()
    reasons = list(job.reasons) or ["up to date: inputs, recipe and output all match the record"]
    if failure is not None and job.action != "skip":  # why it is still to do: it failed, not "not built"
        first_line = failure.message.splitlines()[0] if failure.message else ""
        reasons.append(f"failed in run {failure.run_id}: {failure.error_class}: {first_line}")
    return Explanation(
        output=f"{config.out}/{job.output}",
        rule=job.rule,
        job_id=job.job_id,
        action=job.action,
        reasons=reasons,
        key=job.key,
        recorded_key=record.action_key if record else None,
        inputs=[{"path": p, "blake3": h} for p, h in zip(job.inputs, job.input_hashes, strict=True)],
    )


def _kept_by(job: Job | None, failure: Failure | None) -> str | None:
    """Why an output its job no longer writes stays (as pruning keeps it, `kept_outputs`): the job
    has no output of its own to show yet, held by its quarantined input, failed, or waiting for an
    upstream job; None when the next full build removes it."""
    if job is None or not keeps_last_output(job, failure is not None):
        return None
    if failure is None:
        why = "its job waits for an upstream job"
    elif failure.quarantine:
        why = "its input is quarantined"
    else:
        why = f"its job failed in run {failure.run_id} ({failure.error_class})"
    return f"no current job produces it, but {why}: it stays until its job builds again"


def _not_an_output(config: Config, path: str, candidates: list[str], jobs: list[Job]) -> UsageError:
    """The error for a `path` that no job writes, naming what it is when that is known: a path
    outside the project, or an input, whose outputs are what a user asking about it wants explained."""
    if posixpath.isabs(candidates[0]):
        return UsageError(f"{path} is outside the project", hint=f"give an output path under {config.out}/")
    made = sorted({f"{config.out}/{job.output}" for job in jobs if candidates[0] in job.inputs})
    if made:
        listed = ", ".join(made[:5]) + (f" and {len(made) - 5} more" if len(made) > 5 else "")
        return UsageError(
            f"{candidates[0]} is an input, not an output: it makes {listed}",
            hint=f"explain one of its outputs: `batchit explain {made[0]}`",
        )
    return UsageError(
        f"no rule produces {path!r} (looked for {config.out}/{candidates[0]})",
        hint="give an output path relative to `out`; `batchit plan` lists every output",
    )


def _candidates(config: Config, path: str) -> list[str]:
    """The output paths (relative to `out`) that `path` may mean, most likely first."""
    given = Path(path)
    if given.is_absolute():
        try:
            path = given.resolve().relative_to(config.root.resolve()).as_posix()
        except ValueError:
            return [path]
    cleaned = posixpath.normpath(path).lstrip("/")  # a backslash is part of a POSIX file name
    cleaned = "" if cleaned == "." else cleaned
    candidates = [cleaned]
    prefix = config.out.rstrip("/") + "/"
    if cleaned.startswith(prefix):
        candidates.append(cleaned[len(prefix) :])
    return candidates
