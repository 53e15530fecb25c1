"""When a quarantine ends (SPEC section 6): an input put back to the bytes its output was built from
is up to date again, so neither the manifest nor `quarantine list` may still hold it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PICKY, PICKY_MODULE, Project
from test_doit import DODO, doit


def batchit_build(project: Project, expect: int) -> None:
    """`batchit build`, which must exit `expect`."""
    project.build(expect=expect)


def doit_build(project: Project, expect: int) -> None:
    """`doit` in the folder above the project, which must succeed exactly when `expect` is 0."""
    result = doit(project)
    assert (result.code == 0) == (expect == 0), result.describe()


@pytest.mark.parametrize(
    "build",
    [batchit_build, pytest.param(doit_build, marks=pytest.mark.slow)],
    ids=["batchit", "doit"],
)
def test_an_input_reverted_to_its_built_bytes_leaves_quarantine(
    tmp_path: Path, build: Callable[[Project, int], None]
) -> None:
    (tmp_path / "dodo.py").write_text(DODO, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(PICKY)
    site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    build(site, 0)
    site.write({"in/b.txt": "bad\n"})
    build(site, 1)
    held = json.loads(site.run("quarantine", "list", "--json").stdout)
    assert [q["input"] for q in held] == ["in/b.txt"]
    site.write({"in/b.txt": "b\n"})  # back to the bytes _build/b.txt was built from
    build(site, 0)
    manifest = site.manifest()
    assert (manifest["status"], manifest["failures"]) == ("ok", [])
    assert json.loads(site.run("quarantine", "list", "--json").stdout) == []
    assert site.read("_build/b.txt") == "B\n"


def test_a_quarantined_inputs_key8_output_stays_until_the_input_is_fixed(project: Project) -> None:
    """Its `{key8}` name moved with the bad input, but the output built from the good one stays,
    as a failed job's output does under any name (a page's <img> keeps working)."""
    project.config(PICKY.replace('output: "{stem}.txt"', 'output: "{stem}-{key8}.txt"'))
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    project.build()
    [good] = [o["path"] for o in project.manifest()["outputs"] if o["path"].startswith("b-")]
    project.write({"in/b.txt": "bad\n"})
    for _ in range(2):  # the run that quarantines it, and one that holds it
        project.build(expect=1)
        assert project.manifest()["summary"]["pruned"] == 0
        assert project.read(f"_build/{good}") == "B\n"
        assert good in {o["path"] for o in project.manifest()["outputs"]}
        reconciled = project.run("reconcile")
        assert reconciled.code == 0, reconciled.describe()  # neither orphaned nor missing
        assert "would remove 0 file(s)" in project.run("clean", "--orphans", "--dry-run").stdout

    for attempt in range(3):  # each bad version claims a name it never writes: none of them stays
        project.write({"in/b.txt": f"bad {attempt}\n"})
        project.build(expect=1)
    with sqlite3.connect(project.root / ".batchit/state.db") as db:
        rows = db.execute("SELECT count(*) FROM outputs WHERE job_id = 'parse:in/b.txt'").fetchone()[0]
    assert rows == 2, "the output it built, and the claim of the latest attempt"

    project.write({"in/b.txt": "b2\n"})
    project.build()
    assert not (project.root / "_build" / good).exists(), "once it builds again, the old name goes"
    assert project.manifest()["summary"]["pruned"] == 1


def test_explain_of_a_quarantined_inputs_key8_output_says_it_stays(project: Project) -> None:
    """`plan` prunes none of it and builds keep it: `explain` may not say the next build removes it."""
    project.config(PICKY.replace('output: "{stem}.txt"', 'output: "{stem}-{key8}.txt"'))
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    project.build()
    [good] = [o["path"] for o in project.manifest()["outputs"] if o["path"].startswith("b-")]
    project.write({"in/b.txt": "bad\n"})
    project.build(expect=1)
    assert json.loads(project.run("plan", "--json").stdout)["prune"] == []
    result = project.run("explain", good, "--json")
    assert result.code == 0, result.describe()
    explained = json.loads(result.stdout)
    assert explained["action"] == "kept", explained
    assert not any("removes it" in reason for reason in explained["reasons"]), explained
    assert "its input is quarantined: it stays until its job builds again" in explained["reasons"][0]
    text = project.run("explain", good).stdout
    assert "stale (kept)" in text and "action key (none: no current job writes this path)" in text, text
    project.build(expect=1)
    assert project.read(f"_build/{good}") == "B\n"


def test_a_name_claimed_by_a_job_that_never_wrote_it_is_no_file_to_clean_prune_or_explain(
    project: Project,
) -> None:
    """A `{key8}` job claims its output's name before it runs; when its input is quarantined on the
    first build, nothing is ever written there, and no command may speak of removing it."""
    project.config(PICKY.replace('output: "{stem}.txt"', 'output: "{stem}-{key8}.txt"'))
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "bad\n"})
    project.build(expect=1)
    [built] = [path.name for path in (project.root / "_build").glob("a-*.txt")]

    cleaning = project.run("clean", "--dry-run")
    assert "b-" not in cleaning.stdout and "would remove 3 file(s)" in cleaning.stdout, cleaning.describe()
    (project.root / "in/b.txt").unlink()
    plan = json.loads(project.run("plan", "--json").stdout)
    assert plan["prune"] == [] and plan["summary"]["prune"] == 0
    claimed = [row[0] for row in sqlite3.connect(project.root / ".batchit/state.db").execute(
        "SELECT path FROM outputs WHERE blake3 IS NULL")]  # fmt: skip
    assert len(claimed) == 1
    assert project.run("explain", claimed[0]).code == 2  # no output: nothing to explain

    (project.root / "_build" / built).unlink()  # gone before clean: not reported as removed
    cleaned = project.run("clean")
    assert cleaned.code == 0 and "removed 2 file(s)" in cleaned.stdout and built not in cleaned.stdout


def test_a_held_output_someone_removed_leaves_the_record(project: Project) -> None:
    """It cannot be built again while its input is held; listing it would make `verify` fail on
    a tree nobody tampered with."""
    project.config(PICKY)
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    project.build()
    project.write({"in/b.txt": "bad\n"})
    project.build(expect=1)
    (project.root / "_build/b.txt").unlink()
    result = project.run("build", "--no-progress")
    assert result.code == 1 and "_build/b.txt is gone" in result.stdout + result.stderr, result.describe()
    assert [o["path"] for o in project.manifest()["outputs"]] == ["a.txt"]
    assert project.run("verify").code == 0
    project.write({"in/b.txt": "b2\n"})
    project.build()
    assert project.read("_build/b.txt") == "B2\n"


def test_an_input_quarantined_before_it_ever_built_is_not_reported_gone(project: Project) -> None:
    """Its output never existed, so there is nothing "gone" to warn about while it is held."""
    project.config(PICKY)
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "bad\n"})
    project.build(expect=1)
    held = project.run("build", "--no-progress")
    assert held.code == 1 and "stay quarantined" in held.stdout, held.describe()
    assert "gone" not in held.stdout + held.stderr, held.describe()


@pytest.mark.parametrize("rules", [("parse",), ("parse", "other")], ids=["its-rule", "every-rule"])
def test_a_deleted_quarantined_input_leaves_quarantine_with_a_build_of_its_rule(
    project: Project, rules: tuple[str, ...]
) -> None:
    """A build of some rules forgets the failures of their jobs that no longer exist, as it prunes
    their outputs; naming every rule is a full build."""
    other = '  other:\n    inputs: ["in/*.txt"]\n    output: "other/{stem}.txt"\n    steps: [file.copy: {}]\n'
    project.config(PICKY + other)
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "bad\n"})
    project.build(expect=1)
    (project.root / "in/b.txt").unlink()
    project.build(*rules)
    assert json.loads(project.run("quarantine", "list", "--json").stdout) == []
    assert (project.manifest()["status"], project.manifest()["failures"]) == ("ok", [])
    assert (project.root / "_build/other/b.txt").exists() == (rules == ("parse",))


def test_an_ended_quarantines_evidence_makes_way_for_a_new_one(project: Project) -> None:
    """The copy of a fixed input stays as evidence; when that path becomes a folder whose file is
    quarantined in turn, the old copy gives way instead of failing every build."""
    project.config(PICKY.replace('["in/*.txt"]', '["in/**/*.txt"]').replace('"{stem}.txt"', '"{path}.txt"'))
    project.write({"picky.py": PICKY_MODULE, "in/d.txt": "bad\n"})
    project.build(expect=1)
    project.write({"in/d.txt": "fixed\n"})
    project.build()
    (project.root / "in/d.txt").unlink()
    project.write({"in/d.txt/e.txt": "bad again\n"})
    for _ in range(2):
        project.build(expect=1)
        held = json.loads(project.run("quarantine", "list", "--json").stdout)
        assert [q["input"] for q in held] == ["in/d.txt/e.txt"]
    assert (project.root / ".batchit/quarantine/parse/in/d.txt/e.txt").read_text() == "bad again\n"


@pytest.mark.parametrize("path", ["in/nope.txt", "in/a.txt"], ids=["unknown-path", "input-not-quarantined"])
def test_a_refused_release_leaves_everything_as_it_was_even_the_lock_file(picky: Project, path: str) -> None:
    """`quarantine release` refused a path only after it had taken the project lock, which wrote its
    pid into `.batchit/lock`: a command that refuses changes nothing on disk."""
    picky.build(expect=1)  # in/b.txt is quarantined
    before = picky.recorded()
    refused = picky.run("quarantine", "release", path)
    assert refused.code == 2, refused.describe()
    assert f"{path} is not in quarantine" in refused.stderr and "in/b.txt" in refused.stderr
    assert picky.recorded() == before
