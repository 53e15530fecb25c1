"""`plan --json` says what the build that follows it does (SPEC sections 3 and 4).

A seeded random walk of the edits a user makes between builds (inputs added, deleted, edited and
touched; outputs edited and deleted; a parameter, a matrix or a `deps` entry changed) over rules
with `{key8}` names, a matrix and an aggregate; after each edit, every job the plan says it runs,
restores, skips or prunes is one the build then reports so in its manifest, and no other.

The steps are injective (each output holds its whole input behind a prefix that names the recipe),
so a job whose key changes writes new bytes: the one thing a plan cannot know without running it.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from conftest import Project

TOOLS = """\
def join(value, ctx, **params):
    return "".join(item.read_text() for item in value)
"""
"""`tools.py`: the aggregate's step, its inputs' texts joined."""


@dataclass
class Knobs:
    """The parts of the config a step of the walk changes."""

    tag: str = "t1"
    widths: tuple[int, ...] = (1, 2)
    deps: bool = False
    mark: str = "|"

    def config(self) -> str:
        """`batchit.yaml`: a 1:1 rule, a `{key8}`-named matrix rule over its outputs, and a
        `{key8}`-named aggregate over those (`deps` are the aggregate's: a step reading no dep
        would give its downstream jobs the same bytes under a new key)."""
        deps = '    deps: ["dep.txt"]\n' if self.deps else ""
        widths = ", ".join(map(str, self.widths))
        return (
            "version: 1\nout: _build\nrules:\n"
            '  copy:\n    inputs: ["src/*.txt"]\n    output: "c/{stem}.txt"\n    steps:\n'
            "      - text.load: {}\n"
            f'      - text.replace: {{pattern: "^", replacement: "{self.tag}:"}}\n'
            "  keyed:\n    inputs: {rule: copy}\n"
            f"    matrix: {{w: [{widths}]}}\n"
            '    output: "k/{stem}-{w}-{key8}.txt"\n    steps:\n      - text.load: {}\n'
            f'      - text.replace: {{pattern: "^", replacement: "{{w}}{self.mark}"}}\n'
            "  every:\n    inputs: {rule: keyed}\n    aggregate: true\n"
            '    output: "all-{key8}.txt"\n' + deps + "    steps:\n"
            '      - python: {function: "tools:join", version: "1"}\n'
        )


@dataclass
class Walk:
    """A project and the random edits made to it."""

    project: Project
    rng: random.Random
    knobs: Knobs = field(default_factory=Knobs)
    made: int = 0
    """How many contents were made: each new input, and each new content, is unique."""

    def start(self) -> None:
        """Two inputs, the tools module and the dependency file."""
        self.project.write({"tools.py": TOOLS, "dep.txt": "d0\n"})
        self.add_input()
        self.add_input()
        self.project.config(self.knobs.config())

    def fresh(self) -> str:
        self.made += 1
        return f"content {self.made}\n"

    def inputs(self) -> list[str]:
        return sorted(p.name for p in (self.project.root / "src").iterdir())

    def outputs(self) -> list[str]:
        out = self.project.root / "_build"
        found = (p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        return sorted(p for p in found if not p.startswith("batchit-manifest"))

    def add_input(self) -> str:
        name = f"i{self.made}.txt"
        self.project.write({f"src/{name}": self.fresh()})
        return f"add src/{name}"

    def delete_input(self) -> str:
        names = self.inputs()
        if len(names) < 2:
            return self.add_input()
        name = self.rng.choice(names)
        (self.project.root / "src" / name).unlink()
        return f"delete src/{name}"

    def edit_input(self) -> str:
        name = self.rng.choice(self.inputs())
        self.project.write({f"src/{name}": self.fresh()})
        return f"edit src/{name}"

    def touch_input(self) -> str:
        path = self.project.root / "src" / self.rng.choice(self.inputs())
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        return f"touch {path.name}"

    def edit_output(self) -> str:
        name = self.rng.choice(self.outputs())
        self.project.write({f"_build/{name}": "edited by hand\n"})
        return f"edit _build/{name}"

    def delete_output(self) -> str:
        name = self.rng.choice(self.outputs())
        (self.project.root / "_build" / name).unlink()
        return f"delete _build/{name}"

    def change_tag(self) -> str:
        self.knobs.tag = self.rng.choice([t for t in ("t1", "t2", "t3") if t != self.knobs.tag])
        return self._configured(f"copy's tag {self.knobs.tag}")

    def change_mark(self) -> str:
        self.knobs.mark = "|" if self.knobs.mark != "|" else "#"
        return self._configured(f"keyed's mark {self.knobs.mark}")

    def change_widths(self) -> str:
        self.knobs.widths = self.rng.choice([w for w in ((1, 2), (1, 3), (2,)) if w != self.knobs.widths])
        return self._configured(f"matrix {self.knobs.widths}")

    def toggle_deps(self) -> str:
        self.knobs.deps = not self.knobs.deps
        return self._configured(f"deps {self.knobs.deps}")

    def edit_dep(self) -> str:
        self.project.write({"dep.txt": self.fresh()})
        return "edit dep.txt"

    def _configured(self, what: str) -> str:
        self.project.config(self.knobs.config())
        return what

    def edits(self) -> list[Callable[[], str]]:
        """Every kind of edit; those of outputs only once a build wrote some."""
        edits = [
            self.add_input,
            self.delete_input,
            self.edit_input,
            self.touch_input,
            self.change_tag,
            self.change_mark,
            self.change_widths,
            self.toggle_deps,
            self.edit_dep,
        ]
        return edits + ([self.edit_output, self.delete_output] if self.outputs() else [])


PLAN_TO_MANIFEST = {"run": "built", "restore": "restored", "skip": "up_to_date"}
"""A plan's action and the manifest status of the output it predicts."""


def matches(predicted: list[str], actual: list[str]) -> bool:
    """True when the paths `actual` are those `predicted`, where `{key8}` stands for a name the
    plan cannot know (its upstream runs first) and matches any 8 hex digits."""
    if len(predicted) != len(actual):
        return False
    patterns = [re.compile(re.escape(p).replace(re.escape("{key8}"), "[0-9a-f]{8}")) for p in predicted]
    for path in actual:
        found = next((p for p in patterns if p.fullmatch(path)), None)
        if found is None:
            return False
        patterns.remove(found)
    return True


def check_plan_then_build(project: Project, before: set[str], what: str, *flags: str) -> set[str]:
    """Plan, build (both with `flags`), and assert the plan foretold the build; return the outputs
    now recorded."""
    planned = project.run("plan", "--json", *flags)
    assert planned.code == 0, planned.describe()
    plan = json.loads(planned.stdout)
    project.build(*flags)
    manifest = project.manifest()
    now = {o["path"] for o in manifest["outputs"]}
    for action, status in PLAN_TO_MANIFEST.items():
        predicted = sorted(j["output"].removeprefix("_build/") for j in plan["jobs"] if j["action"] == action)
        actual = sorted(o["path"] for o in manifest["outputs"] if o["status"] == status)
        assert matches(predicted, actual), f"after {what}: {action} {predicted}, but {status} {actual}"
    pruned = sorted(before - now)
    assert [p.removeprefix("_build/") for p in plan["prune"]] == pruned, f"after {what}: prune"
    assert plan["summary"]["prune"] == manifest["summary"]["pruned"] == len(pruned), f"after {what}"
    return now


@pytest.mark.parametrize("seed", [7])
def test_plan_foretells_the_build_through_random_edits(project: Project, seed: int) -> None:
    walk = Walk(project, random.Random(seed))  # noqa: S311 (a reproducible walk, not a secret)
    walk.start()
    recorded = check_plan_then_build(project, set(), "the first build")
    for _ in range(5):
        edit = walk.rng.choice(walk.edits())
        recorded = check_plan_then_build(project, recorded, edit())


UP_AND_KEYED = """\
version: 1
out: _build
rules:
  up:
    inputs: ["src/*.txt"]
    output: "up/{stem}.txt"
    steps:
      - text.load: {}
      - text.replace: {pattern: "^", replacement: "A:"}
  keyed:
    inputs: {rule: up}
    output: "k/{stem}-{key8}.txt"
    steps:
      - text.load: {}
      - text.replace: {pattern: "^", replacement: "k:"}
"""
"""A 1:1 rule and a `{key8}`-named rule over its outputs, whose key is known only with their bytes."""


def recorded_outputs(project: Project) -> set[str]:
    """The outputs the latest run's manifest lists."""
    return {o["path"] for o in project.manifest()["outputs"]}


def test_plan_knows_the_bytes_a_restore_gives_back_to_the_jobs_reading_them(project: Project) -> None:
    project.config(UP_AND_KEYED)
    project.write({"src/a.txt": "a\n", "src/b.txt": "b\n"})
    project.build()
    project.config(UP_AND_KEYED.replace("A:", "B:"))
    project.build()
    project.config(UP_AND_KEYED)  # back: every output is in the cache, `{key8}` names and all
    plan = json.loads(project.run("plan", "--json").stdout)
    assert plan["summary"]["restore"] == 4, plan["jobs"]
    check_plan_then_build(project, recorded_outputs(project), "a parameter changed back")
    assert project.manifest()["summary"]["restored"] == 4


def test_plan_knows_a_job_redone_with_its_recorded_key_writes_the_bytes_it_wrote(project: Project) -> None:
    project.config(UP_AND_KEYED)
    project.write({"src/a.txt": "a\n", "src/b.txt": "b\n"})
    project.build()
    (project.root / "_build/up/a.txt").unlink()
    plan = json.loads(project.run("plan", "--json", "--no-cache").stdout)
    assert plan["summary"]["run"] == 1 and plan["summary"]["skip"] == 3, plan["jobs"]
    check_plan_then_build(project, recorded_outputs(project), "an output deleted", "--no-cache")


def test_plan_knows_the_bytes_a_key_gave_before_when_the_job_runs_again(project: Project) -> None:
    project.config(UP_AND_KEYED)
    project.write({"src/a.txt": "a\n", "src/b.txt": "b\n"})
    project.build()
    project.config(UP_AND_KEYED.replace("A:", "B:"))
    project.build("up")  # keyed's outputs of the A bytes stay
    project.config(UP_AND_KEYED)
    plan = json.loads(project.run("plan", "--json", "--no-cache").stdout)
    assert plan["summary"]["run"] == 2 and plan["summary"]["skip"] == 2, "the cache index knows A's bytes"
    check_plan_then_build(project, recorded_outputs(project), "a parameter changed back", "--no-cache")


def test_plan_knows_the_bytes_of_an_output_moved_to_a_new_path(project: Project) -> None:
    project.config(UP_AND_KEYED)
    project.write({"src/a.txt": "a\n", "src/b.txt": "b\n"})
    project.build("--no-cache")  # nothing in the cache: only the records know the bytes
    project.config(UP_AND_KEYED.replace('"up/{stem}.txt"', '"moved/{stem}.txt"'))
    plan = json.loads(project.run("plan", "--json", "--no-cache").stdout)
    assert plan["summary"]["run"] == 2 and plan["summary"]["skip"] == 2, plan["jobs"]
    assert plan["prune"] == ["_build/up/a.txt", "_build/up/b.txt"]
    check_plan_then_build(project, recorded_outputs(project), "an output template changed", "--no-cache")
