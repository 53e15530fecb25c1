"""`batchit explain PATH`: why one output is or is not up to date, from the same data `plan` uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchit.engine import BuildOptions, plan_build
from batchit.errors import UsageError
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
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
    """Explain output `path`, tried relative to `out` first and then as a project-relative path."""
    outcome = plan_build(config, registry, BuildOptions(overwrite=True))
    jobs = {job.output: job for job in outcome.jobs}
    candidates = [path.strip("/")]
    prefix = config.out.rstrip("/") + "/"
    if path.startswith(prefix):
        candidates.append(path[len(prefix) :])
    job = next((jobs[c] for c in candidates if c in jobs), None)
    if job is None:
        raise UsageError(
            f"no rule produces {path!r} (looked for {config.out}/{candidates[0]})",
            hint="give an output path relative to `out`; `batchit plan` lists every output",
        )
    store = StateStore.open_readonly(config.state_dir / "state.db")
    record = store.output(job.output) if store else None
    if store:
        store.close()
    return Explanation(
        output=f"{config.out}/{job.output}",
        rule=job.rule,
        job_id=job.job_id,
        action=job.action,
        reasons=list(job.reasons) or ["up to date: inputs, recipe and output all match the record"],
        key=job.key,
        recorded_key=record.action_key if record else None,
        inputs=[{"path": p, "blake3": h} for p, h in zip(job.inputs, job.input_hashes, strict=True)],
    )
