"""`build --sample COUNT|FRACTION --seed N`: a deterministic canary of the inputs (SPEC section 10)."""

from __future__ import annotations

import json

import pytest
from blake3 import blake3

from tests.conftest import Project

CHAIN = """\
version: 1
rules:
  copy:
    inputs: ["src/**/*.txt"]
    output: "{path}.txt"
    steps:
      - file.copy: {}
  shout:
    inputs: {rule: copy}
    output: "loud/{path}.txt"
    steps:
      - text.load: {}
      - text.replace: {pattern: "file", replacement: "FILE"}
  index:
    inputs: {rule: copy}
    aggregate: true
    output: index.txt
    steps:
      - python: {function: "join:join", version: "1"}
"""
"""A 1:1 rule, a rule reading its outputs, and an aggregate of them."""

JOIN = """\
def join(value, ctx):
    return "".join(path.read_text() for path in value)
"""

INPUTS = [f"src/{folder}/f{n}.txt" for folder in ("a", "b") for n in range(6)]


@pytest.fixture
def chain(project: Project) -> Project:
    """Twelve inputs in two folders, copied, shouted and indexed."""
    project.config(CHAIN)
    project.write({"join.py": JOIN, **{path: f"file {path}\n" for path in INPUTS}})
    return project


def lowest(paths: list[str], seed: int, count: int) -> list[str]:
    """The sample SPEC section 10 defines: the inputs with the lowest BLAKE3 of seed and path."""
    return sorted(paths, key=lambda path: blake3(f"{seed}:{path}".encode()).hexdigest())[:count]


def built(project: Project) -> set[str]:
    """The outputs under `_build` (the record's own files aside)."""
    return {
        path.relative_to(project.root / "_build").as_posix()
        for path in (project.root / "_build").rglob("*")
        if path.is_file() and not path.name.startswith("batchit-manifest")
    }


def test_a_sample_builds_the_inputs_with_the_lowest_hash_of_seed_and_path(chain: Project) -> None:
    chain.build("--sample", "3", "--seed", "7")

    stems = {path.removeprefix("src/") for path in lowest(INPUTS, 7, 3)}  # a/f1.txt ...
    assert built(chain) == stems | {f"loud/{s}" for s in stems}
    assert chain.manifest()["summary"]["built"] == 6


def test_the_same_sample_again_builds_nothing_and_another_seed_picks_others(chain: Project) -> None:
    chain.build("--sample", "2")
    again = chain.build("--sample", "2")
    other = chain.build("--sample", "2", "--seed", "1")

    assert "4 up to date" in again.stdout
    assert lowest(INPUTS, 0, 2) != lowest(INPUTS, 1, 2)
    stems = {p.removeprefix("src/") for p in lowest(INPUTS, 0, 2) + lowest(INPUTS, 1, 2)}
    assert {p for p in built(chain) if not p.startswith("loud/")} == stems
    assert "built" in other.stdout


@pytest.mark.parametrize(("size", "count"), [("25%", 3), ("0.25", 3), ("0.01", 1), ("100%", 12), ("50", 12)])
def test_a_fraction_rounds_up_and_a_count_stops_at_every_input(chain: Project, size: str, count: int) -> None:
    chain.build("--sample", size, "copy")

    assert len(built(chain)) == count  # of `copy` alone: `shout` and `index` are not selected


def test_a_sample_holds_aggregates_and_prunes_nothing(chain: Project) -> None:
    chain.build()
    index = chain.read("_build/index.txt")
    for path in INPUTS[:6]:
        chain.write({path: f"edited {path}\n"})
    (chain.root / INPUTS[-1]).unlink()

    chain.build("--sample", "50%")

    assert chain.read("_build/index.txt") == index  # an index of half the inputs would replace it
    assert (chain.root / "_build/b/f5.txt").exists()  # its input is gone, but a sample prunes nothing
    plan = json.loads(chain.run("plan", "--json").stdout)
    assert {job["output"] for job in plan["jobs"] if job["action"] == "run"} >= {"_build/index.txt"}
    chain.build()
    assert not (chain.root / "_build/b/f5.txt").exists()


def test_plan_with_a_sample_says_why_the_aggregate_is_held(chain: Project) -> None:
    plan = json.loads(chain.run("plan", "--sample", "1", "--json").stdout)

    actions = {job["output"]: job for job in plan["jobs"]}
    assert len(actions) == 3  # one copy, its shout, and the index
    assert actions["_build/index.txt"]["action"] == "held"
    assert "--sample" in actions["_build/index.txt"]["reasons"][0]


@pytest.mark.parametrize("size", ["0", "-1", "0%", "150%", "1.5", "five", "1e3"])
def test_a_sample_size_that_is_no_count_or_fraction_exits_2(chain: Project, size: str) -> None:
    result = chain.run("build", "--sample", size)

    assert result.code == 2, result.describe()
    assert "--sample" in result.stderr and "fix:" in result.stderr
    assert not (chain.root / ".batchit").exists()


def test_a_sample_into_a_folder_of_its_own_builds_its_aggregates_and_leaves_the_build_alone(
    chain: Project,
) -> None:
    chain.build()
    before = {
        p: b for p, b in chain.snapshot("_build", ".batchit").items() if not p.endswith(("-wal", "-shm"))
    }

    chain.build("--sample", "2", "--out", "canary")

    picked = lowest(INPUTS, 0, 2)
    assert chain.read("canary/index.txt") == "".join(f"file {path}\n" for path in sorted(picked))
    assert {
        p.relative_to(chain.root / "canary").as_posix() for p in (chain.root / "canary").rglob("*.txt")
    } == {
        "index.txt",
        *(p.removeprefix("src/") for p in picked),
        *(f"loud/{p.removeprefix('src/')}" for p in picked),
    }
    after = chain.snapshot("_build", ".batchit")
    assert {p: b for p, b in after.items() if not p.startswith(".batchit/samples/") and p in before} == before
    assert chain.run("verify", "canary/batchit-manifest.json").code == 0  # signed by the project's key
    assert "5 up to date" in chain.build("--sample", "2", "--out", "canary").stdout  # 2 + 2 + the index
    assert "up to date" in chain.build().stdout and "built" not in chain.build().stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--out", "canary"], "--out DIR is where a sample is built"),
        (["--sample", "1", "--out", "_build"], "overlaps"),
        (["--sample", "1", "--out", "_build/sub"], "overlaps"),
        (["--sample", "1", "--out", ".batchit/x"], "overlaps"),
        (["--sample", "1", "--out", "../elsewhere"], "is not a path relative to the project root"),
        (["--sample", "1", "--out", "src/canary"], "may find inputs there"),
        (["--sample", "1", "--out", "join.py"], "not a folder"),
        (["--sample", "1", "--out", "canary "], "whitespace at the start or end of a folder name"),
    ],
    ids=["without-sample", "out", "inside-out", "state", "parent", "under-a-glob", "a-file", "padded"],
)
def test_a_sample_folder_that_would_mix_with_the_project_exits_2(
    chain: Project, args: list[str], says: str
) -> None:
    result = chain.run("build", "--no-progress", *args)

    assert result.code == 2, result.describe()
    assert says in result.stderr and "fix:" in result.stderr
    assert not (chain.root / ".batchit").exists()
