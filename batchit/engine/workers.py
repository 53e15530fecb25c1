"""A build's worker pools, sized and set up from the config and the command line."""

from __future__ import annotations

import os

from batchit.engine.options import BuildOptions
from batchit.execute.boundary import WorkerSettings
from batchit.execute.pools import Pools
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
from batchit.plan.selection import select_rules


def build_pools(config: Config, registry: OperatorRegistry, options: BuildOptions) -> Pools:
    """A build's worker pools: `-j`, else the config's `jobs`, else one worker per CPU; the
    forkserver of the process pool preloads the operators of the selected `cpu` rules."""
    cpu_operators = {
        registry.targets[step.operator].partition(":")[0]
        for rule in select_rules(config, options.rules)
        if rule.resources == "cpu"
        for step in rule.steps
    }
    workers = options.jobs or config.jobs or os.cpu_count() or 1
    settings = WorkerSettings(
        str(config.root),
        config.out,
        str(config.state_dir / "cache") if options.use_cache else None,
        config.durability == "fsync",
        overlap=workers < (os.cpu_count() or 1),
        fail_fast=options.fail_fast,
    )
    if options.executor == "dask":
        from batchit.execute.dask import DaskPools  # Dask only for the builds that run on it

        return DaskPools(settings, workers, options.dask_address, sized=bool(options.jobs or config.jobs))
    return Pools(settings, workers, options.executor, sorted(cpu_operators))
