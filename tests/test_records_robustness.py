"""Run records that meet damage or a stop (SPEC sections 4, 5, 7): `verify` reports what it cannot
check instead of aborting, a stop while a run is recorded never leaves LATEST naming a deleted run,
retention keeps LATEST's run and drops what a stopped build left, a damaged `run.json` is a
finding, and a backslash in a file name is an ordinary character."""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import COPY_CONFIG, Project, Result, wait_until

from batchit.fsutil import is_relative_clean
from batchit.record.runs import IN_PROGRESS
from batchit.record.signing import first_key, load_public_key


def runs_dir(project: Project) -> Path:
    """`.batchit/runs`."""
    return project.root / ".batchit" / "runs"


def latest_id(project: Project) -> str:
    """The run LATEST names."""
    return (runs_dir(project) / "LATEST").read_text().strip()


def run_folders(project: Project) -> list[str]:
    """The run folders in `.batchit/runs`, oldest first."""
    return sorted(p.name for p in runs_dir(project).iterdir() if p.is_dir())


# --- verify reports every output it cannot check -------------------------------------------------


class Unreadable(NamedTuple):
    """Something standing where an output was that `os.stat` fails on, and the problem it must give."""

    name: str
    output: str
    kind: str
    words: str


UNREADABLE = [
    Unreadable("its-folder-became-a-file", "sub/c.txt", "missing", "missing"),
    Unreadable("a-symlink-loop", "a.txt", "modified", "cannot be read"),
    Unreadable("a-folder-in-its-place", "a.txt", "modified", "a directory stands there, not the file"),
]


@pytest.mark.parametrize("case", UNREADABLE, ids=[c.name for c in UNREADABLE])
def test_verify_lists_an_output_it_cannot_stat_as_a_problem(copies: Project, case: Unreadable) -> None:
    copies.build()
    if case.name == "its-folder-became-a-file":
        shutil.rmtree(copies.root / "_build/sub")
        (copies.root / "_build/sub").write_text("a file where the folder was\n")
    elif case.name == "a-folder-in-its-place":
        (copies.root / "_build/a.txt").unlink()
        (copies.root / "_build/a.txt").mkdir()
    else:
        (copies.root / "_build/a.txt").unlink()
        (copies.root / "_build/a.txt").symlink_to("a.txt")
    result = copies.run("verify", "--json")
    assert result.code == 1, result.describe()
    document = json.loads(result.stdout)
    assert document["outputs"] == 3
    [problem] = document["problems"]
    assert (problem["kind"], problem["path"]) == (case.kind, case.output)
    assert case.words in problem["detail"]
    text = copies.run("verify")
    assert text.code == 1 and f"  {case.kind}: {case.output}: " in text.stdout, text.describe()


def test_verify_reports_a_manifest_path_holding_a_nul_byte(copies: Project) -> None:
    copies.build()
    manifest = runs_dir(copies) / latest_id(copies) / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"path":"a.txt"', b'"path":"a\\u0000.txt"'))
    result = copies.run("verify", "--json")
    assert result.code == 1, result.describe()
    assert "Traceback" not in result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert {(p["kind"], p["path"]) for p in problems} == {
        ("manifest", "manifest.json"),
        ("manifest", "a\0.txt"),
        ("provenance", "a.txt"),  # the run's provenance names the output the edit renamed
        ("provenance", "a\0.txt"),
    }
    assert any("NUL" in p["detail"] for p in problems)


# --- a stop while the run is recorded --------------------------------------------------------------

KEEP_ONE = COPY_CONFIG + "runs: {keep: 1}\n"


STALL = "00000000T000000000Z-stall0"
"""A run folder that sorts before every real run, so the report's trend reads its run.json first."""


@contextlib.contextmanager
def build_held_at_its_report(project: Project) -> Iterator[subprocess.Popen[str]]:
    """A build started in the background and held, deterministically, while it renders its report.

    The report's trend reads the run.json of every run folder; STALL's is a FIFO, whose read waits
    for a writer, and this test holds the writing end open until the block ends. STALL is marked as
    a doit run this (living) process is still writing, so retention leaves it alone."""
    stall = runs_dir(project) / STALL
    stall.mkdir()
    (stall / IN_PROGRESS).write_text(f"{os.getpid()}\n")
    os.mkfifo(stall / "run.json")
    build = subprocess.Popen(
        [sys.executable, "-m", "batchit", "build", "--no-progress"],
        cwd=project.root,
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer: list[int] = []

    def reading() -> bool:
        assert build.poll() is None, f"the build ended (exit {build.returncode}) before its report"
        try:
            writer.append(os.open(stall / "run.json", os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:  # ENXIO: no reader has opened the FIFO yet
            if exc.errno != errno.ENXIO:
                raise
            return False
        return True

    try:
        wait_until(reading, "the build to read run.json while it renders its report")
        try:
            yield build
        finally:
            os.close(writer[0])  # the read ends: an empty run.json, skipped like a damaged one
        build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
        build.communicate()
        shutil.rmtree(stall)


@pytest.fixture
def recorded_once(copies: Project) -> Project:
    """A project with `runs.keep: 1`, built once, and an input edited since: its next build has work
    to record, and retention at the end of that build removes the first run."""
    copies.config(KEEP_ONE)
    copies.build()
    copies.write({"src/a.txt": "alpha, edited\n"})
    return copies


def test_a_build_killed_while_it_records_its_run_leaves_latest_naming_a_whole_record(
    recorded_once: Project,
) -> None:
    first = latest_id(recorded_once)
    with build_held_at_its_report(recorded_once) as build:
        build.send_signal(signal.SIGKILL)
        build.wait()
    assert latest_id(recorded_once) == first
    assert (runs_dir(recorded_once) / first / "manifest.json").is_file(), "retention waits for LATEST"
    checked = recorded_once.run("verify")
    assert checked.code == 1, checked.describe()  # the first run's record, outputs rebuilt since
    assert "modified: a.txt: modified" in checked.stdout
    recorded_once.build()
    assert run_folders(recorded_once) == [latest_id(recorded_once)]
    assert recorded_once.run("verify").code == 0


def test_a_stop_signal_while_the_run_is_recorded_waits_for_the_whole_record(recorded_once: Project) -> None:
    first = latest_id(recorded_once)
    with build_held_at_its_report(recorded_once) as build:
        build.send_signal(signal.SIGTERM)
    assert build.returncode == 130
    run = latest_id(recorded_once)
    assert run != first
    assert {"manifest.json", "run.json", "report.html"} <= {
        p.name for p in (runs_dir(recorded_once) / run).iterdir()
    }
    assert run_folders(recorded_once) == [run], "retention ran once LATEST named the new run"
    checked = recorded_once.run("verify")
    assert checked.code == 0, checked.describe()


# --- retention keeps LATEST's run; a folder a stopped build left is no record -----------------------


class Leftover(NamedTuple):
    """What a build stopped while writing its record leaves in its run folder, LATEST not yet moved."""

    name: str
    files: tuple[str, ...]


LEFTOVERS = [
    Leftover("stopped-before-run-json", ("manifest.json", "manifest.json.sig")),
    Leftover("stopped-before-latest", ("manifest.json", "manifest.json.sig", "run.json")),
]


def leave_a_stopped_run(project: Project, leftover: Leftover) -> str:
    """Write the folder of a run newer than LATEST's, holding `leftover.files` (copies of LATEST's)."""
    newer = "99991231T235959999Z-killed"
    (runs_dir(project) / newer).mkdir()
    for name in leftover.files:
        shutil.copy(runs_dir(project) / latest_id(project) / name, runs_dir(project) / newer / name)
    return newer


@pytest.mark.parametrize("leftover", LEFTOVERS, ids=[x.name for x in LEFTOVERS])
def test_gc_keeps_the_run_latest_names_over_a_newer_stopped_one(copies: Project, leftover: Leftover) -> None:
    copies.config(KEEP_ONE)
    copies.build()
    kept = latest_id(copies)
    leave_a_stopped_run(copies, leftover)
    collected = copies.run("gc")
    assert collected.code == 0, collected.describe()
    assert run_folders(copies) == [kept]
    assert latest_id(copies) == kept
    assert copies.run("verify").code == 0


def test_a_run_folder_without_run_json_is_not_one_of_the_kept_records(copies: Project) -> None:
    copies.config(COPY_CONFIG + "runs: {keep: 2}\n")
    copies.build()
    copies.build()
    both = run_folders(copies)
    leave_a_stopped_run(copies, LEFTOVERS[0])
    collected = copies.run("gc")
    assert collected.code == 0, collected.describe()
    assert "removed 0 run record(s)" in collected.stdout
    assert run_folders(copies) == both


# --- a damaged run.json is a finding, never a crash ---------------------------------------------------


class Damaged(NamedTuple):
    """A damaged `run.json`, and the counts `batchit runs` lists for its run."""

    name: str
    document: str
    listed: dict[str, int]


DAMAGED = [
    Damaged("a-list", "[]", {"built": 3}),  # not an object: the manifest's summary, as with none
    Damaged("a-string", '"a string"', {"built": 3}),
    Damaged("fields-of-wrong-type", '{"summary": 5, "seconds": "slow", "status": "ok"}', {}),
]


@pytest.mark.parametrize("damaged", DAMAGED, ids=[d.name for d in DAMAGED])
def test_a_damaged_run_json_of_a_past_run_is_a_finding(copies: Project, damaged: Damaged) -> None:
    copies.build()
    old = latest_id(copies)
    (runs_dir(copies) / old / "run.json").write_text(damaged.document)
    listed = copies.run("runs", "--json")
    assert listed.code == 0, listed.describe()
    [summary] = json.loads(listed.stdout)
    assert summary["run_id"] == old and summary["status"] == "ok" and summary["seconds"] is None
    assert {k: v for k, v in summary["summary"].items() if v} == damaged.listed
    shown = copies.run("report", old)
    assert shown.code == 2, shown.describe()
    assert shown.stderr.startswith(
        f"batchit: error: run {old} has no report to render: its run.json is damaged"
    )
    assert "Traceback" not in shown.stderr
    copies.build()
    assert latest_id(copies) != old, "the next build records its run"
    assert copies.run("runs").code == 0


# --- a backslash is an ordinary character of a POSIX file name ----------------------------------------


def test_an_output_with_a_backslash_in_its_name_verifies_and_is_explained(copies: Project) -> None:
    copies.write({"src/back\\slash.txt": "yo\n"})
    copies.build()
    assert (copies.root / "_build/back\\slash.txt").read_text() == "yo\n"
    checked = copies.run("verify")
    assert checked.code == 0, checked.describe()
    assert "4 output(s) match" in checked.stdout
    explained = copies.run("explain", "back\\slash.txt")
    assert explained.code == 0, explained.describe()
    assert explained.stdout.startswith("_build/back\\slash.txt: up to date")


def test_outputs_whose_names_need_escaping_are_listed_exactly_in_manifest_and_provenance(
    copies: Project,
) -> None:
    odd = ['say "hi".txt', "tab\there.txt", "caf\u00e9.txt"]
    copies.write({f"src/{name}": "odd\n" for name in odd})
    copies.build()
    listed = {output["path"] for output in copies.manifest()["outputs"]}
    assert listed == {"a.txt", "b.txt", "sub/c.txt", *odd}
    runs = copies.root / ".batchit" / "runs"
    provenance = runs / (runs / "LATEST").read_text().strip() / "provenance.intoto.json"
    envelope = json.loads(provenance.read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert {s["name"] for s in statement["subject"]} == listed
    checked = copies.run("verify")
    assert checked.code == 0, checked.describe()


class Relative(NamedTuple):
    """A manifest's output path, and whether it stays inside the folder it is joined to."""

    path: str
    inside: bool


RELATIVE = [
    Relative("back\\slash.txt", True),
    Relative("..\\up.txt", True),  # one file name beginning with two dots, not a parent folder
    Relative("sub/c.txt", True),
    Relative("../up.txt", False),
    Relative("sub/../../up.txt", False),
    Relative("/etc/passwd", False),
    Relative("", False),
]


@pytest.mark.parametrize("case", RELATIVE, ids=[repr(c.path) for c in RELATIVE])
def test_only_parent_segments_and_absolute_paths_leave_the_output_folder(case: Relative) -> None:
    assert is_relative_clean(case.path) is case.inside


def _mint_after(barrier: multiprocessing.synchronize.Barrier, state_dir: str, found: Any) -> None:
    """In a child process: wait for the others, then take the project's first key."""
    barrier.wait()
    found.put(first_key(Path(state_dir), {}).key_id)


def test_runs_that_find_no_key_and_mint_at_once_end_with_one_key(tmp_path: Path) -> None:
    """A build and a sample building into its own folder hold different locks: when both find no
    key and mint one as they record, they must sign with one pair, the one in .batchit/keys."""
    context = multiprocessing.get_context("fork")
    for round_ in range(8):
        state_dir = tmp_path / f"round{round_}" / ".batchit"
        barrier, found = context.Barrier(4), context.Queue()
        children = [
            context.Process(target=_mint_after, args=(barrier, str(state_dir), found)) for _ in range(4)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
        ids = {found.get(timeout=10) for _ in children}
        assert len(ids) == 1, f"round {round_}: {len(ids)} different keys minted"
        assert load_public_key(state_dir / "keys" / "batchit.pub").key_id in ids


# --- a state store SQLite cannot read ------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("build", "--no-progress"), ("plan",), ("reconcile",), ("audit", "verify"), ("gc",), ("clean",)],
    ids=" ".join,
)
def test_a_damaged_state_store_exits_2_naming_it_and_the_fix(
    copies: Project, command: tuple[str, ...]
) -> None:
    copies.build()
    state = copies.root / ".batchit" / "state.db"
    for companion in state.parent.glob("state.db-*"):
        companion.unlink()
    state.write_bytes(b"not a database, written over by something else" * 100)
    before = copies.recorded()
    result = copies.run(*command)
    assert result.code == 2, result.describe()
    assert f"the state store {state} cannot be read" in result.stderr
    assert "fix: move it aside" in result.stderr
    assert "Traceback" not in result.stderr
    after = copies.recorded()
    after.pop(".batchit/lock")  # the pid of whoever held the lock last
    before.pop(".batchit/lock")
    assert after == before


@pytest.mark.parametrize("command", [("explain", "a.txt"), ("audit", "verify")], ids=" ".join)
def test_a_state_store_replaced_by_a_folder_is_named(copies: Project, command: tuple[str, ...]) -> None:
    copies.build()
    state = copies.root / ".batchit" / "state.db"
    for file in [state, *state.parent.glob("state.db-*")]:
        file.unlink()
    state.mkdir()
    result = copies.run(*command)
    assert result.code != 0, result.describe()
    assert "the state store .batchit/state.db cannot be" in result.stderr, result.describe()
    assert "Traceback" not in result.stderr


def test_a_file_where_the_runs_folder_goes_is_named_as_in_the_way(copies: Project) -> None:
    """A file where batchit needs a folder is no full disk: the fix says to move it aside."""
    (copies.root / ".batchit").mkdir()
    (copies.root / ".batchit" / "runs").write_text("notes\n")
    result = copies.run("build", "--no-progress")
    assert result.code == 1, result.describe()
    assert "Not a directory: " in result.stderr and "Traceback" not in result.stderr, result.describe()
    assert "fix: a file on that path stands where a folder must be: move it aside" in result.stderr
    assert not (copies.root / "_build").exists()


# --- the latest run, when LATEST or its manifest is damaged ----------------------------------------


def twice_built(copies: Project) -> Path:
    """Two runs, the second after an edit; the runs folder."""
    copies.build()
    copies.write({"src/d.txt": "delta\n"})
    copies.build()
    return copies.root / ".batchit" / "runs"


@pytest.mark.parametrize("latest", [None, b"\xff\xfe", b"20000101T000000000Z-000000\n"], ids=repr)
def test_without_a_readable_latest_the_newest_kept_record_is_the_latest(
    copies: Project, latest: bytes | None
) -> None:
    runs = twice_built(copies)
    newest = (runs / "LATEST").read_text().strip()
    if latest is None:
        (runs / "LATEST").unlink()
    else:
        (runs / "LATEST").write_bytes(latest)
    checked = copies.run("verify")
    assert checked.code == 0, checked.describe()
    assert f"runs/{newest}/manifest.json" in checked.stdout
    assert "4 output(s) match" in checked.stdout
    shown = copies.run("report")
    assert shown.stdout.strip() == str(runs / newest / "report.html"), shown.describe()
    assert copies.run("reconcile").code == 0


@pytest.mark.parametrize("damage", [b"{bad", b'{"run_id": "x"}', b'{"run_id": "x", "outputs": [{}]}', None])
def test_reconcile_against_a_damaged_or_missing_latest_manifest_exits_2_naming_it(
    copies: Project, damage: bytes | None
) -> None:
    runs = twice_built(copies)
    manifest = runs / (runs / "LATEST").read_text().strip() / "manifest.json"
    if damage is None:
        manifest.unlink()
    else:
        manifest.write_bytes(damage)
    result = copies.run("reconcile")
    assert result.code == 2, result.describe()
    assert str(manifest) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("run_id", ["**", "*", "../elsewhere"])
def test_report_of_what_is_not_a_run_id_exits_2_and_writes_nothing(copies: Project, run_id: str) -> None:
    twice_built(copies)
    before = copies.recorded()
    result = copies.run("report", run_id)
    assert result.code == 2, result.describe()
    assert f"{run_id!r} is not a run id" in result.stderr
    assert copies.recorded() == before


@pytest.mark.parametrize("name", ["batchit-manifest.json", "batchit-manifest.json.sig"])
def test_a_folder_where_a_manifest_copy_goes_stops_the_build_before_any_work(
    copies: Project, name: str
) -> None:
    copies.build()
    (copies.root / "_build" / name).unlink()
    (copies.root / "_build" / name).mkdir()
    copies.write({"src/d.txt": "delta\n"})
    before = copies.recorded()
    result = copies.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert f"_build/{name} is a folder" in result.stderr
    after = copies.recorded()
    after.pop(".batchit/lock")
    before.pop(".batchit/lock")
    assert after == before  # no job ran, no half-written record


def test_a_file_name_holding_a_newline_is_one_line_of_verify_and_reconcile(copies: Project) -> None:
    copies.write({"src/new\nline.txt": "n\n"})
    copies.build()
    (copies.root / "_build/new\nline.txt").write_text("changed\n")
    for command in ("verify", "reconcile"):
        result = copies.run(command)
        assert result.code == 1, result.describe()
        [line] = [line for line in result.stdout.splitlines() if "modified" in line and "line.txt" in line]
        assert "new\\nline.txt" in line


def test_gc_sweeps_the_temporary_files_a_killed_run_left_in_its_records(copies: Project) -> None:
    copies.build()
    state = copies.root / ".batchit"
    run = state / "runs" / (state / "runs/LATEST").read_text().strip()
    litter = [
        state / ".batchit-tmp-0123456789ab-1-validated.json",
        state / ".batchit-tmp-0123456789ab-2-plan-snapshot.json",
        state / "runs/.batchit-tmp-0123456789ab-3-LATEST",
        run / ".batchit-tmp-0123456789ab-4-report.html",
    ]
    for path in litter:
        path.write_text("cut short")
    result = copies.run("gc")
    assert result.code == 0, result.describe()
    assert "and 4 file(s) killed runs left" in result.stdout
    assert not any(path.exists() for path in litter)


def without_root_powers(project: Project, *args: str) -> Result:
    """`batchit ARGS` in the project as a process that file permissions apply to, root or not."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be made to apply")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "batchit", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_an_output_batchit_cannot_read_is_a_finding_of_reconcile_and_rebuilt_by_build(
    copies: Project,
) -> None:
    copies.build()
    output = copies.root / "_build/a.txt"
    os.utime(output, (0, 0))  # its stat no longer vouches for it: planning must read it
    output.chmod(0)
    reconciled = without_root_powers(copies, "reconcile")
    assert reconciled.code == 1, reconciled.describe()
    assert "modified: _build/a.txt: its content differs from the manifest's (unreadable)" in reconciled.stdout
    built = without_root_powers(copies, "build", "--no-progress")
    assert built.code == 0, built.describe()
    assert "1 built" in built.stdout
    assert output.read_text() == "alpha\n"
