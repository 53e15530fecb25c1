"""`build --sample` at its edges, through the CLI: rule graphs, `--out DIR` and what follows a sample."""

from __future__ import annotations

import json

from tests.conftest import PICKY, PICKY_MODULE, Project
from tests.test_sample import CHAIN, INPUTS, JOIN, lowest

PUBLISHED = """\
  published:
    inputs: {rule: index}
    output: "pub/{name}"
    steps:
      - file.copy: {}
"""
"""A 1:1 rule reading the output of CHAIN's aggregate."""


def test_a_sample_into_out_holds_the_jobs_reading_a_held_aggregate(project: Project) -> None:
    project.config(CHAIN + PUBLISHED)
    project.write({"join.py": JOIN, **{path: f"file {path}\n" for path in INPUTS}})
    plan = json.loads(project.run("plan", "--sample", "1", "--json").stdout)
    actions = {job["output"]: job for job in plan["jobs"]}

    project.build("--sample", "1")  # the index does not exist yet: nothing may read it

    assert actions["_build/pub/index.txt"]["action"] == "held"
    assert "--sample" in actions["_build/pub/index.txt"]["reasons"][0]
    assert not (project.root / "_build/pub").exists()
    assert project.manifest()["summary"]["failed"] == 0
    project.build()
    assert project.read("_build/pub/index.txt") == "".join(f"file {path}\n" for path in sorted(INPUTS))


def test_a_sample_folder_that_a_rules_deps_reach_exits_2(project: Project) -> None:
    project.config(CHAIN.replace('output: "{path}.txt"', 'deps: ["conf/**"]\n    output: "{path}.txt"'))
    project.write({"join.py": JOIN, "conf/settings.yaml": "a: 1\n", INPUTS[0]: "file\n"})

    result = project.run("build", "--no-progress", "--sample", "1", "--out", "conf")

    assert result.code == 2, result.describe()  # else its outputs would be deps of every job
    assert "deps" in result.stderr and "fix:" in result.stderr
    assert not (project.root / ".batchit").exists()


def test_a_sample_of_another_config_into_its_own_folder_is_refused_as_a_build_is(project: Project) -> None:
    """The project's state belongs to batchit.yaml: other.yaml may not build there, a sample of
    it with a state of its own neither (README, Commands: one root holds the state of one config)."""
    project.config(CHAIN)
    project.write({"join.py": JOIN, "other.yaml": CHAIN, **{path: f"file {path}\n" for path in INPUTS}})
    project.build()

    result = project.run("-f", "other.yaml", "build", "--no-progress", "--sample", "1", "--out", "canary")

    assert result.code == 2, result.describe()
    assert "holds the state of batchit.yaml" in result.stderr
    assert not (project.root / "canary").exists()


def test_a_folder_of_its_own_holds_exactly_the_latest_sample_built_into_it(project: Project) -> None:
    """Another seed into the same DIR: the first sample's outputs go, and the index and the
    manifest there are the second sample's alone."""
    project.config(CHAIN)
    project.write({"join.py": JOIN, **{path: f"file {path}\n" for path in INPUTS}})
    project.build("--sample", "2", "--out", "canary")
    project.build("--sample", "2", "--seed", "1", "--out", "canary")

    picked = sorted(lowest(INPUTS, 1, 2))
    stems = {path.removeprefix("src/") for path in picked}
    copies = {
        p.relative_to(project.root / "canary").as_posix() for p in (project.root / "canary").rglob("*.txt")
    }
    assert copies == {"index.txt", *stems, *(f"loud/{s}" for s in stems)}
    assert project.read("canary/index.txt") == "".join(f"file {path}\n" for path in picked)
    manifest = json.loads(project.read("canary/batchit-manifest.json"))
    assert {o["path"] for o in manifest["outputs"]} == copies


def test_a_quarantine_in_a_sample_of_its_own_says_how_to_leave_it(project: Project) -> None:
    """`batchit quarantine` sees the build's state, not a sample's: the summary names the way out."""
    project.config(PICKY)
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "bad\n"})
    result = project.run("build", "--no-progress", "--sample", "100%", "--out", "canary")
    assert result.code == 1, result.describe()
    assert "1 input(s) stay quarantined in this sample" in result.stdout, result.describe()
    assert "remove .batchit/samples/canary/" in result.stdout
    assert "`batchit quarantine list`" not in result.stdout
