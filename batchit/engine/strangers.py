"""Output paths that hold something batchit did not write: a build never replaces one silently.

A file batchit did not record stops the build (exit 2) unless `--overwrite`; a directory, FIFO,
socket or device stops it even then, as batchit never reads, replaces or removes one. Most are
found while planning, before anything is written; one at a `{key8}` path is found once the
upstream rule has run and the name is known (batchit.engine.running).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from batchit.errors import OutputConflictError
from batchit.model import Config
from batchit.plan.jobs import Job

FOREIGN_FILE = "a file batchit did not write is there: a build stops (exit 2) unless --overwrite"
"""Why `plan` shows a job as `refuse`: a file batchit did not record stands at its output path."""


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


def mark_refused(jobs: Iterable[Job], strangers: Mapping[str, str | None], *, overwrite: bool) -> None:
    """Show in a plan what `refuse_strangers` would stop the build for: each job whose output path
    holds something the build may not replace gets the action `refuse` and the reason, so `plan`
    lists and counts them and still exits 0 (SPEC section 4). A file replaced by `--overwrite`
    stays a job to run, saying so."""
    for job in jobs:
        if job.output not in strangers:
            continue
        kind = strangers[job.output]
        if kind is None and overwrite:
            job.reasons = ("replaces a file batchit did not write (--overwrite)", *job.reasons)
            continue
        job.action = "refuse"
        job.reasons = (
            (FOREIGN_FILE,)
            if kind is None
            else (f"output path holds {kind}: a build stops (exit 2), even with --overwrite; move it away",)
        )
