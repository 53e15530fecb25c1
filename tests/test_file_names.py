"""Awkward file names. One batchit cannot record: a name that is not valid UTF-8 (SPEC section 3 keys
and records paths as UTF-8); a matching one stops the build before anything is written. And names as
long as a file name may be, which batchit's own files beside them (temporary files, logs, quarantine
reasons) must not push over the limit."""

from __future__ import annotations

import json
import os

import pytest
from conftest import COPY_CONFIG, PICKY, PICKY_MODULE, THREE_SOURCES, Project


def make_undecodable(project: Project, name: bytes) -> None:
    """Create a file whose name holds bytes that are not UTF-8 (which `Project.write` cannot)."""
    with open(os.fsencode(project.root) + b"/" + name, "wb") as handle:
        handle.write(b"junk\n")


def test_an_input_whose_name_is_not_utf8_exits_2_naming_it_and_writes_nothing(copies: Project) -> None:
    copies.build()
    make_undecodable(copies, b"src/\xff.txt")
    before = copies.recorded()
    for command in (("plan",), ("build", "--no-progress")):
        result = copies.run(*command)
        assert result.code == 2, result.describe()
        assert "src/\\xff.txt" in result.stderr, result.describe()
        assert "not valid UTF-8" in result.stderr and "rename" in result.stderr, result.describe()
    assert copies.recorded() == before


def test_a_name_no_glob_matches_or_an_exclude_covers_is_ignored(project: Project) -> None:
    project.config(
        COPY_CONFIG.replace('output: "{path}.txt"', 'exclude: ["src/*.bad.txt"]\n    output: "{path}.txt"')
    )
    project.write(THREE_SOURCES)
    make_undecodable(project, b"src/\xff.dat")
    make_undecodable(project, b"src/\xfe.bad.txt")
    project.build()
    assert project.manifest()["summary"]["built"] == 3


def test_an_output_whose_name_is_as_long_as_a_file_name_may_be_builds(project: Project) -> None:
    """The temporary file written beside it is named within the same limit (255 bytes)."""
    project.config(COPY_CONFIG)
    name = "é" * 100 + "x" * 51 + ".txt"  # 255 bytes: the input's name, and the output's
    project.write({f"src/{name}": "long\n"})
    project.build()
    assert project.read(f"_build/{name}") == "long\n"
    assert len(name.encode()) == 255


def test_a_failing_input_with_the_longest_name_is_quarantined_with_its_reason_and_log(
    project: Project,
) -> None:
    """The reason file and the job's log take names of their own when `.reason.json` or `.log`
    would make them too long."""
    project.config(COPY_CONFIG.replace("file.copy: {}", 'shell: {argv: [sh, -c, "echo why >&2; exit 3"]}'))
    name = "é" * 100 + "x" * 51 + ".txt"
    project.write({f"src/{name}": "long\n"})
    project.build(expect=1)
    [held] = json.loads(project.run("quarantine", "list", "--json").stdout)
    assert held["input"] == f"src/{name}" and "exit" in held["message"]
    quarantined = project.root / ".batchit/quarantine/copy/src"
    assert sorted(p.suffix for p in quarantined.iterdir()) == [".json", ".txt"]
    [log] = (project.root / ".batchit/runs").glob("*/logs/*.log")
    assert "why" in log.read_text()

    assert project.run("quarantine", "release").code == 0
    assert not quarantined.exists(), "the copy and its reason are gone"


def test_the_report_links_the_log_of_a_job_whose_output_name_holds_a_hash_sign(project: Project) -> None:
    """A '#' (or '?', or a space) in a link starts a fragment (a query, ...) unless it is escaped."""
    project.config(PICKY)
    project.write({"picky.py": PICKY_MODULE, "in/x#y.txt": "fine\n"})
    project.build()
    runs = project.root / ".batchit" / "runs"
    run = runs / (runs / "LATEST").read_text().strip()
    assert (run / "logs/x#y.txt.log").is_file()
    report = (run / "report.html").read_text(encoding="utf-8")
    assert 'href="logs/x%23y.txt.log"' in report


@pytest.mark.parametrize(
    ("pattern", "built"),
    [("src[!a]x/*.txt", []), ("src/[!a].txt", ["^.txt", "b.txt"]), ("src/[^a].txt", ["^.txt", "a.txt"])],
    ids=["negation-never-crosses-a-slash", "negation", "a-leading-caret-is-one-of-the-set"],
)
def test_a_bracket_in_a_glob_matches_one_character_of_one_segment(
    project: Project, pattern: str, built: list[str]
) -> None:
    project.config(COPY_CONFIG.replace('"src/**/*.txt"', f'"{pattern}"').replace('"{path}.txt"', '"{name}"'))
    project.write({"src/x/a.txt": "x\n", "src/a.txt": "a\n", "src/b.txt": "b\n", "src/^.txt": "^\n"})
    result = project.run("plan", "--json")
    assert result.code == 0, result.describe()
    assert sorted(job["output"] for job in json.loads(result.stdout)["jobs"]) == [
        f"_build/{b}" for b in built
    ]


def test_clean_orphans_removes_a_file_whose_name_is_not_utf8_and_records_the_clean(copies: Project) -> None:
    copies.build()
    make_undecodable(copies, b"_build/stray\xff.txt")  # no rule made it: an orphan, and no record names it
    found = copies.run("reconcile")
    assert found.code == 1 and "orphan: _build/stray\\xff.txt" in found.stdout, found.describe()
    dry = copies.run("clean", "--orphans", "--dry-run")
    assert dry.code == 0 and "would remove _build/stray\\xff.txt" in dry.stdout, dry.describe()
    result = copies.run("clean", "--orphans")
    assert result.code == 0, result.describe()
    assert "removed _build/stray\\xff.txt" in result.stdout, result.describe()
    assert not os.path.lexists(os.fsencode(copies.root) + b"/_build/stray\xff.txt")
    audit = (copies.root / ".batchit/audit.log").read_text().splitlines()
    entry = json.loads(audit[-1])
    assert (entry["kind"], entry["details"]["first"]) == ("clean", ["stray\\xff.txt"]), entry
    assert copies.run("audit", "verify").code == 0
    assert copies.read("_build/a.txt") == THREE_SOURCES["src/a.txt"]
