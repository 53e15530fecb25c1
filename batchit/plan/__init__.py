"""Planning: which jobs exist, what their keys are, which are stale and why (`batchit.plan.planner`).

The package itself imports nothing, so a worker process that needs only `batchit.plan.keys` does not
load the planner, the config loader and their dependencies.
"""
