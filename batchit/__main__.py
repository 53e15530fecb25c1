"""`python -m batchit` is the same program as the `batchit` command: both run `main`."""

import signal
import sys
from types import FrameType

INTERRUPTED = 130
"""`BuildInterrupted.exit_code`, said before `batchit.errors` (and `typing`, which it imports) loads."""


def main() -> int:
    """Import the command line (batchit.cli) and run it; return its exit code.

    The import takes about a tenth of a second, in which a Ctrl-C printed a traceback and a SIGTERM
    ended the process unannounced: both now stop batchit there as they do later (SPEC section 7),
    with exit 130 and a word. The command line then installs its own handling (`batchit.cli.main`).
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        from batchit.cli import main as run_command_line
    except KeyboardInterrupt:
        print("batchit: interrupted", file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return run_command_line()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
