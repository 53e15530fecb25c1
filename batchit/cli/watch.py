"""`batchit watch`: build, then rebuild after every burst of changes until Ctrl-C (which exits 0).

Each rebuild is a plain `batchit build` with the same flags, so its summary lines are the ones a
build prints; a line before each names what changed. A config error during a rebuild is reported
and the watch goes on: fixing the file triggers the next rebuild.
"""

from __future__ import annotations

import argparse
import sys

from batchit.cli import INTERRUPTED, commands, project_root
from batchit.config import load_config
from batchit.errors import BatchitError
from batchit.operators.code import stale_helpers
from batchit.operators.registry import OperatorRegistry
from batchit.watch import watch

SHOWN_CHANGES = 3
"""How many changed paths the line before a rebuild names."""


def run(args: argparse.Namespace) -> int:
    """Build once, then watch the project and rebuild on change; exit 0 on Ctrl-C."""
    root = project_root()
    config = load_config(root, args.file, {}, OperatorRegistry.default())
    count = 0

    def rebuild(changed: list[str]) -> bool:
        nonlocal count
        count += 1
        more = f" and {len(changed) - SHOWN_CHANGES} more" if len(changed) > SHOWN_CHANGES else ""
        _say(f"batchit watch: rebuild {count} after changes to {', '.join(changed[:SHOWN_CHANGES])}{more}")
        stale = stale_helpers(root / path for path in changed)
        if stale:
            _say(
                f"batchit watch: warning: {', '.join(stale)} changed, but this process keeps running its "
                "old code (only a python step's own module is imported again): restart the watch"
            )
        return _build(args) != INTERRUPTED

    def ready() -> None:
        _say(f"batchit watch: watching {root} (debounce {args.debounce} ms); Ctrl-C to stop")

    try:
        if _build(args) != INTERRUPTED:
            watch(root, [config.out, ".batchit"], args.debounce / 1000, rebuild, ready)
    except KeyboardInterrupt:
        pass
    _say("batchit watch: stopped")
    return 0


def _build(args: argparse.Namespace) -> int:
    """One `batchit build` with the watch's flags; an error is printed, not raised."""
    try:
        code = commands.build(args)
    except BatchitError as exc:
        print(f"batchit: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _say(line: str) -> None:
    print(line, flush=True)
