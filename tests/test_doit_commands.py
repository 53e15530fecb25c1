"""doit's other commands and options on batchit's sub-tasks (SPEC section 9), through the real `doit`
command: what only reads (`list`, `info`), one sub-task alone (`-s`), and how a dodo.py names them."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_doit import doit, make_project

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
