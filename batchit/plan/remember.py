"""Leaving the snapshot of the next plan, after a build or a doit run (see `batchit.plan.snapshot`).

The next plan is known when every job is up to date or held back by its quarantined input: then
it is this plan, each job as its next plan will see it, with what planning it will read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from batchit.fsutil import StatTuple, stat_identity
from batchit.plan.jobs import Job
from batchit.plan.planner import Planner
from batchit.plan.snapshot import MISSING, forget_snapshot, save_snapshot

Settled = list[tuple[Job, StatTuple, str]]
"""Each job as the next plan will see it, with its output's stat and BLAKE3."""


def settled_unrun(planner: Planner, job: Job) -> tuple[Job, StatTuple, str] | None:
    """A job that did not run, as the next plan will see it: up to date (with the stat its output
    was recognised by), or held back by its quarantined input (its output's stat, or MISSING, and
    no hash); None for any other job."""
    if job.action == "quarantined":
        return job, stat_identity(f"{planner.config.out_dir}/{job.output}") or MISSING, ""
    if job.action == "skip":
        output = planner.settled_output(job.output)
        return None if output is None else (job, *output)
    return None


def settled_plan(planner: Planner, jobs: Iterable[Job]) -> Settled | None:
    """Every job of a plan as the next plan will see it, when none of them needs to run."""
    settled: Settled = []
    for job in jobs:
        item = settled_unrun(planner, job)
        if item is None:
            return None
        settled.append(item)
    return settled


def remember_plan(planner: Planner, generation: int, settled: Callable[[], Settled | None]) -> None:
    """Leave the snapshot of the next plan for the state store's `generation`; call it after the
    last write to the store.

    `settled` gives the jobs as the next plan will see them (None: the next plan is not known, and
    the old snapshot goes). It is not asked when the plan was itself a replay: then the snapshot
    stands as it is, for the new generation.
    """
    state_dir = planner.config.state_dir
    if planner.fingerprint is None:
        forget_snapshot(state_dir)
    elif planner.replayed:
        save_snapshot(state_dir, generation, planner.fingerprint, None)
    elif (jobs := settled()) is None:
        forget_snapshot(state_dir)
    else:
        reads = planner.snapshot_reads([stat for _, stat, _ in jobs])
        hashes = [digest for _, _, digest in jobs]
        save_snapshot(state_dir, generation, planner.fingerprint, [job for job, _, _ in jobs], reads, hashes)
