"""Past runs in `.batchit/runs/`: listing them, finding one by id, their audit entries, retention,
and `batchit gc`.

A run directory holds `run.json` (the report's data, small) beside the manifest, so listing runs
and drawing the report's trend never parse a manifest of 100,000 outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchit.errors import SystemFailure, UsageError
from batchit.fsutil import atomic_write_text, cache_entry, sweep_temp_files
from batchit.model import Config
from batchit.record.audit import append_audit, audit_head, settle_audit
from batchit.record.rundata import RUN_FILE
from batchit.state.lock import ProjectLock
from batchit.state.store import StateStore

IN_PROGRESS = "in-progress.pid"
"""In a run folder written before its record (a doit run's logs): the pid of the process writing it."""

UNFINISHED = "build-in-progress"
"""In `.batchit`: made before a build or a doit sub-task writes anything, removed once the run is
recorded with nothing left behind. Found by the next build, it says a run was killed and may have
left litter (`sweep_litter`)."""


@dataclass(frozen=True)
class RunSummary:
    """One past run, as `batchit runs` lists it and the report's trend draws it."""

    run_id: str
    status: str
    started: str
    seconds: float | None
    summary: dict[str, int]
    key_id: str | None

    def as_json(self) -> dict[str, Any]:
        """The summary as a JSON object."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started": self.started,
            "seconds": self.seconds,
            "summary": self.summary,
            "key_id": self.key_id,
        }


def runs_dir(config: Config) -> Path:
    """`.batchit/runs`."""
    return config.state_dir / "runs"


def list_runs(directory: Path) -> list[RunSummary]:
    """Every run still kept, oldest first (run ids sort by start time)."""
    if not directory.is_dir():
        return []
    found = []
    for run_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        summary = run_summary(run_dir)
        if summary is not None:
            found.append(summary)
    return found


def run_summary(run_dir: Path) -> RunSummary | None:
    """A run's summary from its `run.json`, else from its manifest; None for a run with neither.

    A file that is not a JSON object (damaged, or cut short) counts as missing, and a field of the
    wrong type as absent."""
    for name in (RUN_FILE, "manifest.json"):
        doc = read_json_object(run_dir / name)
        if doc is None:
            continue
        summary = doc.get("summary")
        seconds = doc.get("seconds")
        key_id = doc.get("key_id")
        return RunSummary(
            run_dir.name,
            str(doc.get("status", "unknown")),
            str(doc.get("started", "")),
            float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else None,
            {
                str(k): v
                for k, v in (summary.items() if isinstance(summary, dict) else ())
                if isinstance(v, int) and not isinstance(v, bool)
            },
            key_id if isinstance(key_id, str) else None,
        )
    return None


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in a record file (`run.json`, a manifest); None when the file is missing,
    unreadable, not JSON, or JSON but not an object."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def latest_run(directory: Path) -> str | None:
    """The latest run's id: the one `LATEST` names, or, when that file is missing or damaged or
    names no kept folder, the newest kept record (None when there is none)."""
    try:
        named = (directory / "LATEST").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        named = ""
    if RUN_ID_TEXT.fullmatch(named) and (directory / named).is_dir():
        return named
    recorded = sorted(p.name for p in _folders(directory) if _holds_record(p))
    return recorded[-1] if recorded else None


RUN_ID_TEXT = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]*")
"""What a run id (or a prefix of one) is made of: `20261129T150102123Z-3f9a1c`."""


def find_run(directory: Path, run_id: str | None) -> Path:
    """The directory of run `run_id` (a unique prefix will do), or of the latest run for None."""
    if run_id is not None and not RUN_ID_TEXT.fullmatch(run_id):
        raise UsageError(
            f"{run_id!r} is not a run id", hint="name a run as `batchit runs` lists it (a prefix will do)"
        )
    wanted = run_id or latest_run(directory)
    if wanted is None:
        raise UsageError(f"no run recorded in {directory}", hint="run `batchit build` first")
    if (directory / wanted).is_dir():
        return directory / wanted
    matches = sorted(p for p in _folders(directory) if p.name.startswith(wanted))
    if len(matches) == 1:
        return matches[0]
    kept = [r.run_id for r in list_runs(directory)]
    raise UsageError(
        f"no run {wanted!r} in {directory}" if not matches else f"run id {wanted!r} is ambiguous",
        hint=f"recent runs: {', '.join(kept[-5:]) or 'none'} (`batchit runs` lists them all)",
    )


def run_entry(
    run_id: str,
    status: str,
    summary: dict[str, int],
    manifest_sha256: str | None,
    key_id: str | None,
    removed_runs: list[str],
) -> dict[str, Any]:
    """The details of a run's audit entry: what the log keeps of the run once retention removed it
    (the sha256 of its manifest, which the signature covers), and the runs its retention removed."""
    return {
        "run_id": run_id,
        "status": status,
        "summary": summary,
        "manifest_sha256": manifest_sha256,
        "key_id": key_id,
        "removed_runs": removed_runs,
    }


def unaudited_run(state_dir: Path, head: str | None) -> str | None:
    """The run a killed build recorded but never wrote an audit entry for, or None.

    A run's `run.json` keeps the audit head as it was when the run was recorded, which the run's own
    entry, appended next, moves on: a recorded run whose head is still the store's `head` has no
    entry. A build leaves such a run only when it is killed between its `run.json` and its entry,
    which also leaves `UNFINISHED`; without that marker this reads nothing, so a build after a
    finished one pays for it with the one `stat` it makes anyway. The run is the latest, or, when
    the kill came before `LATEST` named it, any recorded run: newest first, but a build mints its
    id before it plans, so a build that finished meanwhile may have recorded a newer one.
    """
    if not (state_dir / UNFINISHED).exists():
        return None
    directory = state_dir / "runs"
    recorded = sorted((p.name for p in _folders(directory) if _holds_record(p)), reverse=True)
    for run_id in dict.fromkeys(name for name in (latest_run(directory), *recorded) if name is not None):
        document = read_json_object(directory / run_id / RUN_FILE)
        if document is not None and "audit_head" in document and document["audit_head"] == head:
            return run_id
    return None


def audit_unaudited_run(state_dir: Path, store: StateStore, *, fsync: bool = False) -> str | None:
    """Append the audit entry of the run a killed build recorded but never audited (`unaudited_run`),
    so the log names every recorded run; return that run's id, or None when there is none.

    Commands that take the project lock call it before they append an entry of their own (after
    which the run could no longer be told from an audited one), and so do doit sub-tasks before
    each job they run (when `runs/` holds a folder they have not seen), holding the lock shared:
    outside a store transaction. The
    check (one `stat` when no build was killed) is made again in the transaction that appends the
    entry, so of two sub-tasks asking at once one appends it. The entry is made from the run's
    files, with `recovered: true`: its `removed_runs` is empty, as the killed build's retention
    (which runs after `LATEST` is written) may or may not have removed runs.
    """
    if unaudited_run(state_dir, audit_head(store)) is None:
        return None
    with store.transaction():  # BEGIN IMMEDIATE: one writer at a time decides and appends
        run_id = unaudited_run(state_dir, audit_head(store))
        if run_id is not None:
            append_audit(state_dir, store, "run", _recovered_entry(state_dir / "runs" / run_id))
    settle_audit(state_dir, store, fsync=fsync)
    return run_id


def _recovered_entry(run_dir: Path) -> dict[str, Any]:
    """The details of the audit entry of a run recorded but never audited, from its files."""
    document = read_json_object(run_dir / RUN_FILE) or {}
    summary = document.get("summary")
    key_id = document.get("key_id")
    try:
        with open(run_dir / "manifest.json", "rb") as manifest:
            digest: str | None = hashlib.file_digest(manifest, "sha256").hexdigest()
    except OSError:
        digest = None  # removed by hand since: the entry still says the run was recorded
    details = run_entry(
        run_dir.name,
        str(document.get("status", "unknown")),
        summary if isinstance(summary, dict) else {},
        digest,
        key_id if isinstance(key_id, str) else None,
        [],
    )
    return {**details, "recovered": True}


def apply_retention(directory: Path, keep: int) -> list[str]:
    """Remove all but the newest `keep` recorded runs, never the run LATEST names (it counts among
    the `keep`); return the ids removed.

    A folder is a record once it holds `run.json`, which the recorder writes after the manifest and
    its signature, before it names the run in LATEST. A folder without one (a build stopped while
    writing its record, the logs of a doit run whose sub-task failed before `_record`, the events of
    a killed build) is litter by the time a run is recorded or `gc` runs, both under the exclusive
    lock: it goes too, unless a doit run still going on marked it (`mark_in_progress`).
    """
    folders = sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.exists() else []
    latest = latest_run(directory)
    recorded = [name for name in folders if _holds_record(directory / name)]
    others = [name for name in recorded if name != latest]
    removed = others[: max(0, len(others) - (keep - 1 if latest in recorded else keep))]
    litter = [
        name
        for name in folders
        if name != latest and name not in recorded and not in_progress(directory / name)
    ]
    for run_id in removed + litter:
        shutil.rmtree(directory / run_id, ignore_errors=True)
    return removed


def _folders(directory: Path) -> list[Path]:
    """The folders in the runs directory (none when it is missing)."""
    try:
        return [p for p in directory.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _holds_record(run_dir: Path) -> bool:
    """True for a run folder with a record in it: its run data, written last of its files."""
    return (run_dir / RUN_FILE).is_file()


def mark_in_progress(run_dir: Path, pid: int) -> None:
    """Say that process `pid` is still writing `run_dir` (a doit run: its sub-tasks keep their logs
    there before `_record` writes the record), so retention leaves the folder alone meanwhile."""
    marker = run_dir / IN_PROGRESS
    if not marker.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, f"{pid}\n")


def in_progress(run_dir: Path) -> bool:
    """True while the process that marked `run_dir` (`mark_in_progress`) is alive."""
    try:
        os.kill(int((run_dir / IN_PROGRESS).read_text(encoding="utf-8")), 0)
    except PermissionError:  # alive, and another user's
        return True
    except (OSError, ValueError):  # no marker, a damaged one, or its process is gone
        return False
    return True


def evict_cache(store: StateStore, cache_dir: Path, max_size: int) -> tuple[int, int]:
    """Delete least recently used cache entries until the cache fits; return (entries, bytes) freed."""
    total = store.cache_size()
    evicted: list[str] = []
    freed = 0
    for key, size in list(store.cache_by_age()):
        if total - freed <= max_size:
            break
        cache_entry(cache_dir, key).unlink(missing_ok=True)
        evicted.append(key)
        freed += size
    if evicted:
        with store.transaction():
            store.drop_cache(evicted)
            store.forget_discoveries()
    return len(evicted), freed


def mark_unfinished(state_dir: Path) -> None:
    """Say that a run is writing (`UNFINISHED`), before it writes."""
    (state_dir / UNFINISHED).touch()


def sweep_litter(config: Config, store: StateStore) -> list[Path]:
    """Remove what a killed run or a dead worker left: temporary files in `out`, the caches, the run
    records and `.batchit` itself (not a `--sample --out` folder's, whose build may be running),
    and cache files it wrote but never indexed (eviction only sees the index, so they would stay
    past `cache.max_size` forever). Only under the exclusive lock, with no job running."""
    cache_dir = config.state_dir / "cache"
    removed = sweep_temp_files(config.out_dir) + sweep_temp_files(cache_dir)
    removed += sweep_temp_files(config.state_dir / "http")  # the response cache of `http.enrich`
    removed += sweep_temp_files(config.state_dir / "runs")  # LATEST, and each run's files
    removed += sweep_temp_files(config.state_dir, deep=False)  # validated.json, the plan snapshot
    indexed = store.cache_entries()
    for parent, _, names in os.walk(cache_dir):
        for name in names:
            if name not in indexed:
                path = Path(parent, name)
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


UNFINISHED_RUN = "a run that did not finish (killed, or stopped by an error)"
"""Who left the litter a build finds at its start, for `swept`."""


SWEPT_NAMED = 10
"""How many of the files a sweep removed its warnings name; the rest are counted in one more."""


def swept(config: Config, store: StateStore, culprit: str = UNFINISHED_RUN) -> list[str]:
    """`sweep_litter`, with a warning naming each file removed and `culprit`: the first SWEPT_NAMED
    of them, then one counting the rest (a build killed amid thousands of small jobs leaves
    hundreds, which would bury the build's own output)."""
    removed = sweep_litter(config, store)
    warnings = [
        f"removed {path.relative_to(config.root) if path.is_relative_to(config.root) else path}, "
        f"left by {culprit}"
        for path in removed[:SWEPT_NAMED]
    ]
    if len(removed) > SWEPT_NAMED:
        warnings.append(f"removed {len(removed) - SWEPT_NAMED} more files left by {culprit}")
    return warnings


@dataclass(frozen=True)
class Collected:
    """What `batchit gc` removed."""

    runs: list[str]
    cache_entries: int
    cache_bytes: int
    litter: int
    """Temporary files and unindexed cache files that killed runs left."""


def collect_garbage(config: Config) -> Collected:
    """Apply `runs.keep` and `cache.max_size` now, under the project lock, and audit what went."""
    with ProjectLock(config.state_dir / "lock"):
        store, removed = _open_making_room(config)
        try:
            audit_unaudited_run(config.state_dir, store, fsync=config.durability == "fsync")
            litter = sweep_litter(config, store)
            (config.state_dir / UNFINISHED).unlink(missing_ok=True)
            removed += apply_retention(runs_dir(config), config.runs_keep)
            entries, freed = evict_cache(store, config.state_dir / "cache", config.cache_max_size)
            if not entries:  # else eviction has already forgotten what nothing keeps any more
                with store.transaction():  # what outputs `clean` removed kept, say
                    store.forget_discoveries()
            details = {"removed_runs": removed, "cache_entries": entries, "cache_bytes": freed}
            append_audit(config.state_dir, store, "gc", details, fsync=config.durability == "fsync")
        finally:
            store.close()
    return Collected(removed, entries, freed, len(litter))


def _open_making_room(config: Config) -> tuple[StateStore, list[str]]:
    """The state store, open for writing, and the runs removed to open it: on a disk too full for
    SQLite to open a store (its WAL files need room), the run records past `runs.keep` go first, the
    one thing `gc` can free without the store. Not after a killed build (`UNFINISHED`): the run it
    left unaudited could be among them, and its audit entry needs the store first."""
    path, fsync = config.state_dir / "state.db", config.durability == "fsync"
    try:
        return StateStore.open(path, fsync=fsync), []
    except SystemFailure:
        if (config.state_dir / UNFINISHED).exists():
            raise
        removed = apply_retention(runs_dir(config), config.runs_keep)
        if not removed:
            raise
    return StateStore.open(path, fsync=fsync), removed
