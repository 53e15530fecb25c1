"""Project-relative paths in a config: what may be written, and its one normal form.

Inputs, deps, file parameters and include paths are relative to the project root, and outputs
relative to `out`; none may leave it. The check is textual, on what the user wrote (symlinks are the
planner's business, when files exist).
"""

from __future__ import annotations

import re

_DRIVE = re.compile(r"^[A-Za-z]:")


def escapes(path: str) -> bool:
    """True when `path` is absolute, names a parent (`..`) or uses a backslash: it could leave its root."""
    return path.startswith("/") or "\\" in path or bool(_DRIVE.match(path)) or ".." in path.split("/")


def normalise(path: str) -> str:
    """`path` without empty and `.` segments (`./img//a` is `img/a`); empty when nothing is left."""
    return "/".join(segment for segment in path.split("/") if segment not in ("", "."))
