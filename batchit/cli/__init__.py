"""The `batchit` command line: parse arguments, run one command, map errors to exit codes.

Each command is a small function from parsed arguments to an exit code; errors are BatchitError
subclasses that carry their own exit code, so no literal exit code hides in here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from batchit import __version__
from batchit.errors import BatchitError, BuildInterrupted, UsageError

INTERRUPTED = BuildInterrupted.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the `batchit` command and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.directory:
            try:
                os.chdir(args.directory)
            except OSError as exc:
                raise UsageError(f"cannot change into {args.directory}: {exc.strerror}") from exc
        code: int = args.handler(args)
    except BatchitError as exc:
        _say_error(args, f"batchit: error: {exc}", {"message": str(exc), "exit_code": exc.exit_code})
        code = exc.exit_code
    except KeyboardInterrupt:
        _say_error(args, "batchit: interrupted", {"message": "interrupted", "exit_code": INTERRUPTED})
        code = INTERRUPTED
    if code == INTERRUPTED:
        # Jobs abandoned after the grace period may still occupy worker threads, which an ordinary
        # exit would wait for; everything committed is already durable, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _say_error(args: argparse.Namespace, text: str, fields: dict[str, str | int]) -> None:
    """Print an error for a person, or as one JSON object under `--log-format json`."""
    if getattr(args, "log_format", "text") == "json":
        text = json.dumps({"event": "error", **fields}, ensure_ascii=False, sort_keys=True)
    print(text, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command (SPEC section 4)."""
    from batchit.cli import commands, records, watch

    parser = argparse.ArgumentParser(prog="batchit", description="Declarative, incremental batch processing.")
    parser.add_argument("--version", action="version", version=f"batchit {__version__}")
    parser.add_argument("-C", dest="directory", metavar="DIR", help="change into DIR first, like git -C")
    parser.add_argument("-f", dest="file", default="batchit.yaml", metavar="FILE", help="config file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser("build", help="build everything, or the named rules and what they need")
    _build_flags(build)
    build.add_argument("--dry-run", action="store_true", help="show what would be done, change nothing")
    build.set_defaults(handler=commands.build)

    plan = sub.add_parser("plan", help="what a build would do and why (same as build --dry-run)")
    _build_flags(plan)
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(handler=commands.plan, dry_run=True)

    explain = sub.add_parser("explain", help="why an output is or is not up to date")
    explain.add_argument("path", help="output path, relative to `out` (or to the project)")
    explain.add_argument("--flag", action="append", default=[], metavar="NAME=VALUE")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(handler=commands.explain)

    quarantine = sub.add_parser("quarantine", help="inputs set aside after a permanent failure")
    actions = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="show quarantined inputs and why")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=commands.quarantine_list)
    release = actions.add_parser("release", help="let quarantined inputs be built again")
    release.add_argument("path", nargs="?", help="input path relative to the project root (default: all)")
    release.set_defaults(handler=commands.quarantine_release)

    replay = sub.add_parser("replay", help="re-run a past run's jobs with its seed and settings")
    replay.add_argument("run_id", metavar="RUN_ID")
    replay.add_argument("--failed", action="store_true", help="only the jobs that failed in that run")
    replay.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    replay.add_argument("--log-format", choices=["text", "json"], default="text")
    replay.set_defaults(handler=commands.replay)

    clean = sub.add_parser("clean", help="remove batchit's outputs")
    clean.add_argument("--orphans", action="store_true", help="only files in `out` that no rule produces")
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed")
    clean.set_defaults(handler=commands.clean)
    records.register(sub)
    watch.register(sub)
    return parser


def _build_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rules", nargs="*", metavar="RULE", help="rules to build (default: all)")
    parser.add_argument(
        "-j", "--jobs", type=_positive_int, metavar="N", help="worker count (default: config `jobs`)"
    )
    parser.add_argument(
        "--executor",
        choices=["local", "thread"],
        default="local",
        help="local: processes for cpu rules, threads for io rules; thread: threads for all",
    )
    going = parser.add_mutually_exclusive_group()
    going.add_argument(
        "--keep-going", dest="fail_fast", action="store_false", help="finish every job (default)"
    )
    going.add_argument("--fail-fast", dest="fail_fast", action="store_true", help="stop at the first failure")
    parser.set_defaults(fail_fast=False)  # keep going unless asked (both flags share the destination)
    parser.add_argument("--force", action="store_true", help="rebuild the selected jobs")
    parser.add_argument(
        "--no-cache", dest="use_cache", action="store_false", help="neither use nor fill the cache"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace files at output paths batchit did not write"
    )
    parser.add_argument(
        "--flag", action="append", default=[], metavar="NAME=VALUE", help="override a feature flag"
    )
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=None,
        metavar="N|auto",
        help="jobs sent to a worker at once (default: auto)",
    )
    parser.add_argument("--only-failed", action="store_true", help="retry only failed and quarantined jobs")
    parser.add_argument(
        "--strict", action="store_true", help="deferred jobs and a newly minted key fail the build"
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="N", help="seed for retry jitter (default: fresh)"
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _batch_size(text: str) -> int | None:
    return None if text == "auto" else _positive_int(text)


def print_json(value: object) -> None:
    """Write a JSON document to stdout (a reader that stops early, like `| head`, is no error)."""
    try:
        json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def project_root() -> Path:
    """The project root: the current directory (after -C)."""
    return Path.cwd()
