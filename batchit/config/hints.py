"""The "did you mean" of every config error about a name that does not exist."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str], fallback: str, *, braces: bool = False) -> str:
    """A fix naming the known name closest to a misspelt `name`, or `fallback` when none is close.

    With `braces` the suggestion is shown as a placeholder (`did you mean {width}?`).
    """
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if not close:
        return fallback
    return f"did you mean {{{close[0]}}}?" if braces else f"did you mean '{close[0]}'?"


def listing(names: Iterable[str]) -> str:
    """Names sorted and joined for a hint, or `none`."""
    return ", ".join(sorted(names)) or "none"
