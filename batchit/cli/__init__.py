"""The `batchit` command line: parse arguments, run one command, map errors to exit codes.

Each command is a small function from parsed arguments to an exit code, imported only when it runs
(`batchit.cli.parser` names them); errors are BatchitError subclasses that carry their own exit
code, so no literal exit code hides in here.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from batchit.cli.parser import build_parser
from batchit.cli.streams import escaped_controls, pipe_safe_streams
from batchit.errors import BatchitError, BuildInterrupted, UsageError
from batchit.fsutil import shown_path
from batchit.state.opening import REFUSALS, as_failure

INTERRUPTED = BuildInterrupted.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the `batchit` command and return its exit code.

    A reader of its output that stops early (`| head`) changes nothing: the command runs to its end
    and its outcome decides the exit code (batchit.cli.streams).
    """
    with pipe_safe_streams(), _terminate_as_interrupt():
        return _run(argv)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI runner cancelling, `kill PID`) stops batchit as Ctrl-C does: exit 130 with a
    word, wherever it lands, instead of the silent exit 143 of an unhandled signal. A build's job
    loop installs its own handlers for both (batchit.execute.signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _ignore_further_stops() -> None:
    """Once batchit is exiting because it was interrupted, a further SIGINT or SIGTERM changes
    nothing: the exit code is 130 either way."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _run(argv: list[str] | None) -> int:
    """Parse the arguments, run the command's handler, and map its errors to exit codes. A stop
    signal while the arguments are parsed exits 130 like one later: no traceback."""
    argv = sys.argv[1:] if argv is None else argv
    args = argparse.Namespace(log_format="json" if _wants_json(argv) else "text")
    before = set(threading.enumerate())
    try:
        args = _parse(argv)
        args.started_in = _current_directory()
        for directory in args.directories:
            try:
                os.chdir(directory)
            except OSError as exc:
                raise UsageError(f"cannot change into {directory}: {exc.strerror}") from exc
        code = _handler(args.handler)(args)
    except REFUSALS as exc:
        code = report_error(args, as_failure(exc))
    except KeyboardInterrupt:
        _ignore_further_stops()  # a second Ctrl-C while this is said would print a traceback
        _say_error(args, "batchit: interrupted", {"message": "interrupted", "exit_code": INTERRUPTED})
        code = INTERRUPTED
    stray = [t for t in threading.enumerate() if t not in before and not t.daemon and t.is_alive()]
    if stray and code != INTERRUPTED:
        names = ", ".join(thread.name for thread in stray[:3]) + (", ..." if len(stray) > 3 else "")
        message = f"a step left {len(stray)} thread(s) running ({names}); batchit exits without them"
        if getattr(args, "log_format", "text") == "json":
            print(json.dumps({"event": "warning", "message": message}, sort_keys=True), file=sys.stderr)
        else:
            print(f"warning: {message}", file=sys.stderr)
    if code == INTERRUPTED or stray:
        # Jobs abandoned after the grace period may still occupy worker threads, and a step may
        # have started a thread of its own that never ends: an ordinary exit would wait for them.
        # Everything committed is already durable, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line. argparse writes its usage errors as text; under `--log-format json`
    such an error becomes one JSON object on stderr, as every other line batchit writes there."""
    if not _wants_json(argv):
        return build_parser().parse_args(argv)
    written = io.StringIO()
    try:
        with contextlib.redirect_stderr(written):
            return build_parser().parse_args(argv)
    except SystemExit as exc:
        lines = written.getvalue().strip().splitlines()
        if lines:  # argparse's last line says what is wrong; the usage lines before it are left out
            code = exc.code if isinstance(exc.code, int) else 2
            _say_error(argparse.Namespace(log_format="json"), "", {"message": lines[-1], "exit_code": code})
        raise


def _wants_json(argv: list[str]) -> bool:
    """True when the command line asks for `--log-format json` (told before it is parsed)."""
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return any(a == "--log-format=json" or (a == "--log-format" and b == "json") for a, b in pairs)


def _current_directory() -> Path | None:
    """Where the command was started (`batchit watch` restarts there); None when it is gone."""
    try:
        return Path.cwd()
    except OSError:
        return None


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    """The function a parser entry names ("commands:build"), importing only that command's module.

    That import creates most of the objects the process will ever hold (modules, classes,
    functions), all of which live until it exits. Scanning them again and again gains the garbage
    collector nothing, so it pauses while they are created, then ignores them (`gc.freeze`); a no-op
    build of a small project is ~20 ms faster, and a large build's full collections scan less.
    """
    module, _, function = name.partition(":")
    collecting = gc.isenabled()
    gc.disable()
    try:
        handler: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f"batchit.cli.{module}"), function
        )
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    return handler


def report_error(args: argparse.Namespace, exc: BatchitError) -> int:
    """Report an error the way the command's output format asks (`--log-format json`: one JSON
    object on stderr); return its exit code."""
    _say_error(args, f"batchit: error: {exc}", {"message": str(exc), "exit_code": exc.exit_code})
    return exc.exit_code


def _say_error(args: argparse.Namespace, text: str, fields: dict[str, str | int]) -> None:
    """Print an error for a person, or as one JSON object under `--log-format json`."""
    if getattr(args, "log_format", "text") == "json":
        text = json.dumps({"event": "error", **fields}, ensure_ascii=False, sort_keys=True)
    print(text, file=sys.stderr)


def one_line(text: str) -> str:
    """`text` with its control characters escaped (a newline as \\n), for a line of text output
    that names a file: a file name may hold a newline, which would split the line in two. Bytes of
    a name that are not UTF-8 are shown as `\\xff`, as every message shows them."""
    return escaped_controls(shown_path(text))


def print_json(value: object) -> None:
    """Write a JSON document to stdout.

    The top two levels are indented and each value below them takes one line (a job of `plan
    --json`, an output of `verify --json`): readable, easy to grep and diff, and written by the
    json module's C encoder, 100,000 jobs in about a second instead of ten.
    """
    sys.stdout.write(render_json(value))
    sys.stdout.write("\n")


def render_json(value: object, depth: int = 0) -> str:
    """`value` as JSON, its first two levels indented by two spaces, every deeper value on one line."""
    if depth >= 2 or not isinstance(value, dict | list) or not value:
        return json.dumps(value, ensure_ascii=False)
    pad = "  " * (depth + 1)
    if isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(str(key), ensure_ascii=False)}: {render_json(item, depth + 1)}"
            for key, item in value.items()
        ]
        opening, closing = "{", "}"
    else:
        items = [pad + render_json(v, depth + 1) for v in value]
        opening, closing = "[", "]"
    return f"{opening}\n" + ",\n".join(items) + f"\n{'  ' * depth}{closing}"


def project_root() -> Path:
    """The project root: the current directory (after -C)."""
    return Path.cwd()
