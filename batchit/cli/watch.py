"""`batchit watch`: build, then rebuild after every burst of changes until Ctrl-C (which exits 0).

Each rebuild is a plain `batchit build` with the same flags, so its summary lines are the ones a
build prints; a line before each names what changed. A config error during a rebuild is reported
and the watch goes on: fixing the file triggers the next rebuild. When a helper module that a
`python` step imported into this process changes, the watch starts again as a new process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from batchit.cli import INTERRUPTED, commands, project_root, report_error
from batchit.cli.output_files import own_output_files
from batchit.errors import BatchitError, LockHeldError, UsageError
from batchit.fsutil import shown_path
from batchit.model import STATE_DIR
from batchit.operators.project_modules import stale_helpers
from batchit.state.lock import ProjectLock
from batchit.watch import watch

SHOWN_CHANGES = 3
"""How many changed paths the line before a rebuild names."""


def run(args: argparse.Namespace) -> int:
    """Build once, then watch the project and rebuild on change; exit 0 on Ctrl-C. A wrong flag
    (no edit could fix it) or a folder without the config (no project: a watch of a home folder
    would only wait) is exit 2 at once; a config error is reported and waits for its fix."""
    root = project_root()
    try:
        commands.check_command_line(args)
        if not (root / args.file).exists():
            commands.load(args)  # which says the config is not there, and how to name the project
    except UsageError as exc:
        return report_error(args, exc)
    own = own_output_files(root)
    ignored = [STATE_DIR, *own]
    """What no change counts in: `.batchit`, the files this command's lines end up in (`batchit
    watch | tee watch.log` would otherwise rebuild after each line it prints), and `out` as the config
    last named it (refreshed after each build: a changed `out` must not trigger builds forever)."""
    count = 0
    interrupted = False

    def build() -> int:
        nonlocal interrupted
        code, out = _build(args)
        if out is not None:  # else the config is broken: the last good `out` stays ignored
            ignored[:] = [STATE_DIR, *own, *_folders_of(root, out)]
        interrupted = code == INTERRUPTED
        return code

    def rebuild(changed: list[str]) -> bool:
        nonlocal count
        count += 1
        more = f" and {len(changed) - SHOWN_CHANGES} more" if len(changed) > SHOWN_CHANGES else ""
        _say(f"batchit watch: rebuild {count} after changes to {', '.join(changed[:SHOWN_CHANGES])}{more}")
        stale = stale_helpers((root / path for path in changed), root)
        if stale:
            _say(f"batchit watch: restarting: {', '.join(stale)} changed, and this process runs its old code")
            raise _Restart
        return build() != INTERRUPTED

    def ready() -> None:
        _say(f"batchit watch: watching {root} (debounce {args.debounce} ms); Ctrl-C to stop")

    outside = _outside(root, args.file)
    try:
        watch(root, ignored, args.debounce / 1000, lambda: build() != INTERRUPTED, rebuild, ready, outside)
    except KeyboardInterrupt:
        pass
    except _Restart:
        _restart(args)
    _say("batchit watch: stopped")
    if interrupted:
        # As for an interrupted `build` (batchit.cli): jobs abandoned after the grace period may
        # still occupy worker threads, which an ordinary exit would wait for, however long they
        # run; everything committed is already durable, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _folders_of(root: Path, out: str) -> list[str]:
    """`out`, and the project folder it leads to when it is a symlink to one: the system reports
    the build's writes under the real path."""
    folders = [out]
    try:
        real = (root / out).resolve().relative_to(root.resolve()).as_posix()
    except (OSError, ValueError):  # not there yet, or outside the project
        return folders
    return folders if real in (out, ".") else [*folders, real]


def _outside(root: Path, file: str) -> list[Path]:
    """The config file (`-f`) when it lies outside the project, where the watch of the project does
    not see it (through a symlink too: an edit changes the file it leads to)."""
    config = (root / file).resolve()
    inside = config.is_relative_to(root.resolve())
    return [] if inside or not config.parent.is_dir() else [config]


class _Restart(Exception):
    """A module this process imported (a helper of a `python` step) changed on disk."""


def _restart(args: argparse.Namespace) -> NoReturn:
    """Replace this process with the same command, run from where it was started: a new interpreter
    imports the changed module afresh, which reloading it here could not do safely (every module that
    took names from it would keep the old ones)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if args.started_in is not None:
        os.chdir(args.started_in)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606 - this very command again


def _build(args: argparse.Namespace) -> tuple[int, str | None]:
    """One `batchit build` with the watch's flags, and `out` as its config names it (None when the
    config did not load); an error is printed, not raised."""
    while True:
        out, lock = None, None
        try:
            config, registry = commands.load(args)
            out, lock = config.out, ProjectLock(config.state_dir / "lock")
            code = commands.build_loaded(args, config, registry)
        except LockHeldError as exc:
            if lock is not None:  # another run holds it: build once it is done, or the change is lost
                _say(f"batchit watch: waiting: {exc.message}")
                lock.wait_until_free()
                continue
            code = report_error(args, exc)
        except BatchitError as exc:
            code = report_error(args, exc)
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out


def _say(line: str) -> None:
    """Print one of the watch's own lines; a file name that is not UTF-8 (a changed file's, the
    project's) shows its odd bytes as `\\xff`, as batchit's messages do, where printing them
    would stop the watch on an output that takes only UTF-8."""
    sys.stdout.write(f"{shown_path(line)}\n")  # one write: a Ctrl-C between text and newline
    sys.stdout.flush()  # would run the next line into this one
