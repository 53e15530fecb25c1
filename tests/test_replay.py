"""`batchit replay RUN_ID` (SPEC section 4): a past run's jobs again, with its seed and settings."""

from __future__ import annotations

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
