"""Re-planning only what changed since a snapshot: the jobs of the inputs and outputs that moved.

A snapshot (`batchit.plan.snapshot`) holds the plan the last build left, every job up to date. When
a few walked files or outputs changed since, the plan now is that plan with the jobs of those
inputs and outputs planned again: a rule's jobs are one per input (and matrix value), and each
depends only on its own input, the rule's recipe and its own output. What a patch cannot see
through falls back to a full plan: a `deps` file that changed (every key of its rule moves), a
changed rule that another rule reads from, an aggregate whose inputs changed, a file hashed by path
that changed, or so many changes that reading the whole state store is cheaper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from batchit.model import Rule
from batchit.plan.files import compile_glob
from batchit.plan.jobs import Job
from batchit.plan.snapshot import SnapshotCheck

PATCH_FLOOR = 256
"""Changes always patched; above this, at most one job in PATCH_SHARE."""

PATCH_SHARE = 8
"""Beyond one changed job in this many, per-row lookups cost more than loading the store at once."""

Replan = Callable[[Rule, frozenset[str]], list[Job]]
"""Plans (expands and decides) a rule's jobs of the given input paths."""


def patch_plan(
    jobs: list[Job], check: SnapshotCheck, rules: Iterable[Rule], replan: Replan
) -> list[Job] | None:
    """The plan now, from a snapshot's jobs and what changed since; None when only a full plan can tell."""
    changed_outputs = check.changed_outputs
    if not check.hashed_same or changed_outputs is None:
        return None
    if len(check.changed_paths) + len(changed_outputs) > max(PATCH_FLOOR, len(jobs) // PATCH_SHARE):
        return None
    by_rule: dict[str, list[Job]] = {}
    for job in jobs:
        by_rule.setdefault(job.rule, []).append(job)
    touched: set[str] = set()
    planned: list[Job] = []
    for rule in rules:
        before = by_rule.get(rule.name, [])
        if any(map(_selector(rule.deps, ()), check.changed_paths)):
            return None
        inputs_moved = set(filter(_selector(rule.globs, rule.exclude), check.changed_paths))
        outputs_moved = {job.inputs[0] for job in before if job.output in changed_outputs}
        if not inputs_moved and not outputs_moved:
            if any(up in touched for up in rule.from_rules):
                return None
            planned.extend(before)
            continue
        if rule.aggregate is not None or rule.from_rules:
            return None  # its jobs read many inputs, or inputs the upstream plan decides
        touched.add(rule.name)
        redo = frozenset((inputs_moved | outputs_moved) & check.tree.stats.keys())
        fresh: dict[str, list[Job]] = {}
        for job in replan(rule, redo):
            fresh.setdefault(job.inputs[0], []).append(job)
        if redo == inputs_moved | outputs_moved:  # no input went: replace jobs in place, unless one came
            replaced, new_inputs = _replaced(before, redo, dict(fresh))
            if not new_inputs:
                planned.extend(replaced)
                continue
        kept: dict[str, list[Job]] = {}
        for job in before:
            kept.setdefault(job.inputs[0], []).append(job)
        globs = [compile_glob(g) for g in rule.globs]
        for path, _ in check.tree.match(globs, [compile_glob(g) for g in rule.exclude]):
            planned.extend(fresh.get(path, []) if path in redo else kept.get(path, []))
    return planned


def _replaced(
    before: list[Job], redo: frozenset[str], fresh: dict[str, list[Job]]
) -> tuple[list[Job], dict[str, list[Job]]]:
    """`before` with the jobs of each input in `redo` replaced by its fresh ones, in the same place;
    and the fresh jobs of inputs that had none before (left in `fresh`)."""
    jobs: list[Job] = []
    for job in before:
        path = job.inputs[0]
        if path not in redo:
            jobs.append(job)
        elif path in fresh:
            jobs.extend(fresh.pop(path))
    return jobs, fresh


def _selector(patterns: Iterable[str], exclude: Iterable[str]) -> Callable[[str], bool]:
    """A test for paths matching one of the glob patterns and none of the excluded ones."""
    wanted = [compile_glob(p).regex.fullmatch for p in patterns]
    unwanted = [compile_glob(p).regex.fullmatch for p in exclude]

    def selected(path: str) -> bool:
        return any(match(path) for match in wanted) and not any(match(path) for match in unwanted)

    return selected
