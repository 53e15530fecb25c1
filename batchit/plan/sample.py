"""`build --sample FRACTION|COUNT --seed N`: the canary before a full run (SPEC section 10).

A sample is a set of input files: those of the selected rules' globs whose BLAKE3 of the seed and
their path is lowest. Rank by a hash rather than by name, so the sample spreads over folders and
file kinds, and the same seed picks the same files on every machine; a file that is added or
removed moves no other file in or out of the order, only the cut.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from batchit.errors import UsageError
from batchit.hashing import blake3_hex

DEFAULT_SEED = 0
"""The seed of a sample when `--seed` is not given: the same files every time."""


@dataclass(frozen=True)
class Sample:
    """How many inputs to build: `count` of them, or `fraction` (0 < fraction <= 1) rounded up."""

    count: int | None = None
    fraction: float | None = None
    seed: int = DEFAULT_SEED
    rules: tuple[str, ...] = ()
    """The rules whose inputs the sample is drawn from (the selected rules)."""
    hold_aggregates: bool = True
    """Hold every aggregate: built into `out`, an aggregate of a sample would replace the real one
    (a sample built into a folder of its own builds them)."""

    def size(self, total: int) -> int:
        """How many of `total` candidate inputs the sample takes (at least one of a non-empty set)."""
        if self.count is not None:
            return min(self.count, total)
        assert self.fraction is not None
        return min(total, math.ceil(self.fraction * total))

    def choose(self, candidates: Iterable[str]) -> frozenset[str]:
        """The inputs in the sample: the `size` with the lowest BLAKE3 of `"{seed}:{path}"`."""
        ranked = sorted(candidates, key=lambda path: blake3_hex(f"{self.seed}:{path}".encode()))
        return frozenset(ranked[: self.size(len(ranked))])

    def describe(self) -> str:
        """The sample as `--sample` spelled it, for records and messages."""
        size = str(self.count) if self.count is not None else f"{(self.fraction or 0) * 100:g}%"
        return f"{size} (seed {self.seed})"


SIZE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)(?P<percent>%?)")


def parse_sample(text: str) -> tuple[int | None, float | None]:
    """`--sample`'s value as (count, fraction): `50` is a count, `0.05` and `5%` are fractions."""
    match = SIZE.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"--sample {text!r} is neither a count nor a fraction",
            hint="write a count (--sample 50), a fraction (--sample 0.05) or a percentage (--sample 5%)",
        )
    number, percent = match["number"], match["percent"]
    if not percent and "." not in number:
        count = int(number)
        if count < 1:
            raise UsageError("--sample 0 builds nothing", hint="sample at least one input (--sample 1)")
        return count, None
    fraction = float(number) / (100 if percent else 1)
    if not 0 < fraction <= 1:
        raise UsageError(
            f"--sample {text} is not a fraction between 0 and 1 (0% and 100%)",
            hint="write --sample 0.05 or --sample 5% for one input in twenty",
        )
    return None, fraction
