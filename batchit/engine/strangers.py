"""Output paths that hold something batchit did not write: a build never replaces one silently.

A file batchit did not record stops the build (exit 2) unless `--overwrite`; a directory, FIFO,
socket or device stops it even then, as batchit never reads, replaces or removes one. Most are
found while planning, before anything is written; one at a `{key8}` path is found once the
upstream rule has run and the name is known (batchit.engine.running).
"""

from __future__ import annotations

from collections.abc import Mapping

from batchit.errors import OutputConflictError
from batchit.model import Config


def refuse_strangers(config: Config, strangers: Mapping[str, str | None], *, overwrite: bool) -> None:
    """Raise OutputConflictError for the output paths in `strangers` (path relative to `out` ->
    what stands there when it is not a regular file, else None) that the build may not replace."""
    found = {path: kind for path, kind in strangers.items() if kind}
    if found:
        listed = _listing(config, [f"{path} ({kind})" for path, kind in found.items()])
        raise OutputConflictError(
            f"{len(found)} output path(s) hold something that is not a regular file:\n  {listed}",
            hint="move each away (batchit writes only regular files; --overwrite replaces only files)",
        )
    if strangers and not overwrite:
        listed = _listing(config, list(strangers))
        raise OutputConflictError(
            f"{len(strangers)} output path(s) hold files batchit did not write:\n  {listed}",
            hint="move them away, or run `batchit build --overwrite` to replace them",
        )


def _listing(config: Config, paths: list[str]) -> str:
    """Up to 20 output paths under `out`, one a line, and how many more."""
    listed = "\n  ".join(f"{config.out}/{p}" for p in paths[:20])
    return listed + (f"\n  ... and {len(paths) - 20} more" if len(paths) > 20 else "")
