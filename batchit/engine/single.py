"""One planned job run to completion outside a build's scheduler: what each doit sub-task does."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from batchit.execute.boundary import JobResult, JobSpec, WorkerSettings
from batchit.execute.pools import stdin_detached
from batchit.execute.retry import backoff_delay
from batchit.execute.worker import run_job
from batchit.fsutil import cache_entry
from batchit.model import Config
from batchit.operators.base import UpstreamSource
from batchit.operators.registry import OperatorRegistry
from batchit.plan.jobs import Job
from batchit.plan.planner import Planner
from batchit.record.commits import Committer
from batchit.record.replays import write_job_log
from batchit.record.subtasks import append_job_result
from batchit.state.store import StateStore


def upstream_sources(
    config: Config, job: Job, by_rule: Mapping[str, list[Job]]
) -> dict[str, UpstreamSource] | None:
    """For an aggregate over other rules' outputs: the upstream job behind each input (`ctx.sources`).

    `cdn.manifest` and `template.render` read it to name each output's source file and matrix values.
    """
    upstream = config.rules[job.rule].from_rules
    if not job.aggregate or not upstream:
        return None
    wanted = set(job.inputs)
    found = {
        f"{config.out}/{up.output}": UpstreamSource(up.rule, up.inputs, dict(up.matrix))
        for name in upstream
        for up in by_rule.get(name, [])
        if f"{config.out}/{up.output}" in wanted
    }
    return found or None


def job_spec(
    config: Config, registry: OperatorRegistry, job: Job, by_rule: Mapping[str, list[Job]]
) -> JobSpec:
    """The worker's view of a planned job: its steps, contracts and the upstream jobs it reads.

    A pipeline of only cheap steps is not copied into the cache (re-running it costs no more).
    """
    rule = config.rules[job.rule]
    cheap = all(registry.get(step.operator).cheap for step in job.recipe.steps)
    return JobSpec(
        job.job_id,
        job.rule,
        job.inputs,
        job.aggregate,
        job.output,
        job.recipe.steps,
        job.key,
        rule.expect,
        rule.validate,
        cache=not cheap,
        sources=upstream_sources(config, job, by_rule),
    )


def cache_restore_spec(spec: JobSpec, job: Job, cache_dir: Path, blake3: str | None) -> JobSpec:
    """`spec` turned into a copy of the cache entry of the job's key. The run that made the entry
    discovered the dependencies the plan keyed the job with (`job.discovered`): the restored output
    keeps them, so an edit of one (a base template) still rebuilds it."""
    return replace(
        spec,
        steps=(),
        restore_from=str(cache_entry(cache_dir, job.key)),
        restore_blake3=blake3,
        restore_discovered=tuple(job.discovered),
    )


def twin_restore_spec(twin: Job, source: str, leader: JobResult) -> JobSpec:
    """The spec of a job with the same key as one that just ran (its leader): a copy of the leader's
    output at `source`, which depends on what the leader discovered."""
    return JobSpec(
        twin.job_id,
        twin.rule,
        twin.inputs,
        twin.aggregate,
        twin.output,
        (),
        twin.key,
        restore_from=source,
        restore_blake3=leader.blake3,
        restore_discovered=leader.discovered,
    )


def run_planned_job(
    config: Config,
    registry: OperatorRegistry,
    store: StateStore,
    planner: Planner,
    job: Job,
    run_id: str,
    seed: int,
    by_rule: Mapping[str, list[Job]],
    warn: Callable[[str], None],
) -> JobResult:
    """Run one planned `run` or `restore` job in this process and commit its result (a doit sub-task).

    The same steps as a build takes for each job: claim the output before anything is renamed into
    it, restore from the cache (a missing entry runs the job instead), retry transient failures with
    the rule's backoff (its jitter drawn from `seed`, as a build's), commit the result, keep the job's
    log. The caller holds the project lock (shared: doit runs several of these at once) and planned
    `job` with `planner` on `store`.
    """
    cache_dir = config.state_dir / "cache"
    settings = WorkerSettings(str(config.root), config.out, str(cache_dir), config.durability == "fsync")
    committer = Committer(store, planner, config, run_id, warn)
    committer.stat_updates(planner.stat_updates())
    spec = job_spec(config, registry, job, by_rule)
    if job.action == "restore":
        spec = cache_restore_spec(spec, job, cache_dir, committer.cached_blake3(job.key))
    committer.claim(job)
    committer.flush_claims()
    with stdin_detached():  # doit's stdin may be a terminal: a step reading it would wait for ever
        result = run_job(settings, spec)
        if not result.ok and job.action == "restore" and result.error_class == "CacheMiss":
            committer.drop_cache(job.key)
            job.action = "run"
            spec = job_spec(config, registry, job, by_rule)
            result = run_job(settings, spec)
        policy = config.rules[job.rule].retry
        while not result.ok and result.transient and spec.attempt < policy.attempts:
            time.sleep(backoff_delay(policy, spec.attempt, f"{seed}:{job.key}", result.retry_after))
            spec = replace(spec, attempt=spec.attempt + 1)
            result = run_job(settings, spec)
    committer.add(job, result)
    committer.flush()
    run_dir = config.state_dir / "runs" / run_id
    if result.log:
        write_job_log(run_dir, job.output, result.log)
    append_job_result(run_dir, job, result)
    return result


def twin_failure(twin: Job, leader: Job, result: JobResult) -> JobResult:
    """The failure of a job that was not run because an identical one (same action key) failed: the
    leader's, saying so, so that it never names the other job's input as this one's."""
    same = leader.inputs[0] if len(leader.inputs) == 1 else leader.output
    message = f"the same as {same} (one action key), which failed: {result.message}"
    return replace(result, job_id=twin.job_id, message=message)
