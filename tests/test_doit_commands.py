"""doit's other commands and options on batchit's sub-tasks (SPEC section 9), through the real `doit`
command: what only reads (`list`, `info`), one sub-task alone (`-s`), and how a dodo.py names them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import COPY_AND_UPPER, TOOLS, Project
from test_doit import DODO, KEYED_CHAIN, doit, make_project

pytestmark = pytest.mark.slow  # each doit and batchit run is a fresh interpreter


@pytest.mark.parametrize(
    "command",
    [("list", "--all"), ("list", "--all", "--status"), ("info", "site:cdn.json")],
    ids=["list", "list-status", "info"],
)
def test_a_doit_command_that_only_reads_leaves_a_project_never_built_as_it_was(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    site = make_project(tmp_path)
    before = site.snapshot(".")
    result = doit(site, *command)
    assert result.code in (0, 1), result.describe()  # `info` exits 1 for a task not up to date
    assert "site:cdn.json" in result.stdout, result.describe()
    assert not (site.root / ".batchit").exists(), result.describe()
    assert site.snapshot(".") == before


@pytest.mark.parametrize("task", ["site:cdn.json", "site:_record"])
def test_doit_info_names_the_job_a_sub_task_checks_not_the_whole_config(tmp_path: Path, task: str) -> None:
    site = make_project(tmp_path)
    assert doit(site).code == 0
    (site.root / "_build/cdn.json").unlink()
    (site.root / "_build/batchit-manifest.json").unlink()  # `_record` is stale too
    result = doit(site, "info", task)
    assert result.code == 1, result.describe()  # doit's code for a task not up to date
    assert "Config(" not in result.stdout and "Rule(" not in result.stdout, result.describe()
    if task == "site:cdn.json":
        assert "batchit job cdn:* (`batchit -C site plan` says why)" in result.stdout, result.describe()


def test_doit_list_status_after_out_changed_writes_nothing_and_doit_then_builds_there(tmp_path: Path) -> None:
    site = make_project(tmp_path)
    assert doit(site).code == 0
    site.config((site.root / "batchit.yaml").read_text(encoding="utf-8").replace("out: _build", "out: _new"))
    state = site.recorded()
    listed = doit(site, "list", "--all", "--status")
    assert listed.code == 0, listed.describe()
    assert site.recorded() == state
    built = doit(site)
    assert built.code == 0, built.describe()
    assert "`out` changed from _build to _new" in built.stderr, built.describe()
    assert (site.root / "_new/cdn.json").is_file() and (site.root / "_build/cdn.json").is_file()
    assert site.run("verify", "_new").code == 0


def test_doit_s_of_an_aggregate_whose_upstream_never_ran_fails_saying_what_to_run_and_writes_nothing(
    tmp_path: Path,
) -> None:
    site = make_project(tmp_path)
    result = doit(site, "-s", "site:cdn.json")
    assert result.code == 1, result.describe()
    assert "batchit: site:cdn.json (cdn) reads upstream outputs not up to date yet: " in result.stdout
    assert re.search(r"_build/img/blue-16-[0-9a-f]{8}\.webp", result.stdout), result.describe()
    assert "fix: run `doit site:cdn.json` without -s" in result.stdout, result.describe()
    assert "FileNotFoundError" not in result.stdout + result.stderr, result.describe()
    assert not (site.root / "_build").exists()
    assert not (site.root / ".batchit/runs").exists() and not (site.root / ".batchit/audit.log").exists()
    assert doit(site).code == 0
    assert site.run("verify", "_build").code == 0


@pytest.mark.parametrize(
    "task, reads",
    [("site:hashed/note-{key8}.txt", "_build/pages/note.txt"), ("site:mirror/note-{key8}.txt", "{key8}")],
    ids=["input-not-built", "key8-name-not-known"],
)
def test_doit_s_of_a_job_whose_input_is_not_built_yet_fails_saying_what_to_run(
    tmp_path: Path, task: str, reads: str
) -> None:
    site = make_project(tmp_path)
    site.config(KEYED_CHAIN)
    site.write({"src/note.txt": "hello world\n"})
    result = doit(site, "-s", task)
    assert result.code == 1, result.describe()
    assert f"batchit: {task} " in result.stdout and "not up to date yet" in result.stdout, result.describe()
    assert reads in result.stdout and "no longer exists" not in result.stdout, result.describe()
    assert f"fix: run `doit {task}` without -s" in result.stdout, result.describe()
    assert not (site.root / "_build").exists()


def test_doit_s_of_an_aggregate_whose_upstream_is_stale_leaves_it_to_the_next_doit_run(
    tmp_path: Path,
) -> None:
    """The aggregate's key is not known until its upstream job runs: run alone, it would be recorded
    up to date with no key, and the doit run after it would leave it stale."""
    (tmp_path / "dodo.py").write_text(DODO, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(COPY_AND_UPPER)
    site.write({"tools.py": TOOLS, "src/a.txt": "alpha\n", "src/b.txt": "beta\n"})
    assert doit(site).code == 0
    site.write({"src/a.txt": "gamma\n"})
    alone = doit(site, "-s", "site:index.txt")
    assert alone.code == 1, alone.describe()
    assert (
        "_build/upper/a.txt" in alone.stdout and "fix: run `doit site:index.txt` without -s" in alone.stdout
    )
    assert site.read("_build/index.txt") == "AlphA\nbetA\n"
    result = doit(site)
    assert result.code == 0, result.describe()
    assert site.read("_build/index.txt") == "gAmmA\nbetA\n"
    assert (site.root / ".batchit/cache").is_dir()
    planned = site.run("plan")
    assert "plan: 0 of 5 jobs to do" in planned.stdout, planned.describe()


TWINS = """\
import batchit.doit

task_site = batchit.doit.tasks("x/site")
task_site_y = batchit.doit.tasks("y/site")
"""


@pytest.mark.parametrize("command", [("list",), ()], ids=["list", "run"])
def test_two_projects_of_one_folder_name_in_a_dodo_py_are_told_to_give_one_a_basename(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    for place in ("x", "y"):
        make_project(tmp_path / place)
    (tmp_path / "dodo.py").write_text(TWINS, encoding="utf-8")
    result = doit(tmp_path, *command)
    assert result.code == 3, result.describe()  # doit's code for a task it cannot load
    assert "Traceback" not in result.stderr, result.describe()
    assert result.stderr.startswith("ERROR: batchit: x/site and y/site both name their doit tasks `site`"), (
        result.describe()
    )
    assert (
        'basename in dodo.py: task_site_y = batchit.doit.tasks("y/site", basename="y_site")' in result.stderr
    )
    named = TWINS.replace('tasks("y/site")', 'tasks("y/site", basename="y_site")')
    (tmp_path / "dodo.py").write_text(named, encoding="utf-8")
    fixed = doit(tmp_path, "list")
    assert fixed.code == 0 and "y_site " in fixed.stdout, fixed.describe()


def test_a_task_of_the_dodo_named_as_a_batchit_project_is_told_apart_by_a_basename(tmp_path: Path) -> None:
    make_project(tmp_path)
    dodo = 'import batchit.doit\n\ndef task_site():\n    return {"actions": ["true"]}\n\n'
    (tmp_path / "dodo.py").write_text(dodo + 'task_web = batchit.doit.tasks("site")\n', encoding="utf-8")
    result = doit(tmp_path, "list")
    assert result.code == 3, result.describe()
    assert (
        'dodo.py\'s task_site and batchit.doit.tasks("site") both make doit tasks named `site`'
        in result.stderr
    )
    assert 'batchit.doit.tasks("site", basename="...")' in result.stderr, result.describe()
