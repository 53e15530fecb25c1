"""Execution: worker pools, batching, and the worker-side pipeline. Executors never touch the state store."""
