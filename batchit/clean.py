"""`batchit clean`: remove batchit's outputs, or (`--orphans`) files in `out` that no rule produces."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from batchit.engine import BuildOptions, plan_build
from batchit.fsutil import removal_refused, remove_outputs
from batchit.model import RESERVED_OUTPUTS, Config
from batchit.operators.registry import OperatorRegistry
from batchit.plan.ownership import refuse_foreign_state
from batchit.plan.pruning import kept_outputs
from batchit.record.audit import append_audit
from batchit.record.runs import audit_unaudited_run
from batchit.state.lock import ProjectLock
from batchit.state.store import StateStore


@dataclass(frozen=True)
class Cleaned:
    """What `clean` removed (or would remove), and the paths it left alone with the reason."""

    removed: list[str]
    """Paths relative to `out`."""
    kept: dict[str, str] = field(default_factory=dict)
    """Path relative to `out` -> why batchit cannot prove it holds a file batchit wrote there."""


def clean(config: Config, registry: OperatorRegistry, *, orphans: bool, dry_run: bool) -> Cleaned:
    """Remove (or with `dry_run` only list) outputs.

    Only regular files inside `out` are removed (`remove_outputs`): a folder replaced by a symlink
    leading out of `out`, or a directory or FIFO at an output path, is kept and reported. After
    `out` changed, the records name files in the old `out`, so nothing in the new one is batchit's yet.
    """
    store_path = config.state_dir / "state.db"
    if orphans:
        doomed = _orphans(config, registry)
    else:
        store = StateStore.open_readonly(store_path)
        refuse_foreign_state(config, store)  # its records name another config's outputs
        owned = store.output_paths(config.out) if store else set()
        if store:
            store.close()
        doomed = sorted(owned)
        doomed += [p for p in sorted(RESERVED_OUTPUTS) if (config.out_dir / p).exists()]
    present = {path for path in doomed if os.path.lexists(config.out_dir / path)}
    if dry_run or not doomed:
        refused = {path: why for path in doomed if (why := removal_refused(config.out_dir, path))}
        return Cleaned([path for path in doomed if path in present and path not in refused], refused)
    with ProjectLock(config.state_dir / "lock"):
        removed, kept = remove_outputs(config.out_dir, doomed)  # and the records of those already gone
        store = StateStore.open(store_path)
        try:
            audit_unaudited_run(config.state_dir, store, fsync=config.durability == "fsync")
            with store.transaction():
                store.forget_outputs(removed)
                store.drop_stats(f"{config.out}/{p}" for p in removed)
            details = {"orphans": orphans, "removed": len(removed), "first": removed[:20]}
            append_audit(config.state_dir, store, "clean", details, fsync=config.durability == "fsync")
        finally:
            store.close()
    return Cleaned([path for path in removed if path in present], kept)


def _orphans(config: Config, registry: OperatorRegistry) -> list[str]:
    """Files under `out` that no current job produces."""
    produced = produced_outputs(config, registry) | set(RESERVED_OUTPUTS)
    found: list[str] = []
    out_dir = config.out_dir
    for directory, _, files in os.walk(out_dir):
        for name in files:
            rel = Path(directory, name).relative_to(out_dir).as_posix()
            if rel not in produced:
                found.append(rel)
    return sorted(found)


def produced_outputs(config: Config, registry: OperatorRegistry) -> set[str]:
    """The outputs (relative to `out`) the current jobs produce, planned read-only.

    A job whose key is not known yet (its upstream is stale: an aggregate over another rule's
    outputs after `clean`) produces its output all the same unless the name holds that key
    (`{key8}`). Such a job, one whose input is held in quarantine, or one that failed keeps the
    output it recorded last time, as pruning does (batchit.plan.pruning); a held job's new `{key8}`
    name is not expected before its input is released or fixed.
    """
    jobs = plan_build(config, registry, BuildOptions(overwrite=True)).jobs
    rules = config.rules
    produced = {
        job.output for job in jobs if job.output_known(rules[job.rule]) and job.action != "quarantined"
    }
    store = StateStore.open_readonly(config.state_dir / "state.db")
    if store:
        produced |= kept_outputs(store, jobs)
        store.close()
    return produced
