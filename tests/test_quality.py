"""The project's own linters, run as part of the suite so a red lint is a red build.

Each tool runs from the same environment as the tests (`sys.executable -m ...`, or the console script
installed beside it), on the repository root, with its configuration from `pyproject.toml`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a tool in the repository root and capture its combined output."""
    return subprocess.run(
        list(argv),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """The command, its exit code and its output, for an assertion message."""
    return f"$ {' '.join(proc.args)}\nexit {proc.returncode}\n{proc.stdout}"


def test_ruff_check_is_clean() -> None:
    proc = run_tool(sys.executable, "-m", "ruff", "check", ".")
    assert proc.returncode == 0, describe(proc)


def test_ruff_format_is_clean() -> None:
    proc = run_tool(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert proc.returncode == 0, describe(proc)


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    proc = run_tool(sys.executable, "-m", "mypy")
    assert proc.returncode == 0, describe(proc)


def test_import_layers_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), f"{lint_imports} is missing: pip install -e '.[test]'"
    proc = run_tool(str(lint_imports))
    assert proc.returncode == 0, describe(proc)
