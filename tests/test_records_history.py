"""Run history (SPEC section 5, 8): events.jsonl, `runs`, `report`, retention, `gc` and the audit trail."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
from blake3 import blake3
from conftest import THREE_SOURCES, Project

from batchit.record.manifest import RunInfo
from batchit.record.report import render_report
from batchit.record.rundata import ROW_CAP, JobRow, run_document

COPY = """\
version: 1
out: _build
rules:
  copy:
    inputs: ["src/**/*.txt"]
    output: "{path}.txt"
    steps:
      - text.load: {}
      - markdown.render: {}
"""


@pytest.fixture
def copies(project: Project) -> Project:
    """Three text files rendered into `_build` (cacheable steps): a small build with a full record."""
    project.config(COPY)
    project.write(THREE_SOURCES)
    return project


def runs_dir(project: Project) -> Path:
    """`.batchit/runs`."""
    return project.root / ".batchit" / "runs"


def latest(project: Project) -> Path:
    """The latest run's directory."""
    return runs_dir(project) / (runs_dir(project) / "LATEST").read_text().strip()


def audit_lines(project: Project) -> list[bytes]:
    """The audit log's lines."""
    return (project.root / ".batchit/audit.log").read_bytes().splitlines()


def unaudit_the_latest_run(project: Project) -> list[bytes]:
    """Leave what a SIGKILL just before a build's audit append leaves: the run's whole record, the
    marker of a build that did not finish, and neither the run's line nor the audit head and seq
    it moved. The audit lines that stay."""
    *before, _ = audit_lines(project)
    (project.root / ".batchit/audit.log").write_bytes(b"".join(line + b"\n" for line in before))
    with sqlite3.connect(project.root / ".batchit/state.db") as db:
        db.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [(blake3(before[-1]).hexdigest(), "audit_head"), (str(len(before)), "audit_seq")],
        )
    db.close()
    (project.root / ".batchit/build-in-progress").touch()
    return before


def test_every_run_writes_its_whole_record(copies: Project) -> None:
    copies.build()
    names = {p.name for p in latest(copies).iterdir()}
    expected = {"manifest.json", "manifest.json.sig", "provenance.intoto.json", "report.html", "events.jsonl"}
    assert expected <= names
    out = {p.name for p in (copies.root / "_build").iterdir()}
    assert {"batchit-manifest.json", "batchit-manifest.json.sig"} <= out


def test_events_jsonl_holds_every_engine_event(copies: Project) -> None:
    copies.build()
    events = [json.loads(line) for line in (latest(copies) / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan"
    jobs = [e for e in events if e["event"] == "job"]
    assert sorted(e["output"] for e in jobs) == ["_build/a.txt", "_build/b.txt", "_build/sub/c.txt"]
    assert all(e["status"] == "built" and e["duration"] >= 0 for e in jobs)


def test_runs_lists_past_runs_oldest_first(copies: Project) -> None:
    copies.build()
    copies.build()
    table = copies.run("runs")
    assert table.code == 0 and "runs: 2 kept" in table.stdout
    listed = json.loads(copies.run("runs", "--json").stdout)
    assert [r["summary"]["built"] for r in listed] == [3, 0]
    assert [r["summary"]["up_to_date"] for r in listed] == [0, 3]
    assert listed[1]["run_id"] == latest(copies).name and listed[1]["status"] == "ok"


def test_report_renders_again_and_prints_its_path(copies: Project) -> None:
    copies.build()
    first = latest(copies).name
    copies.build()
    (runs_dir(copies) / first / "report.html").unlink()
    again = copies.run("report", first[:21])
    assert again.code == 0, again.describe()
    assert again.stdout.strip() == str(runs_dir(copies) / first / "report.html")
    assert first in Path(again.stdout.strip()).read_text()
    assert copies.run("report").stdout.strip().endswith(f"{latest(copies).name}/report.html")
    assert copies.run("report", "19990101T000000000Z-000000").code == 2


def test_report_shows_failures_quarantine_and_why_jobs_were_rebuilt(copies: Project) -> None:
    copies.build()
    copies.write({"src/a.txt": "alpha, edited\n", "src/bad.txt": b"\xff\xfe not utf-8"})
    copies.build(expect=1)
    html = (latest(copies) / "report.html").read_text()
    assert "src/bad.txt" in html and "PermanentError" in html and "not valid utf-8" in html
    assert ".batchit/quarantine/copy/src/bad.txt" in html
    assert "input changed: src/a.txt" in html
    assert 'data-count="built"><span class="n">1<' in html


def test_retention_keeps_runs_keep_and_gc_applies_it_now(copies: Project) -> None:
    copies.config(COPY + "runs: {keep: 3}\n")
    for _ in range(4):
        copies.build()
    kept = sorted(p.name for p in runs_dir(copies).iterdir() if p.is_dir())
    assert len(kept) == 3
    removed_by_build = json.loads(audit_lines(copies)[-1])["details"]["removed_runs"]
    assert len(removed_by_build) == 1 and removed_by_build[0] < kept[0]
    copies.config(COPY + "runs: {keep: 1}\n")
    collected = copies.run("gc")
    assert collected.code == 0, collected.describe()
    assert sorted(p.name for p in runs_dir(copies).iterdir() if p.is_dir()) == kept[-1:]
    entry = json.loads(audit_lines(copies)[-1])
    assert entry["kind"] == "gc" and entry["details"]["removed_runs"] == kept[:2]
    run_entries = [json.loads(line)["details"] for line in audit_lines(copies) if b'"kind":"run"' in line]
    assert len(run_entries) == 4 and all(len(e["manifest_sha256"]) == 64 for e in run_entries)


def test_gc_evicts_the_cache_down_to_its_cap(copies: Project) -> None:
    copies.build()
    cache = copies.root / ".batchit/cache"
    assert any(p.is_file() for p in cache.rglob("*"))
    copies.config(COPY + "cache: {max_size: 1}\n")
    assert copies.run("gc").code == 0
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_gc_removes_cache_files_a_killed_run_wrote_but_never_indexed(copies: Project) -> None:
    """Eviction goes by the index; a file outside it would stay past `cache.max_size` forever."""
    copies.build()
    cache = copies.root / ".batchit/cache"
    indexed = sorted(p for p in cache.rglob("*") if p.is_file())
    stray = cache / "ab" / ("ab" + "0" * 62)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"written by a job whose commit never came")
    left = copies.root / "_build/.batchit-tmp-0123456789ab-7-a.txt"  # as temp_name_for names them
    left.write_bytes(b"half")
    mine = copies.root / "_build/.batchit-tmp-draft.md"  # a user's file that only looks like one
    mine.write_bytes(b"keep me")
    result = copies.run("gc")
    assert result.code == 0 and "2 file(s) killed runs left" in result.stdout, result.describe()
    assert sorted(p for p in cache.rglob("*") if p.is_file()) == indexed
    assert not left.exists() and mine.read_bytes() == b"keep me"


def test_manifest_names_the_audit_head_and_the_log_names_the_manifest(copies: Project) -> None:
    copies.build()
    copies.build()
    manifest_bytes = (latest(copies) / "manifest.json").read_bytes()
    lines = audit_lines(copies)
    assert json.loads(manifest_bytes)["audit_head"] == blake3(lines[0]).hexdigest()
    entry = json.loads(lines[1])
    assert entry["prev"] == blake3(lines[0]).hexdigest()
    assert entry["details"]["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()


def test_audit_verify_passes_over_runs_clean_and_gc(copies: Project) -> None:
    copies.build()
    assert copies.run("clean").code == 0
    copies.build()
    assert copies.run("gc").code == 0
    assert [json.loads(line)["kind"] for line in audit_lines(copies)] == ["run", "clean", "run", "gc"]
    checked = copies.run("audit", "verify")
    assert checked.code == 0, checked.describe()
    assert "4 entries" in checked.stdout


def test_a_log_whose_last_newline_was_cut_stays_a_chain_after_the_next_entry(copies: Project) -> None:
    copies.build()
    log = copies.root / ".batchit" / "audit.log"
    log.write_bytes(log.read_bytes().rstrip(b"\n"))  # as an editor that drops the final newline
    copies.write({"src/d.txt": "delta\n"})
    copies.build()
    assert [json.loads(line)["kind"] for line in audit_lines(copies)] == ["run", "run"]
    checked = copies.run("audit", "verify")
    assert checked.code == 0, checked.describe()
    assert "2 entries" in checked.stdout


def tamper_edit_first(lines: list[bytes]) -> list[bytes]:
    return [lines[0].replace(b'"status":"ok"', b'"status":"OK"'), *lines[1:]]


def tamper_drop_last(lines: list[bytes]) -> list[bytes]:
    return lines[:-1]


def tamper_drop_middle(lines: list[bytes]) -> list[bytes]:
    return [lines[0], *lines[2:]]


def tamper_swap(lines: list[bytes]) -> list[bytes]:
    return [lines[1], lines[0], *lines[2:]]


@pytest.mark.parametrize(
    ("tamper", "line"),
    [(tamper_edit_first, 1), (tamper_drop_last, 2), (tamper_drop_middle, 2), (tamper_swap, 1)],
    ids=["edited-line", "dropped-last-line", "dropped-middle-line", "reordered-lines"],
)
def test_audit_verify_names_the_first_broken_line(copies: Project, tamper: object, line: int) -> None:
    for _ in range(3):
        copies.build()
    log = copies.root / ".batchit/audit.log"
    log.write_bytes(b"\n".join(tamper(audit_lines(copies))) + b"\n")  # type: ignore[operator]
    checked = copies.run("audit", "verify")
    assert checked.code == 1, checked.describe()
    assert f"BROKEN at line {line}:" in checked.stdout


def test_a_log_cut_short_stays_broken_after_the_next_build(copies: Project) -> None:
    for _ in range(3):
        copies.build()
    log = copies.root / ".batchit/audit.log"
    log.write_bytes(b"\n".join(audit_lines(copies)[:-1]) + b"\n")
    copies.build()
    assert [json.loads(line)["seq"] for line in audit_lines(copies)] == [1, 2, 4]
    checked = copies.run("audit", "verify")
    assert checked.code == 1, checked.describe()
    assert "BROKEN at line 3: line 3 holds entry 4, not entry 3" in checked.stdout


def test_a_100k_job_report_stays_under_5_mb() -> None:
    now = datetime.now(UTC)
    info = RunInfo("20261129T150102123Z-3f9a1c", now - timedelta(seconds=90), now, "c" * 64, "failed", {})
    rows = [
        JobRow(
            f"job{i}",
            f"rule{i % 7}",
            f"img/{i // 1000}/{i}-640.webp",
            f"images/{i // 1000}/{i}.jpg",
            "failed" if i % 50 == 0 else "built",
            ("input changed: images/x.jpg", "operator image.resize 2 -> 3"),
            0.01 + (i % 97) / 1000,
            (("image.load", 0.004), ("image.resize", 0.003), ("write", 0.002)),
            "PermanentError" if i % 50 == 0 else "",
            "cannot identify image file " * 4 if i % 50 == 0 else "",
            size=20_000,
        )
        for i in range(100_000)
    ]
    started = time.perf_counter()
    document = run_document(info, rows, ("0123456789abcdef", False), "_build", [])
    html = render_report({**document, "provenance": True}, [])
    elapsed = time.perf_counter() - started
    assert len(html.encode()) < 5_000_000
    assert len(document["rebuilt"]) == ROW_CAP and document["rebuilt_left_out"] == 100_000 - ROW_CAP
    assert f"{2000 - ROW_CAP} more row(s) left out" in html
    assert elapsed < 10, f"{elapsed:.1f}s"  # the bench (bench/records.py) tracks the 2 s target


def test_an_entry_a_stopped_command_committed_but_never_wrote_is_written_next(copies: Project) -> None:
    copies.build()
    log = copies.root / ".batchit/audit.log"
    kept = log.rename(log.with_name("audit.kept"))
    log.symlink_to("/dev/full")  # the write fails right after the state store committed the entry
    stopped = copies.run("gc")
    assert stopped.code == 1, stopped.describe()
    assert stopped.stderr.startswith("batchit: error: No space left on device: "), stopped.describe()
    assert stopped.stderr.rstrip().endswith("(a build resumes)") and "Traceback" not in stopped.stderr
    log.unlink()
    kept.rename(log)
    assert len(audit_lines(copies)) == 1
    checked = copies.run("audit", "verify")
    assert checked.code == 0, checked.describe()
    assert "2 entries" in checked.stdout
    assert "1 of them committed by a command that was stopped" in checked.stdout
    copies.build()
    assert [json.loads(line)["kind"] for line in audit_lines(copies)] == ["run", "gc", "run"]
    assert copies.run("audit", "verify").code == 0


@pytest.mark.parametrize("written", [0.0, 0.5, 1.0], ids=["none", "half", "all"])
def test_a_build_killed_while_appending_to_the_audit_log_is_completed_next(
    copies: Project, written: float
) -> None:
    for _ in range(3):
        copies.build()
    *before, last = audit_lines(copies)
    kept = b"".join(line + b"\n" for line in before)
    # What a SIGKILL leaves after the store committed the last entry (pending) and wrote part of it.
    (copies.root / ".batchit/audit.log").write_bytes(kept + (last + b"\n")[: int(written * (len(last) + 1))])
    with sqlite3.connect(copies.root / ".batchit/state.db") as db:
        db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("audit_pending_at", str(len(kept))), ("audit_pending", (last + b"\n").decode())],
        )
    db.close()
    checked = copies.run("audit", "verify")
    assert checked.code == 0, checked.describe()
    assert "3 entries" in checked.stdout
    copies.build()
    assert audit_lines(copies)[:3] == [*before, last]
    assert [json.loads(line)["seq"] for line in audit_lines(copies)] == [1, 2, 3, 4]
    assert copies.run("audit", "verify").code == 0


class KilledRun(NamedTuple):
    """A build killed after it recorded its run, before its audit entry, and the command after it."""

    id: str
    next_command: tuple[str, ...]
    own_entries: list[str]
    """The kinds of the entries the next command appends of its own, after the killed run's."""
    in_latest: bool = True
    """The kill came after `LATEST` named the run (else between its `run.json` and `LATEST`)."""
    newer_run: bool = False
    """Another run, whose id sorts after the killed one's, was recorded meanwhile and is LATEST (the
    killed build minted its id, then planned while that run's build took the lock and finished)."""


KILLED_RUNS = [
    KilledRun("then-build", ("build", "--no-progress"), ["run"]),
    KilledRun("then-gc", ("gc",), ["gc"]),
    KilledRun("then-clean", ("clean",), ["clean"]),
    KilledRun("then-quarantine-release", ("quarantine", "release"), []),
    KilledRun("before-latest-then-build", ("build", "--no-progress"), ["run"], in_latest=False),
    KilledRun(
        "older-than-the-latest-then-build",
        ("build", "--no-progress"),
        ["run"],
        in_latest=False,
        newer_run=True,
    ),
]


@pytest.mark.parametrize("case", KILLED_RUNS, ids=[case.id for case in KILLED_RUNS])
def test_a_run_a_killed_build_recorded_but_never_audited_is_audited_by_the_next_command(
    copies: Project, case: KilledRun
) -> None:
    copies.build()
    previous = latest(copies).name
    copies.write({"src/d.txt": "delta\n"})
    copies.build()
    killed = latest(copies)
    before = unaudit_the_latest_run(copies)
    if not case.in_latest:
        (runs_dir(copies) / "LATEST").write_text(previous + "\n")
    if case.newer_run:  # a copy of the audited run before, under an id after the killed one's
        shutil.copytree(runs_dir(copies) / previous, runs_dir(copies) / "29991231T235959999Z-ffffff")
        (runs_dir(copies) / "LATEST").write_text("29991231T235959999Z-ffffff\n")
    checked = copies.run("audit", "verify")
    assert checked.code == 0, checked.describe()
    assert f"run {killed.name} is recorded but has no entry in the log" in checked.stdout, checked.describe()
    result = copies.run(*case.next_command)
    assert result.code == 0, result.describe()
    if case.next_command[0] == "build":
        assert f"added run {killed.name} to the audit log" in result.stderr, result.describe()
    entries = [json.loads(line) for line in audit_lines(copies)]
    assert [entry["kind"] for entry in entries[len(before) :]] == ["run", *case.own_entries]
    recovered = entries[len(before)]["details"]
    assert recovered["run_id"] == killed.name and recovered["recovered"] is True
    assert recovered["manifest_sha256"] == hashlib.sha256((killed / "manifest.json").read_bytes()).hexdigest()
    assert recovered["summary"] == json.loads((killed / "run.json").read_text())["summary"]
    checked = copies.run("audit", "verify")
    assert checked.code == 0, checked.describe()
    assert f"{len(entries)} entries" in checked.stdout and "no entry in the log" not in checked.stdout
