"""Project-relative paths in a config: what may be written, and its one normal form.

Inputs, deps, file parameters and include paths are relative to the project root, and outputs
relative to `out`; none may leave it. The check is textual, on what the user wrote (symlinks are the
planner's business, when files exist).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from batchit.fsutil import NAME_MAX
from batchit.globs import WILDCARDS
from batchit.placeholders import PLACEHOLDER, names_in, text

_DRIVE = re.compile(r"^[A-Za-z]:")


def escapes(path: str) -> str | None:
    """How `path` could leave its root (it is absolute, names a parent `..`, or holds a backslash,
    which is a separator elsewhere), or None when it stays inside."""
    if path.startswith("/") or _DRIVE.match(path):
        return "it is absolute"
    if ".." in path.split("/"):
        return "it names a parent folder (..)"
    if "\\" in path:
        return "it holds a backslash (folders are separated by /)"
    return None


def normalise(path: str) -> str:
    """`path` without empty and `.` segments (`./img//a` is `img/a`); empty when nothing is left."""
    return "/".join(segment for segment in path.split("/") if segment not in ("", "."))


def unusable(path: str) -> tuple[str, str] | None:
    """What makes `path` unusable as a file path on any system, and the fix; None when nothing does.

    A NUL character ends a path for the OS; a name over NAME_MAX bytes is refused by it. Placeholders
    are not counted, and a name holding a wildcard is not measured: what they stand for may be shorter.
    """
    if "\0" in path:
        return "contains a NUL character (\\0)", "remove the \\0: no file name can hold it"
    for segment in PLACEHOLDER.sub("", path).split("/"):
        size = len(segment.encode("utf-8", "surrogatepass"))
        if size > NAME_MAX and not WILDCARDS.search(segment):
            return (
                f"has a name of {size} bytes, longer than file systems take",
                f"shorten each folder and file name to at most {NAME_MAX} bytes",
            )
    return None


def unusable_value(
    template: str, matrix: Sequence[tuple[str, Sequence[Any]]]
) -> tuple[str, int, Any, tuple[str, str]] | None:
    """The first matrix value `template` uses that no path can hold (see `unusable`): its key, its
    index, the value, and what is wrong with it and the fix; None when every value it uses is fine."""
    used = set(names_in(template))
    for key, values in matrix:
        for index, value in enumerate(values if key in used else ()):
            reason = escapes(text(value))
            fix = "use a value that names no path of its own"
            problem = (f"would lead out of `out`: {reason}", fix) if reason else unusable(text(value))
            if problem:
                return key, index, value, problem
    return None
