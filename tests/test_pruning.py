"""Pruning and cleaning remove only what batchit wrote, and only inside `out` (SPEC sections 3 and 8).

An output a current job produces is never pruned, whatever rule recorded it; a partial build prunes
nothing another rule may produce; a blocked job keeps its output; a changed `out` owns nothing yet;
and a folder replaced by a symlink, a directory or a FIFO where an output was, is never deleted, read
or overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Project


def summary(project: Project) -> dict[str, int]:
    """The latest run's summary counts."""
    counts: dict[str, int] = project.manifest()["summary"]
    return counts


def recorded(project: Project) -> dict[str, str]:
    """The latest manifest's outputs: path -> the rule that produces it."""
    return {o["path"]: o["rule"] for o in project.manifest()["outputs"]}


SUB_OUTPUTS = """\
version: 1
out: _build
rules:
  outs:
    inputs: ["src/**/*.txt"]
    output: "{path}.out"
    steps:
      - file.copy: {}
"""


@pytest.fixture
def victim(project: Project, tmp_path: Path) -> Path:
    """A folder outside the project holding a.out, linked in place of the built `_build/sub`."""
    project.config(SUB_OUTPUTS)
    project.write({"src/sub/a.txt": "a\n", "src/b.txt": "b\n"})
    project.build()
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "a.out").write_text("precious\n")
    for path in (project.root / "_build/sub").iterdir():
        path.unlink()
    (project.root / "_build/sub").rmdir()
    (project.root / "_build/sub").symlink_to(outside)
    return outside / "a.out"


def test_clean_never_deletes_through_a_symlinked_folder(project: Project, victim: Path) -> None:
    result = project.run("clean")
    assert result.code == 2, result.describe()
    assert "_build/sub/a.out" in result.stderr and "symlink" in result.stderr, result.describe()
    assert victim.read_text() == "precious\n"
    assert not (project.root / "_build/b.out").exists()


def test_pruning_never_deletes_through_a_symlinked_folder(project: Project, victim: Path) -> None:
    (project.root / "src/sub/a.txt").unlink()
    result = project.build()
    assert "_build/sub/a.out" in result.stderr and "symlink" in result.stderr, result.describe()
    assert victim.read_text() == "precious\n"
    assert summary(project)["pruned"] == 0


@pytest.fixture
def built(project: Project) -> Project:
    """SUB_OUTPUTS built over src/b.txt: `_build/b.out` is batchit's."""
    project.config(SUB_OUTPUTS)
    project.write({"src/b.txt": "b\n"})
    project.build()
    (project.root / "_build/b.out").unlink()
    return project


def make_dir(path: Path) -> None:
    """Put a directory holding a user's file at `path`."""
    path.mkdir()
    (path / "mine.txt").write_text("mine\n")


@pytest.mark.parametrize("make", [make_dir, os.mkfifo], ids=["directory", "fifo"])
def test_a_non_file_at_an_output_path_is_refused_by_plan_and_build_even_with_overwrite(
    built: Project, make: object
) -> None:
    make(built.root / "_build/b.out")  # type: ignore[operator]
    for command in (("plan",), ("build", "--no-progress"), ("build", "--no-progress", "--overwrite")):
        result = built.run(*command, timeout=30)
        assert result.code == 2, result.describe()
        assert "_build/b.out" in result.stderr and "not a regular file" in result.stderr, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
    assert not (built.root / ".batchit/quarantine").exists()


@pytest.mark.parametrize("make", [make_dir, os.mkfifo], ids=["directory", "fifo"])
def test_clean_and_prune_leave_a_non_file_at_an_output_path(built: Project, make: object) -> None:
    make(built.root / "_build/b.out")  # type: ignore[operator]
    result = built.run("clean", timeout=30)
    assert result.code == 2 and "Traceback" not in result.stderr, result.describe()
    assert "_build/b.out" in result.stderr and "not a regular file" in result.stderr, result.describe()
    (built.root / "src/b.txt").unlink()
    result = built.build()
    assert "_build/b.out" in result.stderr and "not a regular file" in result.stderr, result.describe()
    assert not (built.root / ".batchit/build-in-progress").exists()
    assert (built.root / "_build/b.out").exists()
