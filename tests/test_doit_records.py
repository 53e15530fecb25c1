"""The run records of doit runs (SPEC sections 5 and 9): `_record` writes one whatever ran beside
it, and retention keeps the runs `runs.keep` counts, through the real `doit` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import COPY_AND_UPPER, PICKY, PICKY_MODULE, TOOLS, Hooks, Project
from test_doit import DODO, doit
from test_records_history import unaudit_the_latest_run

pytestmark = pytest.mark.slow  # each doit and batchit run is a fresh interpreter

BUILD_BETWEEN = """\
import sys
import batchit.doit

DOIT_CONFIG = {"verbosity": 2}
task_site = batchit.doit.tasks("site")


def task_between():
    \"\"\"A `batchit build` of one rule, run after doit loaded the tasks and before they run.\"\"\"
    argv = [sys.executable, "-m", "batchit", "-C", "site", "build", "--no-progress", "copy"]
    return {"actions": [argv], "uptodate": [False], "verbosity": 2}
"""


def kept_runs(site: Project) -> list[str]:
    """`batchit runs --json`: the ids of the runs kept, oldest first."""
    result = site.run("runs", "--json")
    assert result.code == 0, result.describe()
    return [run["run_id"] for run in json.loads(result.stdout)]


def test_record_of_a_doit_run_survives_a_batchit_build_between_its_sub_tasks(tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text(BUILD_BETWEEN, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config("runs: {keep: 1}\n" + COPY_AND_UPPER)
    site.write({"tools.py": TOOLS, "src/a.txt": "alpha\n", "src/b.txt": "beta\n"})
    result = doit(site, "between", "site")  # doit runs the tasks in the order named
    assert result.code == 0, result.describe()
    latest = (site.root / ".batchit/runs/LATEST").read_text().strip()
    assert kept_runs(site) == [latest]
    manifest = site.manifest()
    assert manifest["summary"]["built"] == 3  # the doit run's: `upper` twice and `index`
    assert (site.root / ".batchit/runs" / latest / "report.html").is_file()
    assert site.run("verify").code == 0


def test_a_doit_run_whose_sub_task_failed_is_recorded_under_the_id_its_quarantine_names(
    tmp_path: Path,
) -> None:
    """doit runs no `_record` after a failed sub-task: the run is recorded when doit exits."""
    (tmp_path / "dodo.py").write_text(BUILD_BETWEEN, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config("runs: {keep: 2}\n" + PICKY)
    site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n"})
    site.build()
    site.write({"in/b.txt": "bad\n", "in/c.txt": "c\n"})
    failed = doit(site, "--continue", "site")  # c.txt runs, and logs what it printed
    assert failed.code != 0, failed.describe()
    [held] = json.loads(site.run("quarantine", "list", "--json").stdout)
    assert kept_runs(site)[-1] == held["run_id"] == site.manifest()["run_id"]
    manifest = site.manifest()
    assert (manifest["status"], manifest["summary"]["built"], manifest["summary"]["quarantined"]) == (
        "failed",
        1,
        1,
    )
    assert [f["quarantine"] for f in manifest["failures"]] == [held["quarantine"]]
    assert (site.root / ".batchit/runs" / held["run_id"] / "logs/c.txt.log").is_file()
    assert site.run("report", held["run_id"]).code == 0
    site.write({"in/b.txt": "b\n"})
    replayed = site.run("replay", held["run_id"], "--failed", "--no-progress")
    assert replayed.code == 0, replayed.describe()
    assert site.read("_build/b.txt") == "B\n"
    assert kept_runs(site)[0] == held["run_id"]  # runs.keep counts it as the record it is


def test_an_output_whose_input_a_doit_run_quarantined_has_the_status_a_build_gives_it(
    tmp_path: Path,
) -> None:
    """b.txt was built, then its input turned bad: its old output stays, listed as `failed` by
    the run that tried to rebuild it, whether that run is a build or a doit run."""
    statuses = {}
    for runner in ("build", "doit"):
        (tmp_path / runner / "dodo.py").parent.mkdir()
        (tmp_path / runner / "dodo.py").write_text(DODO, encoding="utf-8")
        site = Project(tmp_path / runner / "site")
        site.config(PICKY)
        site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "b\n"})
        site.build()
        site.write({"in/b.txt": "bad\n"})
        if runner == "build":
            site.build(expect=1)
        else:
            assert doit(site, "--continue", "site").code != 0
        statuses[runner] = {o["path"]: o["status"] for o in site.manifest()["outputs"]}
    assert statuses["doit"]["b.txt"] == statuses["build"]["b.txt"] == "failed"


COPY_BY_STEM = """\
version: 1
rules:
  copy:
    inputs: ["src/**/*.txt"]
    output: "{stem}.txt"
    steps: [file.copy: {}]
"""
"""A rule whose jobs for src/a.txt and src/sub/a.txt would both write a.txt: found while planning."""

CONFIG_ERRORS = {
    "unknown-key": (COPY_BY_STEM.replace("output:", "outptu:"), "outptu"),
    "two-jobs-one-output": (COPY_BY_STEM, "a.txt"),
}


@pytest.mark.parametrize("case", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_a_config_error_under_doit_is_one_message_without_a_traceback(
    tmp_path: Path, case: tuple[str, str]
) -> None:
    config, named = case
    (tmp_path / "dodo.py").write_text(BUILD_BETWEEN, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(config)
    site.write({"src/a.txt": "a\n", "src/sub/a.txt": "b\n"})
    for command in (("list",), ("site",)):
        result = doit(site, *command)
        assert result.code == 3, result.describe()  # doit's exit code for an invalid task
        assert "Traceback" not in result.stderr, result.describe()
        assert result.stderr.startswith("ERROR: batchit: "), result.describe()
        assert named in result.stderr and "fix:" in result.stderr, result.describe()


def test_a_dodo_naming_a_folder_without_the_config_says_how_to_name_it_in_dodo_py(tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text('import batchit.doit\ntask_site = batchit.doit.tasks("sight")\n')
    (tmp_path / "site").mkdir()
    result = doit(tmp_path, "list")
    assert result.code == 3, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert result.stderr.startswith("ERROR: batchit: batchit.yaml: not found in "), result.describe()
    assert "batchit.doit.tasks(" in result.stderr, result.describe()  # not batchit's -C DIR or -f FILE
    assert "-C DIR" not in result.stderr, result.describe()


def test_a_signing_key_that_cannot_be_read_fails_the_first_sub_task_before_any_job_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `batchit build` checks before any work (exit 2, nothing built), not after every job ran."""
    (tmp_path / "dodo.py").write_text('import batchit.doit\ntask_site = batchit.doit.tasks("site")\n')
    site = Project(tmp_path / "site")
    site.config(COPY_AND_UPPER)
    site.write({"tools.py": TOOLS, "src/a.txt": "alpha\n", "src/b.txt": "beta\n"})
    monkeypatch.setenv("BATCHIT_SIGNING_KEY", str(tmp_path / "no-such.key"))
    result = doit(site)
    assert result.code == 1, result.describe()
    assert "$BATCHIT_SIGNING_KEY names" in result.stdout + result.stderr, result.describe()
    assert "Traceback" not in result.stdout + result.stderr, result.describe()
    built = (
        [p for p in (site.root / "_build").rglob("*") if p.is_file()]
        if (site.root / "_build").exists()
        else []
    )
    assert built == [], result.describe()
    monkeypatch.delenv("BATCHIT_SIGNING_KEY")
    again = doit(site)
    assert again.code == 0, again.describe()
    assert site.manifest()["summary"]["built"] == 5


def test_the_report_of_a_doit_run_shows_what_each_sub_task_did(tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text('import batchit.doit\ntask_site = batchit.doit.tasks("site")\n')
    site = Project(tmp_path / "site")
    site.config(COPY_AND_UPPER)
    site.write({"tools.py": TOOLS, "src/a.txt": "alpha\n", "src/b.txt": "beta\n"})
    result = doit(site, "-n", "2", "-P", "process", "site")  # sub-tasks in other processes
    assert result.code == 0, result.describe()
    latest = (site.root / ".batchit/runs/LATEST").read_text().strip()
    run = json.loads((site.root / ".batchit/runs" / latest / "run.json").read_text())
    assert run["throughput"]["jobs"] == site.manifest()["summary"]["built"] == 5
    assert run["throughput"]["bytes"] > 0 and sum(run["stages"].values()) > 0
    assert len(run["slowest"]) == 5
    assert {tuple(row["reasons"]) for row in run["rebuilt"]} == {("new output",)}


def test_batchit_replays_the_jobs_a_doit_run_ran_with_its_seed(tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text(DODO, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(PICKY)
    site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    site.build()
    site.write({"in/b.txt": "b2\n"})
    result = doit(site, "site")
    assert result.code == 0, result.describe()
    run_id = site.manifest()["run_id"]
    record = json.loads((site.root / ".batchit/runs" / run_id / "replay.json").read_text())
    assert isinstance(record["seed"], int)
    [job] = record["jobs"]  # a.txt was up to date: only b.txt's sub-task ran its job
    assert (job["output"], job["status"], [i["path"] for i in job["inputs"]]) == (
        "b.txt",
        "built",
        ["in/b.txt"],
    )
    site.write({"in/b.txt": "b3\n"})
    replayed = site.run("replay", run_id, "--no-progress")
    assert replayed.code == 0, replayed.describe()
    assert f"input changed since run {run_id}: in/b.txt" in replayed.stderr
    assert site.manifest()["summary"]["built"] == 1
    assert site.read("_build/b.txt") == "B3\n"


def test_a_doit_run_beside_an_input_still_quarantined_fails_and_alerts_as_a_build_does(
    tmp_path: Path, webhook: str
) -> None:
    """The held job's sub-task fails, another builds: the run recorded as doit exits counts the
    held input as `batchit build` does (failed, one quarantined) and sends the failure alert."""
    (tmp_path / "dodo.py").write_text(DODO, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(PICKY + f'alerts: {{webhook: "{webhook}", when: failure}}\n')
    site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "bad\n"})
    assert doit(site, "--continue", "site").code != 0  # b.txt is quarantined
    site.write({"in/c.txt": "c\n"})
    failed = doit(site, "--continue", "site")
    assert failed.code != 0 and "is quarantined" in failed.stdout + failed.stderr, failed.describe()
    manifest = site.manifest()
    assert (manifest["status"], manifest["summary"]["built"], manifest["summary"]["quarantined"]) == (
        "failed",
        1,
        1,
    )
    assert [f["input"] for f in manifest["failures"]] == ["in/b.txt"]
    assert {o["path"]: o["status"] for o in manifest["outputs"]}["c.txt"] == "built"
    assert [body["run_id"] for _, body in Hooks.received][-1] == manifest["run_id"]
    alerted = Hooks.received[-1][1]
    assert (alerted["status"], alerted["summary"], alerted["failures"]) == ("failed", manifest["summary"], [])
    built = site.run("build", "--no-progress")  # the same state, as `batchit build` records it
    assert built.code == 1, built.describe()
    assert site.manifest()["summary"]["quarantined"] == 1
    assert Hooks.received[-1][1]["failures"] == []


def test_a_doit_run_recorded_under_a_new_id_moves_its_quarantine_there(tmp_path: Path) -> None:
    """A `batchit build` records a run after doit loaded the tasks: the doit run is recorded under
    an id minted then, and its quarantine, failure and run entry agree on it."""
    (tmp_path / "dodo.py").write_text(BUILD_BETWEEN, encoding="utf-8")
    site = Project(tmp_path / "site")
    copy = '  copy:\n    inputs: ["other/*.txt"]\n    output: "{name}"\n    steps: [file.copy: {}]\n'
    site.config(PICKY + copy)
    site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "other/x.txt": "x\n"})
    site.build()
    site.write({"in/b.txt": "bad\n", "other/x.txt": "x2\n"})
    failed = doit(site, "--continue", "between", "site")  # `between` records a run, then b.txt fails
    assert failed.code != 0, failed.describe()
    [held] = json.loads(site.run("quarantine", "list", "--json").stdout)
    runs = kept_runs(site)
    assert runs[-1] == held["run_id"] == site.manifest()["run_id"], failed.describe()
    reason = json.loads((site.root / f"{held['quarantine']}.reason.json").read_text())
    assert reason["run_id"] == held["run_id"]
    assert site.run("report", held["run_id"]).code == 0
    entries = [json.loads(line) for line in (site.root / ".batchit/audit.log").read_text().splitlines()]
    [quarantined] = [e["details"] for e in entries if e["kind"] == "quarantine"]
    recorded = entries[-1]["details"]
    assert (recorded["run_id"], recorded["loaded_as"]) == (held["run_id"], quarantined["run_id"])
    assert quarantined["run_id"] not in runs


@pytest.mark.parametrize("parallel", [(), ("-n", "2", "-P", "process")], ids=["serial", "processes"])
def test_a_doit_sub_task_that_quarantines_audits_a_killed_builds_run_first(
    tmp_path: Path, parallel: tuple[str, ...]
) -> None:
    """A build killed after it recorded its run, before its audit entry: the doit run's quarantine
    entry comes after the killed run's (`recovered`), once, or the run could never be audited."""
    (tmp_path / "dodo.py").write_text(DODO, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(PICKY)
    site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n"})
    site.build()
    site.write({"in/c.txt": "c\n"})
    site.build()
    killed = site.manifest()["run_id"]
    log = site.root / ".batchit/audit.log"
    before = unaudit_the_latest_run(site)
    site.write({"in/b.txt": "bad\n", "in/d.txt": "d\n", "in/e.txt": "e\n"})
    assert doit(site, "--continue", *parallel, "site").code != 0
    entries = [json.loads(line) for line in log.read_bytes().splitlines()[len(before) :]]
    assert [entry["kind"] for entry in entries] == ["run", "quarantine", "run"]
    assert (entries[0]["details"]["run_id"], entries[0]["details"]["recovered"]) == (killed, True)
    assert entries[2]["details"]["run_id"] == site.manifest()["run_id"]
    checked = site.run("audit", "verify")
    assert checked.code == 0 and "no entry in the log" not in checked.stdout, checked.describe()


LEFT_WRITER = """\
import io
import sys

from doit.action import Writer

import batchit.doit

# What two actions overlapping in doit's threads (`-P thread`) can leave as doit exits: each puts
# its Writer over `sys.stderr` and puts back what it found, so the one ending last may put back
# the other's, which at verbosity 0 only captures; or, when a python step put batchit's per-thread
# stand-in over that Writer, the stand-in. Left here, it is left whatever the timing.
sys.stderr = Writer(io.StringIO())
task_site = batchit.doit.tasks("site")
"""

LEFT_STAND_IN = LEFT_WRITER.replace(
    "sys.stderr = Writer(io.StringIO())",
    "from batchit.operators.capture import ThreadStream\n\nsys.stderr = ThreadStream(Writer(io.StringIO()))",
)


@pytest.mark.parametrize("dodo", [LEFT_WRITER, LEFT_STAND_IN], ids=["writer", "stand-in over a writer"])
def test_the_record_at_doit_exit_is_shown_when_a_capturing_writer_is_left_as_stderr(
    tmp_path: Path, dodo: str
) -> None:
    """The record made as doit exits (no `_record` selected) says where it is on doit's real stderr."""
    (tmp_path / "dodo.py").write_text(dodo, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(PICKY)
    site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "in/b.txt": "b\n"})
    result = doit(site, "-n", "2", "-P", "thread", "-v", "0", "site:a.txt", "site:b.txt")
    assert result.code == 0, result.describe()
    assert f"this run is recorded as {site.manifest()['run_id']}" in result.stderr, result.describe()


KILLED_BETWEEN = """\
import sqlite3
import subprocess
import sys
from pathlib import Path

from blake3 import blake3

import batchit.doit

DOIT_CONFIG = {"verbosity": 2}
task_site = batchit.doit.tasks("site")


def kill_a_build():
    \"\"\"What a `batchit build` killed after it recorded its run, before its audit entry, leaves
    (as test_records_history.unaudit_the_latest_run leaves it).\"\"\"
    argv = [sys.executable, "-m", "batchit", "-C", "site", "build", "--no-progress", "copy"]
    subprocess.run(argv, check=True)
    log = Path("site/.batchit/audit.log")
    *before, _ = log.read_bytes().splitlines()
    log.write_bytes(b"".join(line + b"\\n" for line in before))
    with sqlite3.connect("site/.batchit/state.db") as db:
        head = [(blake3(before[-1]).hexdigest(), "audit_head"), (str(len(before)), "audit_seq")]
        db.executemany("UPDATE meta SET value = ? WHERE key = ?", head)
    db.close()
    Path("site/.batchit/build-in-progress").touch()


def task_killed_build():
    return {"actions": [kill_a_build], "uptodate": [False]}
"""
"""A dodo.py with a task that leaves what a build killed after it recorded its run leaves."""


def test_a_build_killed_between_two_sub_tasks_of_a_doit_run_is_audited_before_the_next_quarantine(
    tmp_path: Path,
) -> None:
    """doit's process checked for a killed build's missing audit entry before its first job only:
    one killed between two of its sub-tasks was never audited once the next one quarantined."""
    (tmp_path / "dodo.py").write_text(KILLED_BETWEEN, encoding="utf-8")
    site = Project(tmp_path / "site")
    site.config(
        PICKY
        + '  copy:\n    inputs: ["src/*.txt"]\n    output: "copy/{stem}.txt"\n    steps: [file.copy: {}]\n'
    )
    site.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "src/c.txt": "c\n"})
    site.build()
    log = site.root / ".batchit/audit.log"
    before = log.read_bytes().splitlines()
    site.write({"in/a.txt": "A\n", "in/b.txt": "bad\n", "src/c.txt": "C\n"})
    result = doit(site, "site:a.txt", "killed_build", "site:b.txt")
    assert result.code != 0, result.describe()
    entries = [json.loads(line) for line in log.read_bytes().splitlines()[len(before) :]]
    assert [entry["kind"] for entry in entries] == ["run", "quarantine", "run"], result.describe()
    assert entries[0]["details"]["recovered"] is True
    checked = site.run("audit", "verify")
    assert checked.code == 0 and "no entry in the log" not in checked.stdout, checked.describe()
