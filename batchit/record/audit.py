"""The audit trail `.batchit/audit.log`: append-only JSON lines chained by BLAKE3 (SPEC section 8).

Each line is canonical JSON holding `seq` (its 1-based line number), `kind` (run, quarantine, release,
clean, gc), `time`, `details` and `prev`, the BLAKE3 hash of the line before it (null on the first).
The hash of the last line, the chain's head, is kept in the state store's `meta` table and in every
signed manifest, so removing the last line is caught as surely as editing or reordering any other.
The store keeps the last line's `seq` beside it, so an append costs the same after a million runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchit.hashing import blake3_hex, canonical_json
from batchit.record.manifest import iso_time
from batchit.state.store import StateStore

AUDIT_LOG = "audit.log"
HEAD_KEY = "audit_head"
SEQ_KEY = "audit_seq"


@dataclass(frozen=True)
class AuditBreak:
    """The first line at which the chain does not hold, and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class AuditCheck:
    """The result of checking the chain: how many lines, and the first break if any."""

    entries: int
    broken: AuditBreak | None

    @property
    def exit_code(self) -> int:
        """1 when the chain is broken, else 0 (SPEC section 4)."""
        return 1 if self.broken else 0


def audit_head(store: StateStore) -> str | None:
    """The chain's head as the state store records it (None before the first entry)."""
    row = store.db.execute("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)).fetchone()
    return None if row is None else str(row[0])


def append_audit(
    state_dir: Path, store: StateStore, kind: str, details: dict[str, Any], *, fsync: bool = False
) -> str:
    """Append one entry chained to the recorded head, store the new head, and return it.

    The caller holds the project lock, so appends never interleave. The new line's `prev` is the head
    the store recorded, not the file's last line: a log cut short before this append stays detectably
    broken instead of being silently re-chained. Safe to call inside a store transaction.
    """
    path = state_dir / AUDIT_LOG
    entry = {
        "details": details,
        "kind": kind,
        "prev": audit_head(store),
        "seq": _last_seq(store, path) + 1,
        "time": iso_time(datetime.now(UTC)),
    }
    line = canonical_json(entry).encode("utf-8")
    with open(path, "ab") as handle:
        handle.write(line + b"\n")
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())
    head = blake3_hex(line)
    upsert = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    rows = [(HEAD_KEY, head), (SEQ_KEY, str(entry["seq"]))]
    if store.db.in_transaction:
        store.db.executemany(upsert, rows)
    else:
        with store.transaction():
            store.db.executemany(upsert, rows)
    return head


def _last_seq(store: StateStore, path: Path) -> int:
    """The `seq` of the last entry, as the store records it with the head.

    A store written before it kept the `seq` (or a log without a head yet) counts the log's lines once.
    """
    row = store.db.execute("SELECT value FROM meta WHERE key = ?", (SEQ_KEY,)).fetchone()
    if row is not None:
        return int(row[0])
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


def verify_audit(state_dir: Path, head: str | None) -> AuditCheck:
    """Check every line's `seq` and `prev`, then the last line's hash against the recorded `head`."""
    path = state_dir / AUDIT_LOG
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        lines = []
    hashes: list[str] = []
    for number, line in enumerate(lines, start=1):
        broken = _line_break(line, number, hashes[-1] if hashes else None)
        if broken is not None:
            return AuditCheck(len(lines), broken)
        hashes.append(blake3_hex(line))
    last = hashes[-1] if hashes else None
    if last != head:
        if not lines:
            reason = f"the log is empty or missing, but the state store records the head {head}"
        elif head is None:
            reason = "the state store records no head for this log (was .batchit/state.db replaced?)"
        else:
            reason = (
                f"line {len(lines)} does not hash to the head the state store records ({head[:16]}...): "
                "it was edited, or lines after it were removed"
            )
        return AuditCheck(len(lines), AuditBreak(max(len(lines), 1), reason))
    return AuditCheck(len(lines), None)


def _line_break(line: bytes, number: int, prev: str | None) -> AuditBreak | None:
    """Where line `number` breaks the chain, or None.

    A `prev` that does not match blames the line before it: editing a line changes its hash, which
    the next line recorded.
    """
    try:
        entry = json.loads(line)
    except ValueError:
        return AuditBreak(number, f"line {number} is not JSON: it was edited")
    if not isinstance(entry, dict):
        return AuditBreak(number, f"line {number} is not an entry: it was edited")
    seq = entry.get("seq")
    if seq != number:
        return AuditBreak(
            number, f"line {number} holds entry {seq}, not entry {number}: lines were removed or reordered"
        )
    if entry.get("prev") == prev:
        return None
    if number == 1:
        return AuditBreak(1, "line 1 names a line before it: it was edited, or the log was cut")
    return AuditBreak(
        number - 1, f"line {number - 1} was edited: its hash is not the `prev` that line {number} records"
    )
