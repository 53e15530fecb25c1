"""The `batchit` argument parser: every command and flag, and which function runs each command.

A command's handler is named, not imported ("commands:build" is `batchit.cli.commands.build`), so
parsing imports nothing but argparse: `batchit --help` starts fast, and a command imports only the
modules it uses (watchdog only for `watch`, the engine only for commands that build or plan).
"""

from __future__ import annotations

import argparse
from typing import Any

from batchit import __version__
from batchit.errors import BuildInterrupted
from batchit.model import MOST_WORKERS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command (SPEC section 4)."""
    parser = argparse.ArgumentParser(prog="batchit", description="Declarative, incremental batch processing.")
    parser.add_argument("--version", action="version", version=f"batchit {__version__}")
    parser.add_argument(
        "-C",
        dest="directories",
        action="append",
        default=[],
        metavar="DIR",
        help="change into DIR first, like git -C (each one relative to the one before)",
    )
    parser.add_argument("-f", dest="file", default="batchit.yaml", metavar="FILE", help="config file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser("build", help="build everything, or the named rules and what they need")
    _build_flags(build)
    build.add_argument("--dry-run", action="store_true", help="show what would be done, change nothing")
    build.set_defaults(handler="commands:build")

    plan = sub.add_parser("plan", help="what a build would do and why (same as build --dry-run)")
    _build_flags(plan)
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(handler="commands:plan", dry_run=True)

    explain = sub.add_parser("explain", help="why an output is or is not up to date")
    explain.add_argument("path", help="output path, relative to `out` (or to the project)")
    explain.add_argument("--flag", action="append", default=[], metavar="NAME=VALUE")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(handler="commands:explain")

    quarantine = sub.add_parser("quarantine", help="inputs set aside after a permanent failure")
    actions = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="show quarantined inputs and why")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler="commands:quarantine_list")
    release = actions.add_parser("release", help="let quarantined inputs be built again")
    release.add_argument("path", nargs="?", help="input path relative to the project root (default: all)")
    release.set_defaults(handler="commands:quarantine_release")

    replay = sub.add_parser("replay", help="re-run a past run's jobs with its seed and settings")
    replay.add_argument("run_id", metavar="RUN_ID")
    replay.add_argument("--failed", action="store_true", help="only the jobs that failed in that run")
    replay.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    replay.add_argument("--log-format", choices=["text", "json"], default="text")
    replay.set_defaults(handler="commands:replay")

    clean = sub.add_parser("clean", help="remove batchit's outputs")
    clean.add_argument("--orphans", action="store_true", help="only files in `out` that no rule produces")
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed")
    clean.set_defaults(handler="commands:clean")
    _record_commands(sub)
    _watch_command(sub)
    _serve_command(sub)
    return parser


def _record_commands(sub: Any) -> None:
    """The commands about run records (`batchit.cli.records`)."""
    keygen = sub.add_parser("keygen", help="create the Ed25519 signing key pair")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(handler="records:keygen")

    verify = sub.add_parser("verify", help="check a run's signature and re-hash its outputs")
    verify.add_argument("manifest", nargs="?", metavar="MANIFEST", help="default: the latest run's")
    verify.add_argument(
        "--key", action="append", default=[], metavar="PUBKEY", help="trusted public key (repeatable)"
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(handler="records:verify")

    reconcile = sub.add_parser("reconcile", help="sources vs the last manifest vs the files in out")
    reconcile.add_argument("--json", action="store_true", help="machine-readable output")
    reconcile.set_defaults(handler="records:reconcile")

    runs = sub.add_parser("runs", help="list past runs")
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    runs.set_defaults(handler="records:runs")

    report = sub.add_parser("report", help="re-render a run's report and print its path")
    report.add_argument("run_id", nargs="?", metavar="RUN_ID", help="default: the latest run")
    report.set_defaults(handler="records:report")

    gc = sub.add_parser("gc", help="apply runs.keep and cache.max_size now")
    gc.set_defaults(handler="records:gc")

    audit = sub.add_parser("audit", help="the audit log")
    audit_actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    audit_verify = audit_actions.add_parser("verify", help="check the audit log's hash chain")
    audit_verify.set_defaults(handler="records:audit")


def _watch_command(sub: Any) -> None:
    """`watch` (`batchit.cli.watch`): the build flags plus `--debounce MS`."""
    watch = sub.add_parser("watch", help="rebuild on every change, debounced; Ctrl-C stops")
    _build_flags(watch)
    watch.add_argument(
        "--debounce",
        type=_milliseconds,
        default=200,
        metavar="MS",
        help="wait until no change arrived for MS milliseconds before rebuilding (default: 200)",
    )
    watch.set_defaults(handler="watch:run", dry_run=False, second_signal_exit=0)  # Ctrl-C stops it


def _serve_command(sub: Any) -> None:
    """`serve` (`batchit.cli.serve`): the HTTP trigger API."""
    serve = sub.add_parser("serve", help="an HTTP API that queues builds and serves their records")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=8000, help="port to listen on (default: 8000; 0 picks a free one)"
    )
    serve.set_defaults(handler="serve:run")


def _build_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rules", nargs="*", metavar="RULE", help="rules to build (default: all)")
    parser.add_argument(
        "-j", "--jobs", type=_worker_count, metavar="N", help="worker count (default: config `jobs`)"
    )
    parser.add_argument(
        "--executor",
        type=_executor,
        default=("local", None),
        metavar="local|thread|dask[=ADDRESS]",
        help="local (default): processes for cpu rules, threads for io rules; thread: threads for all; "
        "dask: cpu rules on the Dask scheduler at ADDRESS (tcp://host:port), or on a local cluster of "
        "-j workers started for the build; io rules stay in this process",
    )
    going = parser.add_mutually_exclusive_group()
    going.add_argument(
        "--keep-going", dest="fail_fast", action="store_false", help="finish every job (default)"
    )
    going.add_argument("--fail-fast", dest="fail_fast", action="store_true", help="stop at the first failure")
    parser.set_defaults(fail_fast=False)  # keep going unless asked (both flags share the destination)
    parser.set_defaults(second_signal_exit=BuildInterrupted.exit_code)  # a second Ctrl-C exits at once
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
        "--sample",
        default=None,
        metavar="COUNT|FRACTION",
        help="build only the jobs of a deterministic sample of the inputs: 50, 0.05 or 5%%; prunes nothing",
    )
    parser.add_argument(
        "--out",
        dest="sample_out",
        default=None,
        metavar="DIR",
        help="with --sample: build into DIR, with a state of its own, instead of into `out`",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed for retry jitter (default: fresh) and --sample (default: 0)",
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


def _executor(text: str) -> tuple[str, str | None]:
    """`--executor`: the executor's kind, and the Dask scheduler's address for `dask=ADDRESS`."""
    kind, equals, address = text.partition("=")
    if kind == "dask" and (address or not equals):
        return kind, address or None
    if kind in ("local", "thread") and not equals:
        return kind, None
    raise argparse.ArgumentTypeError(
        f"{text!r} is not local, thread, dask or dask=ADDRESS (as in dask=tcp://10.0.0.5:8786)"
    )


def _worker_count(text: str) -> int:
    value = _positive_int(text)
    if value > MOST_WORKERS:
        raise argparse.ArgumentTypeError(f"must be at most {MOST_WORKERS}")
    return value


def _batch_size(text: str) -> int | None:
    return None if text == "auto" else _positive_int(text)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0 to 65535")
    return value


LONGEST_DEBOUNCE_MS = 3_600_000
"""The longest quiet time `watch --debounce` waits for (a larger one overflows the clock's waits)."""


def _milliseconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of milliseconds") from None
    if not 0 <= value <= LONGEST_DEBOUNCE_MS:
        raise argparse.ArgumentTypeError(f"must be 0 to {LONGEST_DEBOUNCE_MS} (an hour)")
    return value
