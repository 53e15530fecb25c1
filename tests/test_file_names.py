"""Input file names batchit cannot record: a name that is not valid UTF-8 (SPEC section 3 keys and
records paths as UTF-8). A matching one stops the build before anything is written."""

from __future__ import annotations

import os

from conftest import COPY_CONFIG, THREE_SOURCES, Project


def make_undecodable(project: Project, name: bytes) -> None:
    """Create a file whose name holds bytes that are not UTF-8 (which `Project.write` cannot)."""
    with open(os.fsencode(project.root) + b"/" + name, "wb") as handle:
        handle.write(b"junk\n")


def recorded(project: Project) -> dict[str, bytes]:
    """`_build` and `.batchit`, but SQLite's -wal and -shm companions, which a read-only open of the
    state store may create (its content stays in state.db)."""
    return {
        k: v for k, v in project.snapshot("_build", ".batchit").items() if not k.endswith(("-wal", "-shm"))
    }


def test_an_input_whose_name_is_not_utf8_exits_2_naming_it_and_writes_nothing(copies: Project) -> None:
    copies.build()
    make_undecodable(copies, b"src/\xff.txt")
    before = recorded(copies)
    for command in (("plan",), ("build", "--no-progress")):
        result = copies.run(*command)
        assert result.code == 2, result.describe()
        assert "src/\\xff.txt" in result.stderr, result.describe()
        assert "not valid UTF-8" in result.stderr and "rename" in result.stderr, result.describe()
    assert recorded(copies) == before


def test_a_name_no_glob_matches_or_an_exclude_covers_is_ignored(project: Project) -> None:
    project.config(
        COPY_CONFIG.replace('output: "{path}.txt"', 'exclude: ["src/*.bad.txt"]\n    output: "{path}.txt"')
    )
    project.write(THREE_SOURCES)
    make_undecodable(project, b"src/\xff.dat")
    make_undecodable(project, b"src/\xfe.bad.txt")
    project.build()
    assert project.manifest()["summary"]["built"] == 3
