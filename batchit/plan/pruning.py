"""Which recorded outputs a build removes (SPEC section 3): those no current job produces.

`plan` lists them and the build removes them once its rules finished, from the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from batchit.model import Rule
from batchit.placeholders import template_pattern
from batchit.plan.jobs import UNKNOWN, Job
from batchit.state.rows import Owned
from batchit.state.store import StateStore


def prunable(
    owned: Mapping[str, str],
    rules: Mapping[str, Rule],
    store: StateStore | None,
    by_rule: Mapping[str, list[Job]],
    finished: Iterable[str],
    *,
    full: bool,
    foretold: bool = False,
) -> list[str]:
    """The outputs (paths relative to `out`) that no planned job produces, among those `owned`
    (recorded, path -> rule) by the `finished` rules and, on a `full` build, by rules that are not
    among the config's `rules` any more.

    An output a planned job produces is never among them, whichever rule recorded it (a renamed
    rule, rules that swapped output templates), nor the output that a job recorded last when it
    now has no output of its own to show: blocked before its key was known, failed, or held in
    quarantine (its `{key8}` name moved with its input, but the old output stays, as any failed
    job's does). A build of some rules leaves any path a rule it did not plan may write to the next
    full build. `foretold`: the jobs are a plan's, not yet run (see `keeps_last_output`).
    """
    jobs = [job for planned in by_rule.values() for job in planned]
    current = {job.output for job in jobs} | kept_outputs(store, jobs, foretold=foretold)
    done = set(finished)
    unplanned = [template_pattern(rules[name].output).fullmatch for name in rules if name not in by_rule]
    return [
        path
        for path, rule in owned.items()
        if path not in current
        and (rule in done or (full and rule not in rules))
        and not any(may_write(path) for may_write in unplanned)
    ]


def kept_outputs(store: StateStore | None, jobs: Iterable[Job], *, foretold: bool = False) -> set[str]:
    """The outputs that jobs with no output of their own to show recorded last and keep: a job
    blocked before its key was known, or one with a failure on record (failed, or held in
    quarantine; its `{key8}` name moved with its input). `foretold`: see `keeps_last_output`."""
    if store is None:
        return set()
    failing = store.load_failures()
    return store.outputs_of_jobs(
        job.job_id for job in jobs if keeps_last_output(job, job.job_id in failing, foretold=foretold)
    )


def keeps_last_output(job: Job, failed: bool, *, foretold: bool = False) -> bool:
    """Whether `job` has no output of its own to show, so the output it recorded last stays:
    blocked before its key was known, or `failed` (a failure on record: failed, or held in
    quarantine; its `{key8}` name moved with its input).

    `foretold`: `job` is a plan's, not yet run. A job the plan runs or restores is foretold to
    write its output, as the plan says: one waiting for its upstream job gets its key once that
    ran (new bytes upstream, a new key, so a new `{key8}` name), and one that failed is retried.
    """
    if foretold and job.action in ("run", "restore"):
        return False
    return failed or job.key == UNKNOWN


def once_written(paths: Iterable[str], records: Mapping[str, Owned]) -> list[str]:
    """Those of `paths` whose output was written once: a `{key8}` job claims its output's name
    before it runs, and one that failed or was stopped first leaves a record but no file."""
    return [path for path in paths if (record := records.get(path)) is None or record.blake3]
