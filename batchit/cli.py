"""The `batchit` command line (a first stub: loads and validates the config)."""

from __future__ import annotations

import argparse
import os
import sys

from batchit.errors import BatchitError


def main(argv: list[str] | None = None) -> int:
    """Run the `batchit` command and return its exit code."""
    parser = argparse.ArgumentParser(prog="batchit")
    parser.add_argument("-C", dest="directory")
    parser.add_argument("-f", dest="file", default="batchit.yaml")
    parser.add_argument("command")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.directory:
            os.chdir(args.directory)
        from pathlib import Path

        from batchit.config import load_config

        load_config(Path.cwd(), args.file)
    except BatchitError as exc:
        print(f"batchit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
