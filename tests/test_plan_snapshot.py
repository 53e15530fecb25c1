"""A no-op build's plan is remembered and replayed only while nothing it read has changed.

Each change a user can make after a no-op build is its own case: the build that follows must do the
same work it does without a snapshot (SPEC section 3), and a replayed plan must equal a full one.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import COPY_AND_UPPER, PAGES_RULE, PICKY_MODULE, TOOLS, Project, plan_event
from conftest import PICKY as PICKY_CONFIG

from batchit.plan.snapshot import FORK_ABOVE, concurrently

HEAD_OF_CONFIG = "version: 1\nout: _build\nrules:\n"

COPY_RULE = """\
  copy:
    inputs: ["src/**/*.txt"]
    output: "copy/{path}.txt"
    steps:
      - file.copy: {}
"""

UPPER_OUTPUT = 'output: "upper/{path}.txt"\n'
CONFIG = COPY_AND_UPPER.replace(UPPER_OUTPUT, UPPER_OUTPUT + '    deps: ["dep/*.txt"]\n') + PAGES_RULE

FILES = {
    "tools.py": TOOLS,
    "src/a.txt": "alpha\n",
    "src/b.txt": "beta\n",
    "src/sub/c.txt": "gamma\n",
    "dep/x.txt": "x1\n",
    "pages/home.md": "# Home\n",
    "t/page.html.j2": "{% include 't/footer.html' %}{{ content | safe }}",
    "t/footer.html": "<footer>v1</footer>",
}

JOBS = 8
"""copy and upper: 3 each; index: 1; pages: 1."""

HEAD = ".batchit/plan-snapshot.json"


@pytest.fixture
def remembered(project: Project) -> Project:
    """A built project whose plan is remembered (built twice: the second build replays the first's)."""
    project.config(CONFIG)
    project.write(FILES)
    project.build()
    project.build()
    assert (project.root / HEAD).exists(), "a build whose jobs all succeeded leaves the next plan"
    return project


def full_plan(project: Project) -> dict[str, Any]:
    """`batchit plan --json` with the snapshot (if any) set aside, so every job is planned."""
    head = project.root / HEAD
    aside = head.with_suffix(".aside")
    if not head.exists():
        return plan(project)
    head.rename(aside)
    try:
        result = project.run("plan", "--json")
    finally:
        aside.rename(head)
    assert result.code == 0, result.describe()
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def plan(project: Project) -> dict[str, Any]:
    """`batchit plan --json` as a user runs it."""
    result = project.run("plan", "--json")
    assert result.code == 0, result.describe()
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def work(project: Project) -> int:
    """Jobs the latest build ran or restored."""
    summary = project.manifest()["summary"]
    return int(summary["built"]) + int(summary["restored"])


def test_a_first_build_leaves_the_next_plan(project: Project) -> None:
    project.config(CONFIG)
    project.write(FILES)
    project.build()
    project.build()
    assert plan_event(project)["replayed"] is True


def test_a_no_op_build_after_a_no_op_build_replays_the_plan(remembered: Project) -> None:
    remembered.build()
    assert plan_event(remembered)["replayed"] is True
    assert remembered.manifest()["summary"]["up_to_date"] == JOBS
    assert work(remembered) == 0


def test_a_replayed_plan_equals_the_full_plan(remembered: Project) -> None:
    assert plan(remembered) == full_plan(remembered)


def test_plan_never_writes_a_snapshot(project: Project) -> None:
    project.config(CONFIG)
    project.write(FILES)
    project.build()
    (project.root / HEAD).unlink()
    project.run("plan")
    assert not (project.root / HEAD).exists()


def test_a_build_whose_jobs_all_succeeded_leaves_the_next_plan(remembered: Project) -> None:
    remembered.write({"src/a.txt": "changed\n"})
    remembered.build()
    assert work(remembered) == 3
    remembered.build()
    assert plan_event(remembered)["replayed"] is True
    assert work(remembered) == 0


def test_a_build_with_a_failed_job_leaves_no_snapshot(remembered: Project) -> None:
    remembered.write({"tools.py": "def join(value, ctx, **params):\n    raise ValueError('broken')\n"})
    remembered.build(expect=1)
    assert not (remembered.root / HEAD).exists()
    assert not list((remembered.root / ".batchit").glob("plan-snapshot-*"))


def test_a_job_that_discovers_dependencies_leaves_the_next_plan(remembered: Project) -> None:
    remembered.write({"pages/home.md": "# Home, edited\n"})
    remembered.build()
    assert work(remembered) == 1
    assert plan(remembered) == full_plan(remembered)
    remembered.build()
    assert plan_event(remembered)["replayed"] is True
    assert work(remembered) == 0


AGGREGATE_OF_PARSE = """\
  all:
    inputs: {rule: parse}
    aggregate: true
    output: all.txt
    steps:
      - python: {function: "tools:join", version: "1"}
"""
"""A rule (to follow `parse`) joining every parsed input."""

PICKY = (
    """\
  parse:
    inputs: ["in/*.txt"]
    output: "parsed/{stem}.txt"
    steps:
      - python: {function: "picky:parse", version: "1"}
"""
    + AGGREGATE_OF_PARSE
)


def test_a_quarantined_input_still_leaves_the_next_plan(project: Project) -> None:
    project.config(HEAD_OF_CONFIG + PICKY)
    project.write({"tools.py": FILES["tools.py"], "picky.py": PICKY_MODULE})
    project.write({"in/a.txt": "a\n", "in/b.txt": "bad\n"})
    project.build(expect=1)
    assert project.manifest()["summary"]["quarantined"] == 1
    again = project.build(expect=1)
    assert plan_event(project)["replayed"] is True
    assert "stay quarantined" in again.stdout
    assert (project.manifest()["summary"]["quarantined"], work(project)) == (1, 0)
    assert plan(project) == full_plan(project)
    project.write({"in/b.txt": "fixed\n"})
    project.build()
    assert plan_event(project)["patched"] is True
    assert work(project) == 2, "the fixed input's job and the aggregate"
    assert project.read("_build/all.txt") == "A\nFIXED\n"
    project.build()
    assert plan_event(project)["replayed"] is True


def _touch(project: Project) -> None:
    later = (project.root / "src/a.txt").stat().st_mtime_ns + 10**9
    os.utime(project.root / "src/a.txt", ns=(later, later))


def _replace_output_dir_by_symlink(project: Project) -> None:
    elsewhere = project.root.parent / "elsewhere"
    elsewhere.mkdir()
    (project.root / "_build/copy").rename(elsewhere / "copy")  # the files keep their inodes and ctimes
    (project.root / "_build/copy").symlink_to(elsewhere / "copy")


EDITS: dict[str, Callable[[Project], object]] = {
    "touched input": _touch,
    "edited input": lambda p: p.write({"src/a.txt": "apple\n"}),
    "added input": lambda p: p.write({"src/sub/d.txt": "delta\n"}),
    "deleted input": lambda p: (p.root / "src/b.txt").unlink(),
    "edited output": lambda p: p.write({"_build/copy/a.txt": "mine\n"}),
    "deleted output": lambda p: (p.root / "_build/copy/sub/c.txt").unlink(),
    "edited page": lambda p: p.write({"pages/home.md": "# Home, edited\n"}),
    "edited deps file": lambda p: p.write({"dep/x.txt": "x2\n"}),
    "edited python module": lambda p: p.write({"tools.py": FILES["tools.py"] + "# v2\n"}),
    "python module shadowed": lambda p: p.write({"tools/__init__.py": FILES["tools.py"] + "# v2\n"}),
    "edited template parameter file": lambda p: p.write({"t/page.html.j2": "<p>{{ content }}</p>"}),
    "edited discovered include": lambda p: p.write({"t/footer.html": "<footer>v2</footer>"}),
    "edited parameter": lambda p: p.config(CONFIG.replace('replacement: "A"', 'replacement: "4"')),
    "state changed by clean": lambda p: p.run("clean"),
}
"""Each change a user can make to a built project, by name."""

WORK: dict[str, tuple[int, bool, int | None]] = {
    "touched input": (0, True, 0),
    "edited input": (3, True, 3),
    "added input": (3, True, 3),
    "deleted input": (1, True, 0),
    "edited output": (1, True, 1),
    "deleted output": (1, True, 1),
    "edited page": (1, True, 1),
    "edited deps file": (3, False, None),
    "edited python module": (1, False, None),
    "python module shadowed": (1, False, None),
    "edited template parameter file": (1, False, None),
    "edited discovered include": (1, True, 1),
    "edited parameter": (4, False, None),
    "state changed by clean": (JOBS, False, None),
}
"""What the build after each change does: in the `remembered` project, the jobs it runs or restores
and whether its plan is patched (the aggregate over `upper` is planned again whole); in
the `one_to_one` project, whose plans are patched, the jobs it runs (None: not tried there)."""


def change_and_build(project: Project, change: str, expected_work: int, *, patched: bool) -> None:
    """Make `change`, then check what the plan says, what the build does and the plan it leaves."""
    EDITS[change](project)
    assert plan(project) == full_plan(project)
    project.build()
    event = plan_event(project)
    assert event["replayed"] is False
    assert event["patched"] is patched
    assert work(project) == expected_work, project.manifest()["summary"]
    assert plan(project) == full_plan(project), "the plan a build leaves is the plan that follows"
    project.build()
    assert work(project) == 0


@pytest.mark.parametrize("change", list(WORK))
def test_every_change_after_a_no_op_build_is_seen(remembered: Project, change: str) -> None:
    expected_work, patched, _ = WORK[change]
    change_and_build(remembered, change, expected_work, patched=patched)


def test_force_runs_every_job_despite_a_snapshot(remembered: Project) -> None:
    remembered.build("--force")
    assert work(remembered) == JOBS


def test_a_symlink_that_appears_in_out_is_refused_on_replay(remembered: Project) -> None:
    _replace_output_dir_by_symlink(remembered)
    result = remembered.build(expect=2)
    assert "leads outside `out` through a symlink" in result.stderr, result.describe()


def test_an_input_whose_timestamp_is_not_older_than_its_read_is_read_again_next_time(
    remembered: Project,
) -> None:
    """A file rewritten in the same timestamp tick as a build read it keeps its stat ("racy git"):
    a timestamp that is not older than the read cannot vouch for the hash, so the next build reads
    the file again instead of replaying a plan that trusts it. Once it is older, it is trusted."""
    future = time.time_ns() + 3600 * 10**9  # a timestamp no read can be a tick older than
    os.utime(remembered.root / "src/a.txt", ns=(future, future))
    remembered.build()
    assert work(remembered) == 0, "content unchanged: nothing runs"
    remembered.build()
    event = plan_event(remembered)
    assert (event["replayed"], event["patched"]) == (False, True), "the file is read again, not trusted"
    assert work(remembered) == 0

    past = time.time_ns() - 3600 * 10**9
    os.utime(remembered.root / "src/a.txt", ns=(past, past))
    remembered.build()
    remembered.build()
    assert plan_event(remembered)["replayed"] is True, "an older timestamp vouches for the hash again"


def test_a_damaged_snapshot_means_a_full_plan(remembered: Project) -> None:
    head = json.loads((remembered.root / HEAD).read_text())
    (remembered.root / ".batchit" / head["data"]).write_bytes(b"\x00not marshal")
    remembered.build()
    assert plan_event(remembered)["replayed"] is False
    assert work(remembered) == 0
    remembered.build()
    assert plan_event(remembered)["replayed"] is True


def test_a_copied_checkout_plans_in_full_and_builds_nothing(remembered: Project, tmp_path: Path) -> None:
    moved = Project(tmp_path / "elsewhere-checkout")
    shutil.copytree(remembered.root, moved.root, copy_function=shutil.copy2)  # new inodes, same mtimes
    moved.build()
    assert plan_event(moved)["replayed"] is False
    assert work(moved) == 0


@pytest.mark.slow
def test_outputs_checked_in_a_child_process_still_see_an_edit(project: Project) -> None:
    count = FORK_ABOVE + 10  # enough outputs that they are stat-ed in a forked child
    project.config(HEAD_OF_CONFIG + COPY_RULE)
    project.write({f"src/{n // 100}/{n % 100}.txt": f"{n}\n" for n in range(count)})
    project.build()
    project.build()
    project.write({"_build/copy/7/42.txt": "edited\n"})
    project.build()
    assert plan_event(project)["replayed"] is False
    assert work(project) == 1
    assert project.read("_build/copy/7/42.txt") == "742\n"


def test_work_in_a_child_process_gives_its_value() -> None:
    for expected in ([], [3, 7], True):
        with concurrently(functools.partial(lambda value: value, expected), in_child=True) as value:
            assert value() == expected


def test_a_child_process_that_dies_gives_none() -> None:
    def dies() -> bool:
        os._exit(3)

    with concurrently(dies, in_child=True) as value:
        assert value() is None


ONE_TO_ONE = (
    HEAD_OF_CONFIG
    + COPY_RULE
    + """\
  upper:
    inputs: ["src/**/*.txt"]
    matrix: {suffix: [x, y]}
    output: "upper/{path}-{suffix}.txt"
    steps:
      - text.load: {}
      - text.replace: {pattern: "a", replacement: "{suffix}"}
"""
    + PAGES_RULE
)


@pytest.fixture
def one_to_one(project: Project) -> Project:
    """A project of one-input rules only (one with a matrix) whose plan is remembered."""
    project.config(ONE_TO_ONE)
    project.write({name: text for name, text in FILES.items() if not name.startswith(("dep/", "tools"))})
    project.build()
    project.build()
    return project


@pytest.mark.parametrize("change", [name for name, (_, _, work) in WORK.items() if work is not None])
def test_a_few_changed_files_replan_only_their_jobs(one_to_one: Project, change: str) -> None:
    expected_work = WORK[change][2]
    assert expected_work is not None
    change_and_build(one_to_one, change, expected_work, patched=True)


def switch_include(project: Project, config: str) -> str:
    """Build a page whose template includes `t/0.html` or `t/1.html` by its length, twice (so its
    plan is remembered); then edit the page so that it includes the other one, and build again.
    Returns the page as the first builds wrote it."""
    project.config(config)
    project.write(
        {
            "src/a.txt": "alpha\n",
            "pages/home.md": "# Home\n",
            "t/page.html.j2": "{% include 't/' ~ (content | length % 2) ~ '.html' %}",
            "t/0.html": "even",
            "t/1.html": "odd",
        }
    )
    project.build()
    project.build()
    before = project.read("_build/home.html") if (project.root / "_build/home.html").exists() else ""
    project.write({"pages/home.md": "# Home!\n"})  # one more character: the other include
    project.build()
    return before


def test_a_patched_plan_whose_job_discovers_a_new_include_commits_it(project: Project) -> None:
    before = switch_include(project, HEAD_OF_CONFIG + COPY_RULE + PAGES_RULE)
    assert plan_event(project)["patched"] is True
    after = project.read("_build/home.html")
    assert {before, after} == {"even", "odd"}
    project.write({"t/0.html": "EVEN", "t/1.html": "ODD"})
    project.build()
    assert project.read("_build/home.html") == after.upper()


def test_a_snapshot_data_file_no_head_names_is_removed(remembered: Project) -> None:
    stray = remembered.root / ".batchit" / "plan-snapshot-0123456789abcdef"
    stray.write_bytes(b"left by a build killed between its data and its head")
    remembered.build()
    head = json.loads((remembered.root / HEAD).read_text())
    assert [p.name for p in (remembered.root / ".batchit").glob("plan-snapshot-*")] == [head["data"]]


def test_a_key8_output_whose_discovered_includes_moved_its_key_leaves_no_snapshot(project: Project) -> None:
    switch_include(project, HEAD_OF_CONFIG + PAGES_RULE.replace('"{stem}.html"', '"{stem}-{key8}.html"'))
    assert not (project.root / HEAD).exists()
    assert plan(project) == full_plan(project)


def test_work_runs_here_when_no_child_process_can_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_process() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_process)
    with concurrently(functools.partial(lambda value: value, [1, 2]), in_child=True) as value:
        assert value() == [1, 2]


def test_an_input_back_from_quarantine_keys_the_aggregate_reading_it_with_its_output(
    project: Project,
) -> None:
    """The snapshot a build leaves while an input is held has no output hash for it: when the input
    returns to its built bytes, the aggregate over its rule is planned with the recorded one."""
    project.config(PICKY_CONFIG + AGGREGATE_OF_PARSE)
    project.write({"picky.py": PICKY_MODULE, "tools.py": TOOLS, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    project.build()
    project.write({"in/b.txt": "bad\n"})
    project.build(expect=1)
    project.build(expect=1)  # nothing changed: this one leaves a snapshot
    project.write({"in/b.txt": "b\n"})
    project.build()
    [aggregate] = [o for o in project.manifest()["outputs"] if o["path"] == "all.txt"]
    assert aggregate["action_key"] and all(i["blake3"] for i in aggregate["inputs"]), aggregate
    assert project.read("_build/all.txt") == "A\nB\n"
    project.build()
    assert project.manifest()["summary"]["built"] == project.manifest()["summary"]["restored"] == 0


PACKAGED_STEP = (
    HEAD_OF_CONFIG
    + """\
  stamp:
    inputs: ["src/*.txt"]
    output: "{stem}.txt"
    steps:
      - python: {function: "pkg.tool:stamp", version: "1"}
"""
)
"""One rule whose `python` step lives in a package of the project, `pkg/tool.py`."""

TOOL_WITH_OPTIONAL_HELPERS = """\
try:
    from pkg import extra
    MARK = extra.MARK
except ImportError:
    MARK = "none"
try:
    from pkg.sub import deep
    MARK += deep.MARK
except ImportError:
    pass

def stamp(value, ctx):
    return value.decode() + MARK
"""
"""`pkg/tool.py`: stamps each input with what the optional helper modules it imports say."""

MODULES_APPEARING: dict[str, tuple[dict[str, str], str]] = {
    "a module it imports appears": ({"pkg/extra.py": "MARK = 'extra'\n"}, "a\nextra"),
    "a namespace package module it imports appears": (
        {"pkg/sub/deep.py": "MARK = '+deep'\n"},
        "a\nnone+deep",
    ),
    "a package shadows its module": (
        {"pkg/tool/__init__.py": "def stamp(value, ctx):\n    return 'shadowed'\n"},
        "shadowed",
    ),
}
"""Files that change which project modules a step runs, none of them existing before, and the
output the step then makes from `a\\n`."""


@pytest.mark.parametrize("change", list(MODULES_APPEARING))
def test_a_project_module_appearing_where_a_step_imports_from_is_seen(project: Project, change: str) -> None:
    """Python finds a module by looking in folders: a file that appears in one of a package's
    folders changes what a step runs, as an edit of its source does, with no file it read changed."""
    project.config(PACKAGED_STEP)
    project.write({"pkg/__init__.py": "", "pkg/tool.py": TOOL_WITH_OPTIONAL_HELPERS, "src/a.txt": "a\n"})
    project.build()
    project.build()
    assert plan_event(project)["replayed"] is True
    assert project.read("_build/a.txt") == "a\nnone"
    files, output = MODULES_APPEARING[change]
    project.write(files)
    assert plan(project) == full_plan(project)
    project.build()
    assert (work(project), project.read("_build/a.txt")) == (1, output)
    assert plan(project) == full_plan(project)
