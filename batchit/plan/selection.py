"""Which rules a build or plan covers: the ones named on the command line and what they read from."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

from batchit.errors import UsageError
from batchit.model import Config, Rule


def select_rules(config: Config, names: Iterable[str]) -> list[Rule]:
    """The named rules and every rule they read from, in dependency order; all rules for no names."""
    wanted = list(names)
    if not wanted:
        return list(config.rules.values())
    needed: set[str] = set()
    stack = []
    for name in wanted:
        if name not in config.rules:
            close = get_close_matches(name, list(config.rules), n=1)
            raise UsageError(
                f"no rule named {name!r} in {config.file}",
                hint=f"did you mean {close[0]!r}?" if close else f"rules: {', '.join(config.rules)}",
            )
        stack.append(name)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(config.rules[name].from_rules)
    return [rule for name, rule in config.rules.items() if name in needed]
