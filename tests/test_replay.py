"""`batchit replay RUN_ID` (SPEC section 4): a past run's jobs again, with its seed and settings."""

from __future__ import annotations

import pytest
from conftest import Project

LOUD = """\
version: 1
out: _build
flags: {loud: false}
rules:
  copy:
    inputs: ["src/*.txt"]
    output: "{stem}.txt"
    steps:
      - text.load: {}
      - text.replace: {pattern: "a", replacement: "A", when: "flags.loud"}
"""
"""A rule whose second step runs only under `--flag loud=true`."""


def test_replay_uses_the_flags_the_run_was_built_with(project: Project) -> None:
    project.config(LOUD)
    project.write({"src/a.txt": "alpha\n"})
    project.build("--flag", "loud=true")
    loud_run = project.manifest()["run_id"]
    project.build()  # the declared default, loud=false, rebuilds it quietly
    assert project.read("_build/a.txt") == "alpha\n"
    replayed = project.run("replay", loud_run, "--no-progress")
    assert replayed.code == 0, replayed.describe()
    assert project.read("_build/a.txt") == "AlphA\n"


def built_twice(project: Project) -> tuple[str, str]:
    """LOUD built, then again after an edit: the two run ids."""
    project.config(LOUD)
    project.write({"src/a.txt": "alpha\n", "src/b.txt": "beta\n"})
    project.build()
    first = project.manifest()["run_id"]
    project.write({"src/a.txt": "gamma\n"})
    project.build()
    return first, project.manifest()["run_id"]


@pytest.mark.parametrize(
    ("run_id", "said"),
    [
        ("LATEST", "no run 'LATEST'"),
        ("../other/.batchit/runs/x", "is not a run id"),
        ("*", "is not a run id"),
    ],
)
def test_replay_of_what_is_not_a_run_exits_2_without_running_anything(
    project: Project, run_id: str, said: str
) -> None:
    built_twice(project)
    before = project.recorded()
    replayed = project.run("replay", run_id, "--no-progress")
    assert replayed.code == 2, replayed.describe()
    assert said in replayed.stderr
    assert project.recorded() == before


@pytest.mark.parametrize("damage", ['{"jobs": [', "{}", '{"jobs": [{"job": 1}], "seed": 0, "settings": {}}'])
def test_a_damaged_replay_record_exits_2_naming_it(project: Project, damage: str) -> None:
    first, _ = built_twice(project)
    record = project.root / ".batchit" / "runs" / first / "replay.json"
    record.write_text(damage, encoding="utf-8")
    replayed = project.run("replay", first, "--no-progress")
    assert replayed.code == 2, replayed.describe()
    assert str(record) in replayed.stderr
    assert "Traceback" not in replayed.stderr


def test_replay_names_each_changed_or_gone_input_once_and_takes_a_prefix(project: Project) -> None:
    project.config(
        LOUD.replace('output: "{stem}.txt"', 'output: "{stem}.txt"\n    matrix: {n: [1, 2]}').replace(
            "{stem}.txt", "{stem}-{n}.txt"
        )
    )
    project.write({"src/a.txt": "alpha\n", "src/b.txt": "beta\n"})
    project.build()
    run_id = project.manifest()["run_id"]
    project.write({"src/a.txt": "changed\n"})
    (project.root / "src/b.txt").unlink()
    replayed = project.run("replay", run_id[:-2], "--no-progress")
    assert replayed.code == 0, replayed.describe()
    assert replayed.stderr.count(f"input changed since run {run_id}: src/a.txt") == 1
    assert replayed.stderr.count(f"input gone since run {run_id}: src/b.txt") == 1
    replay_run = project.root / ".batchit/runs" / project.manifest()["run_id"]
    logged = (replay_run / "events.jsonl").read_text()  # and kept in the replay's own record
    assert f"input changed since run {run_id}: src/a.txt" in logged
    assert f"input gone since run {run_id}: src/b.txt" in logged


def test_replay_of_jobs_the_config_no_longer_has_says_so(project: Project) -> None:
    """A matrix added since gives the same inputs other jobs: replaying nothing in silence would
    read as "the failure no longer reproduces"."""
    project.config(LOUD)
    project.write({"src/a.txt": "alpha\n"})
    project.build()
    run_id = project.manifest()["run_id"]
    project.config(LOUD.replace('output: "{stem}.txt"', 'output: "{stem}-{n}.txt"\n    matrix: {n: [1, 2]}'))
    replayed = project.run("replay", run_id, "--no-progress")
    assert replayed.code == 0, replayed.describe()
    said = f"jobs of run {run_id} that the config no longer has, not replayed: copy:src/a.txt"
    assert said in replayed.stderr, replayed.describe()
    assert "input changed" not in replayed.stderr and "input gone" not in replayed.stderr
