"""Re-planning only what changed since a snapshot: the jobs of the inputs and outputs that moved.

A snapshot (`batchit.plan.snapshot`) holds the plan the last build left, every job up to date. When
a few walked files or outputs changed since, the plan now is that plan with the jobs of those
inputs and outputs planned again: a one-input rule's jobs are one per input (and matrix value), and
each depends only on its own input, the rule's recipe and its own output. An aggregate, or a rule
reading another rule's outputs, is planned again whole when its inputs, its outputs or an upstream
rule changed, with the upstream outputs as `predict` sees them. What a patch cannot see through
falls back to a full plan: a `deps` file or a file a recipe names that changed (every key of its
rule may move), or so many changes (or inputs to re-read) that reading the whole state store is
cheaper. A changed file that only jobs discovered (a template's include) re-plans those jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from batchit.globs import compile_glob
from batchit.model import Rule
from batchit.plan.jobs import Job
from batchit.plan.snapshot import SnapshotCheck

PATCH_FLOOR = 256
"""Changes always patched; above this, at most one job in PATCH_SHARE."""

PATCH_SHARE = 8
"""Beyond one changed job in this many, per-row lookups cost more than loading the store at once."""

Replan = Callable[[Rule, Mapping[str, list[tuple[str, str]]], frozenset[str] | None], list[Job]]
"""Plans (expands and decides) a rule's jobs again, given its upstream rules' outputs: all of them,
or only those of the given input paths."""


def patch_plan(
    jobs: list[Job],
    check: SnapshotCheck,
    rules: Iterable[Rule],
    replan: Replan,
    predicted_hash: Callable[[Job], str],
) -> list[Job] | None:
    """The plan now, from a snapshot's jobs and what changed since; None when only a full plan can tell.

    `predicted_hash` gives the output hash a downstream rule sees for a planned job, as `predict`
    does.
    """
    changed_outputs = check.changed_outputs
    if changed_outputs is None or any(check.changed_hashed.values()):
        return None  # outputs not checked, or a file a recipe reads: every key of its rule may move
    rediscover = {  # jobs whose discovered dependencies changed
        job.job_id
        for job in jobs
        if job.discovered and not check.changed_hashed.keys().isdisjoint(job.discovered)
    }
    budget = max(PATCH_FLOOR, len(jobs) // PATCH_SHARE)
    if len(check.changed_paths) + len(changed_outputs) > budget:
        return None
    selected = list(rules)
    read = {name for rule in selected for name in rule.from_rules}
    by_rule: dict[str, list[Job]] = {}
    for job in jobs:
        by_rule.setdefault(job.rule, []).append(job)
    touched: set[str] = set()
    outputs: dict[str, list[tuple[str, str]]] = {}
    planned: list[Job] = []
    for rule in selected:
        before = by_rule.get(rule.name, [])
        if _matching(check, rule.deps, ()):
            return None  # every key of the rule moves
        inputs_moved = _matching(check, rule.globs, rule.exclude)
        moved = [job for job in before if job.output in changed_outputs or job.job_id in rediscover]
        if not inputs_moved and not moved and not touched.intersection(rule.from_rules):
            now = before
        elif rule.aggregate is not None or rule.from_rules:  # many inputs a job, or upstream ones
            if sum(len(job.inputs) for job in before) > budget:
                return None
            now = replan(rule, outputs, None)
            touched.add(rule.name)
        else:
            now = _one_input_jobs(rule, before, inputs_moved, {job.inputs[0] for job in moved}, check, replan)
            touched.add(rule.name)
        held = {job.job_id for job in before if job.action == "quarantined"}
        if rule.name in read and any(job.job_id in held and job.action == "skip" for job in now):
            return None  # a held input is back as built, so no run re-plans the rules reading it, and
            # the snapshot has no output hash for it
        planned.extend(now)
        if rule.name in read:
            outputs[rule.name] = [(j.output, predicted_hash(j)) for j in now if j.action != "quarantined"]
    return planned


def _one_input_jobs(
    rule: Rule,
    before: list[Job],
    inputs_moved: set[str],
    outputs_moved: set[str],
    check: SnapshotCheck,
    replan: Replan,
) -> list[Job]:
    """A one-input rule's jobs: those of moved inputs and outputs planned again, the rest kept."""
    redo = frozenset((inputs_moved | outputs_moved) & check.tree.stats.keys())
    fresh: dict[str, list[Job]] = {}
    for job in replan(rule, {}, redo):
        fresh.setdefault(job.inputs[0], []).append(job)
    if redo == inputs_moved | outputs_moved:  # no input went: replace jobs in place, unless one came
        replaced, new_inputs = _replaced(before, redo, dict(fresh))
        if not new_inputs:
            return replaced
    kept: dict[str, list[Job]] = {}
    for job in before:
        kept.setdefault(job.inputs[0], []).append(job)
    now: list[Job] = []
    globs = [compile_glob(g) for g in rule.globs]
    for path, _ in check.tree.match(globs, [compile_glob(g) for g in rule.exclude]):
        now.extend(fresh.get(path, []) if path in redo else kept.get(path, []))
    return now


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


def _matching(check: SnapshotCheck, patterns: Iterable[str], exclude: Iterable[str]) -> set[str]:
    """The changed paths (removed ones included) that the glob patterns select."""
    globs, excluded = [compile_glob(p) for p in patterns], [compile_glob(p) for p in exclude]
    return {path for path, _ in check.tree.match(globs, excluded, among=check.changed_paths)}
