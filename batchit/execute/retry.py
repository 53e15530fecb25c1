"""Backoff for transient failures (SPEC section 6): exponential, full jitter, seeded.

The jitter comes from a random source seeded by the run's seed, the job's key and the attempt, so a
replay with the same seed waits the same way; a server's Retry-After is a floor, never shortened.
"""

from __future__ import annotations

import random

from batchit.model import Retry


def backoff_delay(policy: Retry, attempt: int, seed: str, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based) before the next one."""
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
    delay = random.Random(f"{seed}:{attempt}").uniform(0, ceiling)  # noqa: S311 - jitter, not crypto
    return max(delay, retry_after) if retry_after else delay
