"""Sizes as people write them in a config: `20MB` is 20 * 10^6 bytes, `2GiB` is 2 * 2^30 (SPEC section 2).

Decimal and binary units are both accepted and never confused: a cache capped at `2GB` holds
2,000,000,000 bytes, as a disk vendor would count them.
"""

from __future__ import annotations

import re

UNITS: dict[str, int] = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
"""Multipliers by lower-case unit name."""

SIZE_PATTERN = r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([bB]|[kKmMgGtT][iI]?[bB])?\s*$"
"""What a size string looks like; the JSON Schema uses the same pattern, so both agree on validity."""

_SIZE = re.compile(SIZE_PATTERN)


def parse_size(value: str | int) -> int:
    """The number of bytes a size denotes: an int is bytes, a string is a number and a unit.

    Units are B, KB, MB, GB, TB (powers of 10) and KiB, MiB, GiB, TiB (powers of 2), in any case,
    with an optional space and fraction (`1.5 GB`); no unit means bytes; a fractional byte count is
    rounded down.
    Raises ValueError for anything else, including negative numbers and booleans.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"not a size: {value!r} (write e.g. 20MB, 512KiB or 1000)")
    number, unit = match.groups()
    whole, _, fraction = number.partition(".")  # exact: `1.5GB` is 15 * 10^9 // 10
    scale: int = 10 ** len(fraction)
    return int(whole + fraction) * UNITS[(unit or "b").lower()] // scale
