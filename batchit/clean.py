"""`batchit clean`: remove batchit's outputs, or (`--orphans`) files in `out` that no rule produces."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from batchit.engine import BuildOptions, plan_build
from batchit.fsutil import is_utf8_name, removal_refused, remove_outputs, shown_path
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

    What goes is decided under the project lock, as a build decides what to prune: a build that
    ended between a decision taken before it and the removal would have its fresh outputs left
    (plain `clean`) or removed as orphans (`--orphans`). A first, read-only decision refuses (a
    foreign state store) before the lock, whose taking writes our pid into its file, and its plan
    is reused under the lock unless the state store changed in between. While a build runs, the
    lock is held: clean exits 3 (LockHeldError), removing nothing. `dry_run` only reads.
    """
    first = _decide(config, registry, orphans=orphans)
    if dry_run:
        doomed = first.doomed
        present = {path for path in doomed if os.path.lexists(config.out_dir / path)}
        refused = {path: why for path in doomed if (why := removal_refused(config.out_dir, path))}
        return Cleaned([path for path in doomed if path in present and path not in refused], refused)
    if not first.doomed and not config.state_dir.exists():
        return Cleaned([])  # never built, nothing in `out`: no `.batchit` made for nothing
    with ProjectLock(config.state_dir / "lock"):
        doomed = _decide(config, registry, orphans=orphans, earlier=first).doomed
        if not doomed:
            return Cleaned([])
        present = {path for path in doomed if os.path.lexists(config.out_dir / path)}
        removed, kept = remove_outputs(config.out_dir, doomed)  # and the records of those already gone
        store = StateStore.open(config.state_dir / "state.db")
        try:
            audit_unaudited_run(config.state_dir, store, fsync=config.durability == "fsync")
            recorded = [path for path in removed if is_utf8_name(path)]  # the store holds UTF-8 text
            with store.transaction():
                store.forget_outputs(recorded)
                store.drop_stats(f"{config.out}/{p}" for p in recorded)
            details = {
                "orphans": orphans,
                "removed": len(removed),
                "first": [shown_path(p) for p in removed[:20]],
            }
            append_audit(config.state_dir, store, "clean", details, fsync=config.durability == "fsync")
        finally:
            store.close()
    return Cleaned([path for path in removed if path in present], kept)


@dataclass(frozen=True)
class _Decision:
    """What clean would remove, and what it was decided from."""

    doomed: list[str]
    """Paths relative to `out`."""
    generation: int
    """The state store's generation before the decision (0: no store)."""
    produced: frozenset[str] = frozenset()
    """With `--orphans`: the outputs the current jobs produce, by the plan."""


def _decide(
    config: Config, registry: OperatorRegistry, *, orphans: bool, earlier: _Decision | None = None
) -> _Decision:
    """What to remove now: the outputs batchit owns (and the manifest copies), or with `orphans`
    the files in `out` no current job produces. The plan of an `earlier` decision is reused when
    the state store has not changed since (only a run writing it adds or adopts outputs)."""
    store = StateStore.open_readonly(config.state_dir / "state.db")
    try:
        generation = store.generation() if store else 0
        if orphans:
            if earlier is not None and earlier.generation == generation:
                produced = earlier.produced
            else:
                produced = frozenset(produced_outputs(config, registry))
            return _Decision(_orphans(config, produced), generation, produced)
        refuse_foreign_state(config, store)  # its records name another config's outputs
        owned = store.output_paths(config.out) if store else set()
    finally:
        if store:
            store.close()
    doomed = sorted(owned)
    doomed += [p for p in sorted(RESERVED_OUTPUTS) if (config.out_dir / p).exists()]
    return _Decision(doomed, generation)


def _orphans(config: Config, produced: frozenset[str]) -> list[str]:
    """Files under `out` that no current job produces (`produced`, by `produced_outputs`)."""
    produced = produced | RESERVED_OUTPUTS
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
