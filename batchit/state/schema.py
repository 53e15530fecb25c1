"""The state store's tables, and how a store gets them: all at once when it is new, and read as empty
where an older batchit's store (or one a kill left half made) lacks one."""

from __future__ import annotations

import re
import sqlite3

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, blake3 TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outputs (
    path TEXT PRIMARY KEY,          -- relative to `out`
    job_id TEXT NOT NULL, rule TEXT NOT NULL,
    action_key TEXT,                -- NULL while claimed and not yet committed
    blake3 TEXT, sha256 TEXT, size INTEGER,
    inputs TEXT NOT NULL DEFAULT '[]',      -- canonical JSON [{"blake3":..,"path":..}]
    discovered TEXT NOT NULL DEFAULT '{}',  -- canonical JSON {path: blake3}
    recipe TEXT,                    -- hash of the recipe document in `recipes`
    status TEXT NOT NULL, run_id TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outputs_job ON outputs (job_id);
CREATE TABLE IF NOT EXISTS recipes (hash TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    job_id TEXT PRIMARY KEY, rule TEXT NOT NULL, input TEXT NOT NULL, output TEXT,
    class TEXT NOT NULL, message TEXT NOT NULL, run_id TEXT NOT NULL,
    quarantine TEXT,                -- project-relative copy of the input, for permanent failures
    inputs_key TEXT                 -- the failed job's input hashes: a quarantine holds while they do
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS failures_input ON failures (rule, input);
CREATE TABLE IF NOT EXISTS cache (
    action_key TEXT PRIMARY KEY, blake3 TEXT NOT NULL, size INTEGER NOT NULL, used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS discoveries (
    base_key TEXT PRIMARY KEY,      -- a job's action key without discovered dependencies
    paths TEXT NOT NULL,            -- JSON list: the files it discovered when it last ran
    action_key TEXT NOT NULL        -- the key they gave it then (the row goes when nothing keeps it)
) WITHOUT ROWID;
"""


TABLE_DDL = {match[1]: match[0] for match in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+) [^;]*", SCHEMA)}
"""The statement SCHEMA makes each table with, by table name."""
SCHEMA_NAMES = frozenset(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", SCHEMA))
"""The tables and indexes SCHEMA makes."""


def _names(db: sqlite3.Connection) -> set[str]:
    """The names of the tables and indexes the database holds."""
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master")}


def create_schema(db: sqlite3.Connection) -> None:
    """Give a new store (or one an older batchit made) every table and index it lacks.

    One transaction, taking the write lock at once (a read that turns into a write fails rather
    than waits while another process writes): a build killed while it creates the store leaves all
    of it or none.
    """
    if _names(db) >= SCHEMA_NAMES:
        return
    db.executescript(
        f"BEGIN IMMEDIATE;\n{SCHEMA}\n"
        f"INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}');\n"
        "INSERT OR IGNORE INTO meta VALUES ('generation', '0');\nCOMMIT;"
    )


def missing_tables_read_as_empty(db: sqlite3.Connection) -> None:
    """In a read-only connection, stand a temporary empty table in for each one the store lacks,
    as the next build will make it."""
    tables = _names(db)
    for name, ddl in TABLE_DDL.items():
        if name not in tables:
            db.execute(ddl.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE", 1))
