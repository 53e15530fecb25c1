"""Making way for an output: batchit's own stale outputs that stand where a job must write.

When an input that was a file becomes a directory (`src/a` -> `src/a/x`), the old output `a` (a
file) stands where the directory of the new output `a/x` must be; the other way round, the old
`a/x` keeps a directory where the new `a` must go. Pruning removes stale outputs only after the jobs
ran: too late. So before a job is dispatched, the outputs batchit recorded that block its path, and
that no job of this build writes, are removed (`fsutil.remove_outputs`). A file batchit did not
record is never removed: the write then fails, naming the output.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path


def in_the_way(path: str) -> bool:
    """True when something may stand in the way of writing a file at `path`: a directory there, or
    a file where one of its directories must be. One `stat`, for every job of a build."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except NotADirectoryError:
        return True
    except FileNotFoundError:
        return False


def blocking_outputs(out_dir: Path, output: str, removable: Callable[[str], bool]) -> list[str]:
    """The `removable` outputs (paths relative to `out_dir`) in the way of writing `output`: a file
    where one of its directories must be, or the files under a directory where it must be."""
    blocking: list[str] = []
    parts = output.split("/")
    for depth in range(1, len(parts)):
        ancestor = "/".join(parts[:depth])
        mode = _mode(out_dir / ancestor)
        if mode is None:
            break  # nothing deeper exists either
        if not stat.S_ISDIR(mode):
            if removable(ancestor):
                blocking.append(ancestor)
            break
    target = out_dir / output
    mode = _mode(target)
    if mode is not None and stat.S_ISDIR(mode):
        for parent, _, names in os.walk(target):
            for name in names:
                relative = Path(parent, name).relative_to(out_dir).as_posix()
                if removable(relative):
                    blocking.append(relative)
    return blocking


def _mode(path: Path) -> int | None:
    """The file type bits of `path` itself (a symlink is not followed), or None when it is absent."""
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
