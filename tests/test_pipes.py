"""A reader that stops early (`batchit build | head`) changes nothing about the build (SPEC sections 4, 5).

The build's streams go to a pipe whose read end is closed before batchit starts, as when `head` has
already exited: every write to them fails with EPIPE, deterministically, with no race against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import NamedTuple

import pytest
from conftest import Project, Result


def run_unread(project: Project, args: list[str], *, stdout_unread: bool, stderr_unread: bool) -> Result:
    """Run `python -m batchit ARGS` with the chosen streams on a pipe nobody reads any more; the
    other streams are captured."""
    reader, unread = os.pipe()
    os.close(reader)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "batchit", *args],
            cwd=project.root,
            stdin=subprocess.DEVNULL,
            stdout=unread if stdout_unread else subprocess.PIPE,
            stderr=unread if stderr_unread else subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(unread)
    return Result(proc.returncode, proc.stdout or "", proc.stderr or "")


class Unread(NamedTuple):
    """A build whose output is partly or wholly unread, and the exit code its own outcome gives."""

    args: list[str]
    stdout_unread: bool
    stderr_unread: bool
    code: int


CASES = {
    "text-both-streams": Unread(["build", "--no-progress"], True, True, 1),
    "json-log-lines": Unread(["build", "--log-format", "json"], False, True, 1),
    "summary-on-stdout": Unread(["build", "--no-progress"], True, False, 1),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_unread_output_neither_stops_a_build_nor_changes_its_exit_code(picky: Project, case: Unread) -> None:
    result = run_unread(picky, case.args, stdout_unread=case.stdout_unread, stderr_unread=case.stderr_unread)
    assert result.code == case.code, result.describe()
    assert "Traceback" not in result.stdout + result.stderr
    manifest = picky.manifest()
    assert manifest["summary"]["built"] == 2
    assert manifest["summary"]["quarantined"] == 1
    assert {o["path"] for o in manifest["outputs"]} == {"a.txt", "c.txt"}
    checked = picky.run("audit", "verify")
    assert checked.code == 0, checked.describe()
    assert "2 entries" in checked.stdout  # the quarantine, then the run


def test_a_successful_build_with_unread_stdout_exits_0_without_a_traceback(copies: Project) -> None:
    result = run_unread(copies, ["build", "--no-progress"], stdout_unread=True, stderr_unread=False)
    assert result.code == 0, result.describe()
    assert result.stderr == ""
    assert copies.manifest()["summary"]["built"] == 3


def test_a_build_after_an_unread_one_keeps_the_audit_chain_whole(picky: Project) -> None:
    run_unread(picky, ["build", "--no-progress"], stdout_unread=True, stderr_unread=True)
    picky.write({"in/b.txt": "better\n"})
    picky.build()
    checked = picky.run("audit", "verify")
    assert checked.code == 0, checked.describe()
    assert "3 entries" in checked.stdout
