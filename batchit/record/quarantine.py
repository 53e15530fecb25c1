"""Quarantine (SPEC section 6): inputs that failed permanently, set aside with the reason.

A permanently failing input is copied to `.batchit/quarantine/<rule>/<input path>` with
`<input name>.reason.json` beside it; its job is not run again until the input changes or the user
releases it. The copy keeps the evidence even if the original is fixed or deleted later.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from batchit.errors import UsageError
from batchit.fsutil import atomic_write_text, companion_name, remove_empty_parents, replacing
from batchit.record.audit import append_audit, settle_audit
from batchit.record.manifest import iso_time
from batchit.state.rows import Failure
from batchit.state.store import StateStore

REASON_SUFFIX = ".reason.json"


def quarantine_dir(state_dir: Path) -> Path:
    """`.batchit/quarantine`."""
    return state_dir / "quarantine"


def quarantine_input(root: Path, state_dir: Path, failure: Failure, input_hash: str) -> str:
    """Copy a failed input into quarantine with its reason; return the copy's project-relative path."""
    copy = quarantine_dir(state_dir) / failure.rule / failure.input
    _make_way(quarantine_dir(state_dir), copy)
    source = root / failure.input
    if source.exists():
        with replacing(copy) as tmp:
            shutil.copyfile(source, tmp)
    reason = {
        "class": failure.error_class,
        "message": failure.message,
        "input": failure.input,
        "input_blake3": input_hash,
        "rule": failure.rule,
        "run_id": failure.run_id,
        "time": iso_time(datetime.now(UTC)),
    }
    atomic_write_text(_reason_path(copy), json.dumps(reason, indent=2) + "\n")
    return copy.relative_to(root).as_posix()


def _make_way(base: Path, copy: Path) -> None:
    """Remove an ended quarantine's evidence that stands where `copy` goes: a copy where one of its
    folders must be, or a folder of copies where it must be. That input is gone (a path cannot be
    a file and a folder at once), and without this every later build would fail on the clash."""
    for folder in reversed(copy.parents):
        if folder.is_relative_to(base) and folder != base and folder.is_file():
            folder.unlink()
            _reason_path(folder).unlink(missing_ok=True)
    if copy.is_dir() and not copy.is_symlink():
        shutil.rmtree(copy)


def _reason_path(copy: Path) -> Path:
    """The reason file beside a quarantined copy."""
    return copy.with_name(companion_name(copy.name, REASON_SUFFIX))


def quarantined(store: StateStore | None) -> list[Failure]:
    """Every input in quarantine, once per (rule, input) however many of the rule's jobs (matrix
    variants) it failed, by rule and path."""
    return [jobs[0] for jobs in _held(store).values()]


def _held(store: StateStore | None) -> dict[tuple[str, str], list[Failure]]:
    """The quarantined jobs' failures by (rule, input), in rule and path order."""
    held: dict[tuple[str, str], list[Failure]] = {}
    found = store.load_failures().values() if store else ()
    for failure in sorted((f for f in found if f.quarantine), key=lambda f: (f.rule, f.input, f.job_id)):
        held.setdefault((failure.rule, failure.input), []).append(failure)
    return held


def _input_path(root: Path, path: str) -> str:
    """An input path as a user may type it (`./src/a.txt`, `src//a.txt`, or absolute inside the
    project) as batchit names inputs: project-relative and normalised."""
    if posixpath.isabs(path):
        with contextlib.suppress(ValueError):
            path = Path(path).relative_to(root).as_posix()
    return posixpath.normpath(path).strip("/")


def releasable(
    root: Path, store: StateStore | None, path: str | None
) -> dict[tuple[str, str], list[Failure]]:
    """What `release` of `path` (None: every input) would release: the failed jobs by (rule, input).

    A path that is not in quarantine raises UsageError. `quarantine release` asks this of a store
    opened read-only before it takes the project lock, so a refused release writes nothing, not
    even its pid into `.batchit/lock`.
    """
    held = _held(store)
    wanted = None if path is None else _input_path(root, path)
    chosen = {k: jobs for k, jobs in held.items() if wanted is None or k[1] == wanted}
    if path is not None and not chosen:
        listing = ", ".join(sorted({k[1] for k in held})) or "none"
        raise UsageError(
            f"{path} is not in quarantine", hint=f"give a project-relative input path; quarantined: {listing}"
        )
    return chosen


def release(root: Path, state_dir: Path, store: StateStore, path: str | None) -> list[Failure]:
    """Release one quarantined input (by its project-relative path) or all, with every job that
    failed on it; return what was released, once per (rule, input). Call it under the project lock."""
    chosen = releasable(root, store, path)
    base = quarantine_dir(state_dir)
    for jobs in chosen.values():
        for place in {f.quarantine for f in jobs if f.quarantine}:
            copy = root / place
            copy.unlink(missing_ok=True)
            _reason_path(copy).unlink(missing_ok=True)
            remove_empty_parents(copy, base)
    with store.transaction():
        store.release_failures(f.job_id for jobs in chosen.values() for f in jobs)
        for rule, input_path in chosen:
            append_audit(state_dir, store, "release", {"rule": rule, "input": input_path})
    settle_audit(state_dir, store)
    return [jobs[0] for jobs in chosen.values()]


def rename_run_in_reasons(root: Path, failures: Iterable[Failure], old: str, new: str) -> None:
    """Make the reason files of the quarantines run `old` made name run `new` (a doit run recorded
    under another id than the one its sub-tasks committed as)."""
    for place in {f.quarantine for f in failures if f.quarantine}:
        reason_path = _reason_path(root / place)
        try:
            reason = json.loads(reason_path.read_bytes())
        except (OSError, ValueError):
            continue  # removed or damaged since: nothing to keep in step
        if isinstance(reason, dict) and reason.get("run_id") == old:
            atomic_write_text(reason_path, json.dumps({**reason, "run_id": new}, indent=2) + "\n")
