"""`{name}` placeholders in output templates and step parameters (SPEC section 2).

Only `{identifier}` is a placeholder; `{{` and `}}` are literal braces; anything else in braces is
literal text. A string that is exactly one placeholder takes the value's own type, so
`width: "{width}"` gives the number 320.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")

PATH_PLACEHOLDERS = frozenset({"path", "dir", "name", "stem", "ext"})
"""Placeholders derived from an input's path."""


class UnknownPlaceholder(KeyError):
    """A template names a placeholder that has no value here."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def names_in(template: str) -> list[str]:
    """The placeholder names a template uses, in order of appearance."""
    return [m.group(1) for m in PLACEHOLDER.finditer(template) if m.group(1)]


def names_in_value(value: Any) -> set[str]:
    """Every placeholder name used anywhere inside a (nested) parameter value."""
    if isinstance(value, str):
        return set(names_in(value))
    if isinstance(value, Mapping):
        return set().union(*(names_in_value(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(names_in_value(v) for v in value)) if value else set()
    return set()


def substitute(template: str, values: Mapping[str, Any], keep: frozenset[str] = frozenset()) -> Any:
    """Fill `template` from `values`; names in `keep` (and then the escapes too) are left for later.

    Text filled in while some names are kept has its braces escaped, so that the later pass (the
    operator's own, for `{in}` and `{out}`) takes an input named `a{b}.txt` as it is.
    Raises UnknownPlaceholder for a name that is neither in `values` nor in `keep`.
    """
    whole = PLACEHOLDER.fullmatch(template)
    if whole and whole.group(1) and whole.group(1) not in keep:
        name = whole.group(1)
        if name not in values:
            raise UnknownPlaceholder(name)
        value = values[name]
        return _escaped(value) if keep and isinstance(value, str) else value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0) if keep else match.group(0)[0]
        if name in keep:
            return match.group(0)
        if name not in values:
            raise UnknownPlaceholder(name)
        return _escaped(text(values[name])) if keep else text(values[name])

    return PLACEHOLDER.sub(replace, template)


def _escaped(filled: str) -> str:
    """Text with its braces doubled, to stay literal through one more `substitute`."""
    return filled.replace("{", "{{").replace("}", "}}")


def text(value: Any) -> str:
    """A value inside a longer string, spelled as YAML and JSON write it: `true`, not Python's `True`.

    So `{flag}` in an output name and `${param}` in a preset read the same as in `batchit.yaml`.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def substitute_value(value: Any, values: Mapping[str, Any], keep: frozenset[str] = frozenset()) -> Any:
    """`substitute` applied to every string inside a nested parameter value."""
    if isinstance(value, str):
        return substitute(value, values, keep)
    if isinstance(value, Mapping):
        return {k: substitute_value(v, values, keep) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute_value(v, values, keep) for v in value]
    return value


def path_values(relative: str) -> dict[str, str]:
    """The path placeholders of an input, given its path relative to its glob base.

    `2024/a.b.jpg` gives path `2024/a.b`, dir `2024`, name `a.b.jpg`, stem `a.b`, ext `jpg`.
    """
    directory, _, name = relative.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    path = f"{directory}/{stem}" if directory else stem
    return {"path": path, "dir": directory, "name": name, "stem": stem, "ext": ext}


def template_pattern(template: str) -> re.Pattern[str]:
    """A regular expression matching every path `template` can render to (and some it cannot).

    Each placeholder matches anything, slashes included, and each literal slash may vanish, as an
    empty segment does when the path is normalised. A partial build asks it whether a rule it did
    not plan may write a path: a false yes only leaves pruning to the next full build.
    """
    parts: list[str] = []
    start = 0
    for match in PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[start : match.start()]))
        parts.append(".*" if match.group(1) else re.escape(match.group(0)[0]))
        start = match.end()
    parts.append(re.escape(template[start:]))
    return re.compile("".join(parts).replace("/", "/?"))
