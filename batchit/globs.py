"""Globs as batchit reads them: `**` spans folders, `*` and `?` stay within one, `[...]` is a class.

The loader compiles every glob once to refuse a broken one at its line; the planner compiles them
to match files. Both use this module, below either of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WILDCARDS = re.compile(r"[*?\[]")
"""A glob segment holding one of these is a pattern; the segments before it are a literal folder."""


@dataclass(frozen=True)
class Glob:
    """A compiled glob: its literal base directory and a regex over project-relative paths."""

    pattern: str
    base: str
    regex: re.Pattern[str]


def compile_glob(pattern: str) -> Glob:
    """Compile a glob where `**` spans directories, `*` and `?` stay within one, `[...]` is a class.

    Raises ValueError for a glob that cannot match as written (a class like `[z-a]`), so the
    loader refuses it at its line instead of the planner failing on it.
    """
    segments = pattern.split("/")
    base_parts: list[str] = []
    for segment in segments[:-1]:
        if WILDCARDS.search(segment):
            break
        base_parts.append(segment)
    parts: list[str] = []
    rest = segments[len(base_parts) :]
    for index, segment in enumerate(rest):
        last = index == len(rest) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
            continue
        parts.append(_segment_regex(segment) + ("" if last else "/"))
    prefix = "".join(re.escape(p) + "/" for p in base_parts)
    try:
        regex = re.compile(prefix + "".join(parts))
    except re.error as exc:
        raise ValueError(f"invalid character class in glob {pattern!r}: {exc.msg}") from None
    return Glob(pattern, "/".join(base_parts), regex)


def _segment_regex(segment: str) -> str:
    """One path segment of a glob as a regex: `*` and `?` never cross a `/`, `[!...]` negates."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := segment.find("]", i + 2)) != -1:
            body = segment[i + 1 : end]
            negated = body.startswith("!")
            body = (body[1:] if negated else body).replace("\\", "\\\\")
            body = "\\" + body if body.startswith("^") else body  # a literal ^, as fnmatch reads it
            out.append(f"[^/{body}]" if negated else f"[{body}]")  # a negation never takes the /
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def reaches_into(pattern: str, folder: str) -> bool:
    """True when the glob could match a file inside `folder` (project-relative), as far as its
    pattern tells: every segment of the folder matches the pattern's, or a `**` takes the rest."""
    segments = pattern.split("/")
    for index, name in enumerate(folder.split("/")):
        if index >= len(segments) - 1:  # the pattern's last segment names files, nothing below
            return False
        if segments[index] == "**":
            return True
        if not re.fullmatch(_segment_regex(segments[index]), name):
            return False
    return True
