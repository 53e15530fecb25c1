"""`batchit reconcile` (SPEC section 4): sources now vs the last manifest vs the files in `out`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import COPY_AND_UPPER, TOOLS, Project


@pytest.fixture
def built(copies: Project) -> Project:
    """Three text files copied into `_build`, built once."""
    copies.build()
    return copies


def reconciled(project: Project, expect: int) -> dict[str, Any]:
    """Run `reconcile --json`, check its exit code, and return what it found."""
    result = project.run("reconcile", "--json")
    assert result.code == expect, result.describe()
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def paths(found: dict[str, Any], kind: str) -> list[str]:
    """The paths of one kind of finding."""
    return [f["path"] for f in found[kind]]


def test_reconcile_finds_nothing_after_a_build(built: Project) -> None:
    found = reconciled(built, 0)
    assert found["missing"] == found["orphans"] == found["modified"] == found["duplicates"] == []
    assert "reconcile: ok" in built.run("reconcile").stdout


def test_reconcile_finds_a_missing_output(built: Project) -> None:
    (built.root / "_build/sub/c.txt").unlink()
    assert paths(reconciled(built, 1), "missing") == ["sub/c.txt"]


def test_reconcile_finds_an_output_a_new_source_calls_for(built: Project) -> None:
    built.write({"src/d.txt": "delta\n"})
    found = reconciled(built, 1)
    assert paths(found, "missing") == ["d.txt"]
    assert "not built yet" in found["missing"][0]["detail"]


def test_reconcile_finds_an_orphan_but_not_the_manifest_copies(built: Project) -> None:
    built.write({"_build/stray.html": "<p>left over</p>\n"})
    found = reconciled(built, 1)
    assert paths(found, "orphans") == ["stray.html"]
    text = built.run("reconcile")
    assert "orphan: _build/stray.html" in text.stdout


def test_reconcile_finds_an_output_whose_source_is_gone(built: Project) -> None:
    (built.root / "src/b.txt").unlink()
    found = reconciled(built, 1)
    assert paths(found, "orphans") == ["b.txt"]
    assert "in the last manifest" in found["orphans"][0]["detail"]


def test_reconcile_finds_a_modified_output(built: Project) -> None:
    (built.root / "_build/a.txt").write_text("ALPHA\n")
    found = reconciled(built, 1)
    assert paths(found, "modified") == ["a.txt"]
    assert found["missing"] == found["orphans"] == []


def test_reconcile_lists_duplicated_content_as_information(built: Project) -> None:
    built.write({"src/twin.txt": "alpha\n"})
    built.build()
    found = reconciled(built, 0)
    assert [d["paths"] for d in found["duplicates"]] == [["a.txt", "twin.txt"]]
    assert "same content" in built.run("reconcile").stdout


@pytest.mark.parametrize("built_before", [True, False], ids=["after-clean", "never-built"])
def test_an_aggregate_over_another_rule_is_missing_as_any_output_is(
    project: Project, built_before: bool
) -> None:
    """Its key waits for the outputs it reads, but its name does not: a rule still produces it."""
    project.config(COPY_AND_UPPER)
    project.write({"tools.py": TOOLS, "src/a.txt": "a\n", "src/b.txt": "b\n"})
    if built_before:
        project.build()
        assert project.run("clean").code == 0
    found = reconciled(project, 1)
    assert "index.txt" in paths(found, "missing")
    assert len(found["missing"]) == 5  # two copies, two transforms, the aggregate
    assert all("a rule produces it" in finding["detail"] for finding in found["missing"])
