"""This repository's own doit file: lint and type-check batchit incrementally, and build the demo site.

    .venv/bin/python -m doit            # the default task: the demo site
    .venv/bin/python -m doit lint typecheck

`lint` has one sub-task per Python file, so doit re-lints only the files that changed, as doit's own
dodo.py lints itself; `Blake3Checker` makes doit compare file contents by BLAKE3, as batchit does.
`site` is `batchit.doit.tasks("site")`: one doit sub-task per batchit job of the demo site, sharing
batchit's state, so `batchit -C site build` and `doit site` each find what the other built.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batchit.doit import Blake3Checker, tasks

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
"""The tools of the environment doit runs in (the project's .venv)."""
SKIP_DIRS = frozenset({".venv", ".git", "build", "dist", "node_modules", "_build", ".batchit", ".work"})

DOIT_CONFIG: dict[str, Any] = {
    "default_tasks": ["site"],
    "verbosity": 2,
    "check_file_uptodate": Blake3Checker,
}


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


task_site = tasks("site")
"""The demo site: one sub-task per batchit job (`doit list --all`), then `site:_record`."""
