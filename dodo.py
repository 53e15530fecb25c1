"""This repository's own doit file: lint and type-check batchit incrementally, and build the demo site.

    .venv/bin/python -m doit            # the default task: the demo site
    .venv/bin/python -m doit lint typecheck

`lint` has one sub-task per Python file, so doit re-lints only the files that changed, as doit's own
dodo.py lints itself. The `site` task runs the `batchit` CLI for now; it moves to
`task_site = batchit.doit.tasks("site")` (one doit sub-task per batchit job, sharing batchit's state)
when that integration lands.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit.action import CmdAction

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
"""The tools of the environment doit runs in (the project's .venv)."""
SKIP_DIRS = frozenset({".venv", ".git", "build", "dist", "node_modules", "_build", ".batchit", ".work"})

SITE_BUILD = [str(BIN / "batchit"), "-C", "site", "build", "--no-progress"]
"""The demo site's build: the README's main command, without a progress bar."""

DOIT_CONFIG: dict[str, Any] = {"default_tasks": ["site"], "verbosity": 2}


def python_files() -> list[Path]:
    """The repository's Python files, repository-relative and sorted, outside environments and outputs."""
    return sorted(
        path.relative_to(ROOT)
        for path in ROOT.rglob("*.py")
        if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts)
    )


def task_lint() -> Iterator[dict[str, Any]]:
    """ruff check, one sub-task per Python file (re-run only when that file changes)."""
    config = "pyproject.toml"
    for path in python_files():
        yield {
            "name": path.as_posix(),
            "actions": [[str(BIN / "ruff"), "check", str(path)]],
            "file_dep": [str(path), config],
        }


def task_typecheck() -> dict[str, Any]:
    """mypy --strict over the batchit package (configured in pyproject.toml)."""
    sources = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "batchit").rglob("*.py"))
    return {
        "actions": [[str(BIN / "mypy")]],
        "file_dep": [*sources, "pyproject.toml"],
    }


def task_site() -> dict[str, Any]:
    """Build the demo site in site/ with the batchit CLI (batchit decides what is up to date)."""
    return {
        "actions": [CmdAction(SITE_BUILD, cwd=str(ROOT), shell=False)],
        "uptodate": [False],
        "verbosity": 2,
    }
