"""The audit trail `.batchit/audit.log`: append-only JSON lines chained by BLAKE3 (SPEC section 8).

Each line is canonical JSON holding `seq` (its 1-based line number), `kind` (run, quarantine, release,
clean, gc), `time`, `details` and `prev`, the BLAKE3 hash of the line before it (null on the first).
The hash of the last line, the chain's head, is kept in the state store's `meta` table and in every
signed manifest, so removing the last line is caught as surely as editing or reordering any other.
The store keeps the last line's `seq` beside it, so an append costs the same after a million runs.

The store commits each entry before its line is written (`append_audit`), so a process killed
between the two leaves the store ahead of the log, by entries it holds in full, never the log
ahead of the store: the next append writes them, and `audit verify` counts them meanwhile.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchit.fsutil import naming
from batchit.hashing import blake3_hex, canonical_json
from batchit.record.manifest import iso_time
from batchit.state.store import StateStore

AUDIT_LOG = "audit.log"
HEAD_KEY = "audit_head"
SEQ_KEY = "audit_seq"
PENDING_KEY = "audit_pending"
PENDING_AT_KEY = "audit_pending_at"
_UPSERT = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


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
    """Add one entry chained to the recorded head and return the new head.

    The state store commits the entry first, in one transaction with the new head, as pending;
    only then is the line written to the log, and the pending entry cleared (`settle_audit`). A
    process killed in between leaves an entry the store committed and the log lacks (in part or
    whole), and the next append writes it before its own, so the chain never forks. The store is the
    truth and the log its copy: nothing found only in the log is ever adopted, so a line cut or
    edited after it was written stays detectably broken, and the new line's `prev` is the head the
    store recorded, not the file's last line.

    The caller holds the project lock. Inside a store transaction the entry is only staged (a
    rollback takes it back); the caller calls `settle_audit` once the transaction has committed.
    """
    path = state_dir / AUDIT_LOG
    entry = {
        "details": details,
        "kind": kind,
        "prev": audit_head(store),
        "seq": _last_seq(store, path) + 1,
        "time": iso_time(datetime.now(UTC)),
    }
    line = canonical_json(entry)
    head = blake3_hex(line.encode("utf-8"))
    offset, block = _pending(store) or _log_end(path)
    rows = [
        (HEAD_KEY, head),
        (SEQ_KEY, str(entry["seq"])),
        (PENDING_AT_KEY, str(offset)),
        (PENDING_KEY, block + line + "\n"),
    ]
    if store.db.in_transaction:
        store.db.executemany(_UPSERT, rows)
        return head
    with store.transaction():
        store.db.executemany(_UPSERT, rows)
    settle_audit(state_dir, store, fsync=fsync)
    return head


def settle_audit(state_dir: Path, store: StateStore, *, fsync: bool = False) -> None:
    """Write to the log what the store committed and the log lacks, then clear it from the store.

    Call it outside a transaction, under the project lock; with nothing pending it only reads.
    """
    pending = _pending(store)
    if pending is None:
        return
    path = state_dir / AUDIT_LOG
    missing = _missing(path, pending[0], pending[1].encode("utf-8"))
    if missing:
        try:
            with open(path, "ab") as handle:
                handle.write(missing)
                if fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
        except OSError as exc:  # the entry stays pending in the store: the next append writes it
            raise naming(exc, path) from exc
    store.db.execute("DELETE FROM meta WHERE key IN (?, ?)", (PENDING_KEY, PENDING_AT_KEY))


def unsettled_audit(state_dir: Path, store: StateStore) -> bytes:
    """What `settle_audit` would write now: committed entries that a killed process left unwritten."""
    pending = _pending(store)
    return b"" if pending is None else _missing(state_dir / AUDIT_LOG, pending[0], pending[1].encode("utf-8"))


def _pending(store: StateStore) -> tuple[int, str] | None:
    """The committed entries not yet known to be in the log: (the log offset they start at, lines)."""
    rows = dict(
        store.db.execute("SELECT key, value FROM meta WHERE key IN (?, ?)", (PENDING_AT_KEY, PENDING_KEY))
    )
    if PENDING_KEY not in rows:
        return None
    return int(rows[PENDING_AT_KEY]), str(rows[PENDING_KEY])


def _log_end(path: Path) -> tuple[int, str]:
    """Where the next line goes (the log's size), and what must come before it: a newline when the
    last line lacks its own (cut by an editor), else the new line would run on from it."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(size - 1, 0))
            return size, "" if size == 0 or handle.read(1) == b"\n" else "\n"
    except FileNotFoundError:
        return 0, ""


def _missing(path: Path, offset: int, block: bytes) -> bytes:
    """The part of `block` (pending lines meant to start at byte `offset`) the log does not hold.

    A killed process wrote none of it, a part (maybe ending mid-line) or all: what follows is
    written. A log that ends elsewhere was changed by someone else; the block then goes whole after
    it (on a line of its own), and `audit verify` reports the break that change made.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(min(offset, size))
            written = handle.read(len(block) + 1) if size >= offset else None
            handle.seek(max(size - 1, 0))
            ends_a_line = size == 0 or handle.read(1) == b"\n"
    except FileNotFoundError:
        return block
    if written is not None and block.startswith(written):
        return block[len(written) :]
    if written is not None and written.startswith(block):
        return b""  # all written; whatever follows it was not batchit's
    return block if ends_a_line else b"\n" + block


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


def verify_audit(state_dir: Path, head: str | None, unsettled: bytes = b"") -> AuditCheck:
    """Check every line's `seq` and `prev`, then the last line's hash against the recorded `head`.

    `unsettled` (from `unsettled_audit`) is what the store committed and the log still lacks: it is
    checked as if written, since the next command that records an entry writes it.
    """
    path = state_dir / AUDIT_LOG
    try:
        lines = (path.read_bytes() + unsettled).splitlines()
    except FileNotFoundError:
        lines = unsettled.splitlines()
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
