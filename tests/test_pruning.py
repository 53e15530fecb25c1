"""Pruning and cleaning remove only what batchit wrote, and only inside `out` (SPEC sections 3 and 8).

An output a current job produces is never pruned, whatever rule recorded it; a partial build prunes
nothing another rule may produce; a blocked job keeps its output; a changed `out` owns nothing yet;
and a folder replaced by a symlink, a directory or a FIFO where an output was, is never deleted, read
or overwritten.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COPY_CONFIG, HOLD, HOLD_CONFIG, THREE_SOURCES, Project, wait_until


def summary(project: Project) -> dict[str, int]:
    """The latest run's summary counts."""
    counts: dict[str, int] = project.manifest()["summary"]
    return counts


def recorded(project: Project) -> dict[str, str]:
    """The latest manifest's outputs: path -> the rule that produces it."""
    return {o["path"]: o["rule"] for o in project.manifest()["outputs"]}


TWO_RULES = """\
version: 1
out: _build
rules:
  ra:
    inputs: ["src/*.txt"]
    output: "TEMPLATE_A"
    steps:
      - text.load: {}
      - text.replace: {pattern: "a", replacement: "REPLACEMENT_A"}
  rb:
    inputs: ["src/*.txt"]
    output: "TEMPLATE_B"
    steps:
      - text.load: {}
      - text.replace: {pattern: "a", replacement: "REPLACEMENT_B"}
"""
"""Rules ra and rb over src/*.txt, their output templates and replacements filled in by `two_rules`."""


def two_rules(template_a: str, template_b: str, *, same_steps: bool = False, only_a: bool = False) -> str:
    """TWO_RULES with ra writing `template_a` and rb `template_b` (rb left out with `only_a`);
    with `same_steps` their jobs compute the same bytes, so they share action keys."""
    text = TWO_RULES.replace("TEMPLATE_A", template_a).replace("TEMPLATE_B", template_b)
    text = text.replace("REPLACEMENT_A", "A").replace("REPLACEMENT_B", "A" if same_steps else "B")
    return text.split("  rb:")[0] if only_a else text


@pytest.mark.parametrize("edited", [False, True], ids=["renamed", "renamed-and-edited"])
def test_renaming_a_rule_keeps_its_outputs(project: Project, edited: bool) -> None:
    project.write({"src/a.txt": "abc\n"})
    project.config(two_rules("{path}.x", "", only_a=True))
    project.build()
    renamed = two_rules("{path}.x", "", only_a=True).replace("  ra:", "  renamed:")
    project.config(renamed.replace('replacement: "A"', 'replacement: "4"') if edited else renamed)
    project.build()
    assert summary(project)["pruned"] == 0
    assert project.read("_build/a.x") == ("4bc\n" if edited else "Abc\n")
    assert recorded(project) == {"a.x": "renamed"}
    assert "1 output(s) match" in project.run("verify").stdout


def test_rules_that_swap_outputs_keep_both_when_one_is_then_removed(project: Project) -> None:
    project.write({"src/a.txt": "abc\n"})
    project.config(two_rules("{path}.x", "{path}.y", same_steps=True))
    project.build()
    project.config(two_rules("{path}.y", "{path}.x", same_steps=True))
    project.build()
    assert recorded(project) == {"a.x": "rb", "a.y": "ra"}
    project.config(two_rules("{path}.y", "", only_a=True, same_steps=True))
    project.build()
    assert project.read("_build/a.y") == "Abc\n"
    assert not (project.root / "_build/a.x").exists()
    assert summary(project)["pruned"] == 1


def test_build_of_one_rule_keeps_an_output_another_rule_now_produces(project: Project) -> None:
    project.write({"src/a.txt": "abc\n"})
    project.config(two_rules("{path}.x", "{path}.y"))
    project.build()
    project.config(two_rules("{path}.y", "{path}.x"))
    project.build("ra")
    assert summary(project)["pruned"] == 0
    assert project.read("_build/a.x") == "Abc\n"  # rb's to rebuild, not ra's to prune
    project.build()
    assert (project.read("_build/a.x"), project.read("_build/a.y")) == ("Bbc\n", "Abc\n")


UPSTREAM_DOWNSTREAM = """\
version: 1
out: _build
rules:
  up:
    inputs: ["src/*.txt"]
    output: "up/{stem}.txt"
    retry: {attempts: 1}
    steps:
      - python: {function: "upstep:run", version: "1"}
  down:
    inputs: {rule: up}
    output: "down/{stem}-{key8}.txt"
    steps:
      - file.copy: {}
"""

UPSTEP = """\
from batchit.errors import TransientError

def run(value, ctx):
    FAIL
    return value
"""
"""`upstep.py`: the `up` rule's step; FAIL is replaced by `pass` or by raising a TransientError."""


def test_a_transient_upstream_failure_keeps_the_downstream_key8_output(project: Project) -> None:
    project.config(UPSTREAM_DOWNSTREAM)
    project.write({"src/a.txt": "abc\n", "upstep.py": UPSTEP.replace("FAIL", "pass")})
    project.build()
    (before,) = (project.root / "_build/down").iterdir()
    project.write({"upstep.py": UPSTEP.replace("FAIL", 'raise TransientError("service busy")')})
    planned = project.run("plan").stdout
    assert "_build/down/a-{key8}.txt" in planned, "a name not known before its upstream runs says so"
    project.build(expect=1)
    assert summary(project)["pruned"] == 0
    assert list((project.root / "_build/down").iterdir()) == [before]
    statuses = {o["path"]: o["status"] for o in project.manifest()["outputs"]}
    assert statuses[f"down/{before.name}"] == "blocked", "counted as failed: the manifest says why"


def test_plan_prunes_the_key8_output_whose_upstream_runs_first_as_the_build_does(project: Project) -> None:
    project.config(UPSTREAM_DOWNSTREAM)
    project.write({"src/a.txt": "abc\n", "upstep.py": UPSTEP.replace("FAIL", "pass")})
    project.build()
    (before,) = (project.root / "_build/down").iterdir()
    project.write({"upstep.py": UPSTEP.replace("FAIL", "value = value.upper()")})  # new bytes upstream
    plan = json.loads(project.run("plan", "--json").stdout)
    assert plan["prune"] == [f"_build/down/{before.name}"], "its new name holds the key its new input gives"
    project.build()
    assert summary(project)["pruned"] == plan["summary"]["prune"] == 1
    assert not before.exists()


PAGE_COPY = """\
version: 1
out: OUT
rules:
  pages:
    inputs: ["pages/*.txt"]
    output: "{stem}.html"
    steps:
      - file.copy: {}
"""


def test_a_new_out_owns_nothing_batchit_did_not_write_there(project: Project) -> None:
    project.write({"pages/index.txt": "generated\n"})
    project.config(PAGE_COPY.replace("OUT", "_build"))
    project.build()
    project.write({"public/index.html": "HAND\n"})
    project.config(PAGE_COPY.replace("OUT", "public"))
    result = project.build(expect=2)
    assert "public/index.html" in result.stderr, result.describe()
    assert project.run("clean").code == 0
    assert project.read("public/index.html") == "HAND\n"
    project.build("--overwrite")
    assert project.read("public/index.html") == "generated\n"
    assert project.read("_build/index.html") == "generated\n"  # the old `out` is left as it was
    assert project.run("clean").code == 0
    assert not (project.root / "public/index.html").exists()
    assert project.read("_build/index.html") == "generated\n"


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
    dry = project.run("clean", "--dry-run")
    assert dry.code == 2 and "_build/sub/a.out" not in dry.stdout, "a dry run lists what clean does"
    assert "clean would leave 1 path(s)" in dry.stderr and "symlink" in dry.stderr, dry.describe()
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


def make_empty_dir(path: Path) -> None:
    """Put an empty directory at `path`: no output of batchit's, so nothing to clear away."""
    path.mkdir()


def make_symlink(path: Path) -> None:
    """Put a symlink at `path` to a file of the user's outside `out`."""
    target = path.parent.parent / "elsewhere.txt"
    target.write_text("the user's\n")
    path.symlink_to(target)


@pytest.mark.parametrize(
    "make",
    [make_dir, make_empty_dir, make_symlink, os.mkfifo],
    ids=["directory", "empty-directory", "symlink", "fifo"],
)
def test_a_non_file_at_an_output_path_is_refused_by_plan_and_build_even_with_overwrite(
    built: Project, make: object
) -> None:
    make(built.root / "_build/b.out")  # type: ignore[operator]
    for asked in (("plan", "--json"), ("plan", "--json", "--overwrite")):
        planned = built.run(*asked, timeout=30)
        assert planned.code == 0, planned.describe()
        refused = [job for job in json.loads(planned.stdout)["jobs"] if job["action"] == "refuse"]
        assert [job["output"] for job in refused] == ["_build/b.out"], planned.describe()
        assert "even with --overwrite" in refused[0]["reasons"][0]
    for command in (("build", "--no-progress"), ("build", "--no-progress", "--overwrite")):
        result = built.run(*command, timeout=30)
        assert result.code == 2, result.describe()
        assert "_build/b.out" in result.stderr and "not a regular file" in result.stderr, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
    assert not (built.root / ".batchit/quarantine").exists()
    if make is make_symlink:
        assert (built.root / "elsewhere.txt").read_text() == "the user's\n"
        assert (built.root / "_build/b.out").is_symlink()


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


def test_a_rule_whose_inputs_match_no_file_is_warned_about_before_it_prunes(project: Project) -> None:
    project.config(COPY_CONFIG)
    project.write(THREE_SOURCES)
    project.build()
    project.config(COPY_CONFIG.replace('"src/**/*.txt"', '"scr/**/*.txt"'))  # a typo
    warning = "warning: rule 'copy': its inputs (scr/**/*.txt) match no file, so it has no job"
    for asked in (("plan",), ("plan", "--json"), ("build", "--dry-run")):  # seen before a build prunes
        planned = project.run(*asked)
        assert planned.code == 0 and warning in planned.stderr, planned.describe()
    assert json.loads(project.run("plan", "--json").stdout)["summary"]["prune"] == 3
    result = project.build()
    assert warning in result.stderr
    assert project.manifest()["summary"]["pruned"] == 3


PAUSED_AT_THE_LOCK = """\
import sys, time
from pathlib import Path

from batchit.state import lock

taking = lock.ProjectLock.acquire

def acquire(self):
    if self.path.name == "lock":  # the project lock: say so, and wait until the test lets it go on
        Path("at-the-lock").touch()
        while not Path("go").exists():
            time.sleep(0.01)
    taking(self)

lock.ProjectLock.acquire = acquire
from batchit.cli import main
sys.exit(main())
"""
"""`python -m batchit` whose command waits just before taking the project lock, until the file `go`
exists: what another run may do in that moment (build), it then does, deterministically."""


def paused_at_the_lock(project: Project, *args: str) -> subprocess.Popen[str]:
    """`batchit ARGS` started, once it waits at the project lock (PAUSED_AT_THE_LOCK)."""
    command = subprocess.Popen(
        [sys.executable, "-c", PAUSED_AT_THE_LOCK, *args],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until(lambda: (project.root / "at-the-lock").exists() or command.poll() is not None, "the lock")
    return command


def test_clean_removes_the_outputs_of_a_build_that_ran_just_before_it_took_the_lock(copies: Project) -> None:
    """clean decides what to remove under the project lock: a build that finished just before
    clean took it is cleaned as the outputs it wrote are batchit's."""
    copies.build()
    cleaning = paused_at_the_lock(copies, "clean")
    copies.write({"src/d.txt": "delta\n"})
    copies.build()
    (copies.root / "go").touch()
    out, err = cleaning.communicate(timeout=60)
    assert cleaning.returncode == 0, out + err
    assert "removed _build/d.txt" in out, out
    assert not (copies.root / "_build/d.txt").exists()
    built = copies.build()
    assert summary(copies)["built"] + summary(copies)["restored"] == 4, built.describe()


def test_clean_orphans_keeps_a_file_a_build_made_its_output_just_before_clean_took_the_lock(
    copies: Project,
) -> None:
    """clean --orphans decides under the project lock: a file that was no output of any rule when
    it started, but that a build made its output meanwhile, is no orphan any more."""
    copies.build()
    copies.write({"_build/d.txt": "someone's\n"})  # no rule makes it: an orphan
    cleaning = paused_at_the_lock(copies, "clean", "--orphans")
    copies.write({"src/d.txt": "delta\n"})
    copies.build("--overwrite")  # now src/d.txt makes it
    (copies.root / "go").touch()
    out, err = cleaning.communicate(timeout=60)
    assert cleaning.returncode == 0, out + err
    assert copies.read("_build/d.txt") == "delta\n", out
    assert copies.run("reconcile").code == 0


def test_clean_while_a_build_holds_the_lock_exits_3_and_removes_nothing(project: Project) -> None:
    project.write({"batchit.yaml": HOLD_CONFIG, "hold.py": HOLD, "src/a.txt": "a\n", "src/b.txt": "b\n"})
    for name in ("release-a.txt", "release-b.txt"):
        (project.root / name).touch()
    project.build()
    for name in ("release-b.txt", "started-a.txt", "started-b.txt"):
        (project.root / name).unlink()
    (project.root / "src/b.txt").write_text("b2\n")
    build = subprocess.Popen(
        [sys.executable, "-m", "batchit", "build", "--no-progress"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: (project.root / "started-b.txt").exists(), "the build to run b")
        before = project.snapshot("_build")
        for args in (("clean",), ("clean", "--orphans")):
            result = project.run(*args)
            assert result.code == 3, result.describe()
            assert f"pid {build.pid}" in result.stderr, result.describe()
            assert project.snapshot("_build") == before
        dry = project.run("clean", "--dry-run")  # reads only: no lock needed
        assert dry.code == 0 and "would remove _build/a.txt" in dry.stdout, dry.describe()
        (project.root / "release-b.txt").touch()
        out, err = build.communicate(timeout=60)
    finally:
        build.kill()
    assert build.returncode == 0, out + err
    assert project.read("_build/b.txt") == "b2\n"
