"""Opening the state store: the error each refusal of SQLite's stands for, and a reader that
still reads on a full disk or a read-only file system, where WAL mode's shared-memory file cannot be made.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from batchit.errors import DISK_REFUSED_FIX, BatchitError, DamagedStateError, LockHeldError, SystemFailure
from batchit.model import STATE_DIR
from batchit.state.schema import missing_tables_read_as_empty


def unreadable(path: Path | None, exc: sqlite3.DatabaseError) -> BatchitError:
    """The error to report for a state store SQLite refused: busy past the wait, a disk that
    cannot take a write (full, read-only, failing), or damage."""
    where = str(path) if path is not None else f"{STATE_DIR}/state.db"
    said = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in said:
        return LockHeldError(
            f"the state store {where} stayed locked by another process: {exc}",
            hint="wait for the other batchit command to finish, then run this one again",
        )
    if isinstance(exc, sqlite3.OperationalError) and any(w in said for w in ("full", "readonly", "I/O")):
        return SystemFailure(
            f"the state store {where} cannot be written: {exc}",
            hint=DISK_REFUSED_FIX,
        )
    return DamagedStateError(where, said)


_NO_ROOM = frozenset(
    {sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY}
)
"""SQLite's primary result codes for a file it could not create or grow beside the database."""


def reader(path: Path, *, alone: bool = False) -> sqlite3.Connection:
    """A read-only connection to the store at `path`, its first read done (a store that cannot be
    read raises here, not in the middle of a command). `alone`: read the database file as one
    nobody changes, without the shared-memory file of WAL mode (see `_readable_alone`)."""
    # A URI's path is percent-decoded and ends at '?' or '#': quote it, or a project (or a
    # `--sample --out a/b` store, `samples/a%2Fb/`) whose path holds '%', '?' or '#' opens
    # another file or none.
    options = "mode=ro&immutable=1" if alone else "mode=ro"
    db = sqlite3.connect(f"file:{quote(os.fsencode(path))}?{options}", uri=True, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        missing_tables_read_as_empty(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        if not alone and _readable_alone(path, exc):
            return reader(path, alone=True)
        raise unreadable(path, exc) from exc
    return db


def _readable_alone(path: Path, exc: sqlite3.DatabaseError) -> bool:
    """True when `exc` says SQLite could not make the shared-memory file a WAL reader needs (a full
    disk, a read-only folder) and the database file holds the whole store (its -wal holds no
    commit): it can be read alone, as no build can change it on such a disk."""
    if not isinstance(exc, sqlite3.OperationalError) or exc.sqlite_errorcode & 0xFF not in _NO_ROOM:
        return False
    try:
        return Path(f"{path}-wal").stat().st_size == 0
    except FileNotFoundError:
        return True


REFUSALS = (BatchitError, OSError, sqlite3.DatabaseError)
"""What a command or a doit sub-task reports as one error naming its file, never as a traceback:
batchit's own errors, and a refusal of the disk's or of SQLite's met where no code could do better
than say so (a full disk, a permission, a damaged state store)."""


def as_failure(exc: BatchitError | OSError | sqlite3.DatabaseError) -> BatchitError:
    """The batchit error one of REFUSALS stands for, with its exit code and fix."""
    if isinstance(exc, BatchitError):
        return exc
    if isinstance(exc, OSError):
        return SystemFailure.from_os_error(exc)
    return unreadable(None, exc)  # damage met after the state store opened
