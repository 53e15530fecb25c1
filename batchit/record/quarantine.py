"""Quarantine (SPEC section 6): inputs that failed permanently, set aside with the reason.

A permanently failing input is copied to `.batchit/quarantine/<rule>/<input path>` with
`<input name>.reason.json` beside it; its job is not run again until the input changes or the user
releases it. The copy keeps the evidence even if the original is fixed or deleted later.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from batchit.errors import UsageError
from batchit.fsutil import atomic_write_text, remove_empty_parents, replacing
from batchit.record.audit import append_audit, settle_audit
from batchit.state.store import Failure, StateStore

REASON_SUFFIX = ".reason.json"


def quarantine_dir(state_dir: Path) -> Path:
    """`.batchit/quarantine`."""
    return state_dir / "quarantine"


def quarantine_input(root: Path, state_dir: Path, failure: Failure, input_hash: str) -> str:
    """Copy a failed input into quarantine with its reason; return the copy's project-relative path."""
    copy = quarantine_dir(state_dir) / failure.rule / failure.input
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
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    atomic_write_text(copy.with_name(copy.name + REASON_SUFFIX), json.dumps(reason, indent=2) + "\n")
    return copy.relative_to(root).as_posix()


def quarantined(store: StateStore | None) -> list[Failure]:
    """Every input in quarantine, by rule and path."""
    if store is None:
        return []
    found = [f for f in store.load_failures().values() if f.quarantine]
    return sorted(found, key=lambda f: (f.rule, f.input))


def release(root: Path, state_dir: Path, store: StateStore, path: str | None) -> list[Failure]:
    """Release one quarantined input (by its project-relative path) or all; return what was released."""
    held = quarantined(store)
    chosen = held if path is None else [f for f in held if f.input == path.strip("/")]
    if path is not None and not chosen:
        listing = ", ".join(f.input for f in held) or "none"
        raise UsageError(
            f"{path} is not in quarantine", hint=f"give a project-relative input path; quarantined: {listing}"
        )
    base = quarantine_dir(state_dir)
    for failure in chosen:
        if failure.quarantine:
            copy = root / failure.quarantine
            copy.unlink(missing_ok=True)
            copy.with_name(copy.name + REASON_SUFFIX).unlink(missing_ok=True)
            remove_empty_parents(copy, base)
    with store.transaction():
        store.clear_failures(f.job_id for f in chosen)
        for failure in chosen:
            append_audit(state_dir, store, "release", {"rule": failure.rule, "input": failure.input})
    settle_audit(state_dir, store)
    return chosen
