"""batchit: a declarative, incremental batch processor.

Rules in `batchit.yaml` map input globs to outputs through pipelines of operators; BLAKE3 content
hashes decide what is stale, so a build redoes only what changed.
"""

__version__ = "0.1.0"
