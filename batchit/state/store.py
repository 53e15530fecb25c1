"""The SQLite state store (`.batchit/state.db`): what batchit knows between runs.

It holds the stat cache (stat tuple -> content hash), one row per output batchit owns (its job, action
key, content hashes and inputs), the recipe documents behind action keys (for `explain`), the current
failures, and the content-addressed cache's index. The planner reads it; only the coordinating
process writes it, in batched transactions, as job results arrive.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from operator import attrgetter
from pathlib import Path

from batchit.state.opening import reader, unreadable
from batchit.state.rows import Failure, ListedOutput, OutputRecord, Owned, StatRow
from batchit.state.schema import create_schema

_STAT_ROWS = "SELECT path, size, mtime_ns, ctime_ns, inode, blake3 FROM stats"
"""Stat-cache rows as `StatRow`s (a WHERE clause may follow)."""

_OWNED_ROWS = (
    "SELECT o.path, o.rule, o.action_key, o.blake3, s.size, s.mtime_ns, s.ctime_ns, s.inode "
    "FROM outputs o LEFT JOIN stats s ON s.path = ? || o.path AND s.blake3 = o.blake3"
)
"""Each output's path and `Owned` fields, its stat joined when the stat cache vouches for its hash
(a WHERE clause may follow; the parameter is `out` with a slash)."""

_LISTED_ROWS = (
    "SELECT path, rule, action_key, blake3, sha256, size, inputs FROM outputs "
    "WHERE blake3 <> '' ORDER BY path"
)
"""Every finished output's `ListedOutput` fields, in path order."""


class StateStore:
    """A connection to `.batchit/state.db` with the queries batchit needs, and nothing else."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection

    @classmethod
    def open(cls, path: Path, *, fsync: bool = False) -> StateStore:
        """Open (creating if needed) the store in WAL mode."""
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            create_schema(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise unreadable(path, exc) from exc
        return cls(db)

    @classmethod
    def open_readonly(cls, path: Path) -> StateStore | None:
        """Open an existing store for reading only (for `plan`), or None when there is none; on a
        full disk or a read-only file system too, where `plan`, `verify` and `explain` still work."""
        if not path.exists():
            return None
        return cls(reader(path))

    def close(self) -> None:
        """Close the connection (a WAL checkpoint happens on the last close)."""
        self.db.close()

    def transaction(self) -> _Transaction:
        """A context manager grouping writes into one commit (each commit bumps the generation)."""
        return _Transaction(self.db)

    def generation(self) -> int:
        """A counter every write transaction increments: equal values mean nothing changed between."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # -- stat cache -------------------------------------------------------------------------------
    def load_stats(self, out: str) -> dict[str, StatRow]:
        """The stat cache of every file outside `out` by path, each row kept as SQLite returns it
        (outputs' stats come with `load_owned`)."""
        prefix = f"{out}/"
        rows = self.db.execute(f"{_STAT_ROWS} WHERE substr(path, 1, ?) != ?", (len(prefix), prefix))
        return {row[0]: row for row in rows}

    def stat_row(self, path: str) -> StatRow | None:
        """One file's stat cache row, for a plan that needs only a few."""
        row = self.db.execute(f"{_STAT_ROWS} WHERE path = ?", (path,)).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4], row[5])

    def put_stats(self, rows: Iterable[StatRow]) -> None:
        """Record (path, size, mtime_ns, ctime_ns, inode, blake3) rows."""
        self.db.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?, ?, ?, ?, ?)", rows)

    def drop_stats(self, paths: Iterable[str]) -> None:
        """Forget the stat cache entries of files that are gone."""
        self.db.executemany("DELETE FROM stats WHERE path = ?", ((p,) for p in paths))

    # -- the output root --------------------------------------------------------------------------
    def recorded_out(self) -> str | None:
        """The `out` the output rows belong to: their paths are relative to it (None: a store that
        predates recording it, taken to belong to the current `out`)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'out'").fetchone()
        return None if row is None else str(row[0])

    def owns(self, out: str) -> bool:
        """True when the output rows are files in `out`; after `out` changed, batchit owns nothing
        in the new one until it writes there (its old rows name files in the old `out`)."""
        recorded = self.recorded_out()
        return recorded is None or recorded == out

    def adopt_out(self, out: str) -> tuple[str, int] | None:
        """Make `out` the output root the rows belong to, before a build writes there. Rows of
        another root are forgotten, their files left where they are: returns (that root, how many
        rows), or None when the rows already belonged to `out`. Writes only when something changes."""
        recorded = self.recorded_out()
        if recorded == out:
            return None
        if recorded is None:  # rows taken to be in `out` already: nothing a plan reads changes
            self.db.execute("INSERT INTO meta VALUES ('out', ?)", (out,))
            return None
        with self.transaction():
            forgotten = self.db.execute("DELETE FROM outputs").rowcount
            prefix = f"{recorded}/"
            self.db.execute("DELETE FROM stats WHERE substr(path, 1, ?) = ?", (len(prefix), prefix))
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'out'", (out,))
        return recorded, forgotten

    # -- the config file --------------------------------------------------------------------------
    def recorded_config(self) -> str | None:
        """The config file (as `Config.file` names it) whose builds wrote these rows, or None for a
        store that predates recording it."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        return None if row is None else str(row[0])

    def adopt_config(self, file: str) -> None:
        """Record `file` as the config these rows belong to (once it is checked that no other config
        still holds them: batchit.plan.ownership). Writes only when something changes."""
        if self.recorded_config() != file:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('config', ?)", (file,))

    # -- outputs ----------------------------------------------------------------------------------
    def output(self, path: str) -> OutputRecord | None:
        """What batchit recorded about one output (path relative to `out`), if it owns it."""
        row = self.db.execute("SELECT * FROM outputs WHERE path = ?", (path,)).fetchone()
        return None if row is None else OutputRecord(*row)

    def finished_outputs(self) -> list[ListedOutput]:
        """Every output with a recorded hash (built or restored, not just claimed), in path order."""
        rows = self.db.execute(_LISTED_ROWS)
        return list(map(ListedOutput._make, rows))

    def load_outputs(self) -> dict[str, OutputRecord]:
        """Every output batchit owns, by path relative to `out`, with everything recorded about it."""
        rows = self.db.execute("SELECT * FROM outputs")
        return {row[0]: OutputRecord(*row) for row in rows}

    def load_owned(self, out: str) -> dict[str, Owned]:
        """Every output batchit owns in `out` (paths relative to it), with just what planning compares."""
        if not self.owns(out):
            return {}
        rows = self.db.execute(_OWNED_ROWS, (f"{out}/",))
        return {row[0]: Owned._make(row[1:]) for row in rows}

    def owned_one(self, out: str, path: str) -> Owned | None:
        """`load_owned` for one output, for a plan that needs only a few."""
        if not self.owns(out):
            return None
        row = self.db.execute(f"{_OWNED_ROWS} WHERE o.path = ?", (f"{out}/", path)).fetchone()
        return None if row is None else Owned._make(row[1:])

    def output_rules(self, out: str) -> dict[str, str]:
        """The rule of every output batchit owns in `out`, by path relative to it."""
        if not self.owns(out):
            return {}
        return dict(self.db.execute("SELECT path, rule FROM outputs").fetchall())

    def output_paths(self, out: str) -> set[str]:
        """The paths (relative to `out`) of every output batchit owns there."""
        if not self.owns(out):
            return set()
        return {row[0] for row in self.db.execute("SELECT path FROM outputs")}

    def load_discovered(self) -> dict[str, str]:
        """Discovered dependencies by job id (JSON text), for the jobs that have any."""
        rows = self.db.execute("SELECT job_id, discovered FROM outputs WHERE discovered != '{}'")
        return dict(rows.fetchall())

    def discovered_one(self, job_id: str) -> str | None:
        """`load_discovered` for one job, for a plan that needs only a few."""
        row = self.db.execute(
            "SELECT discovered FROM outputs WHERE job_id = ? AND discovered != '{}'", (job_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def load_discoveries(self) -> dict[str, str]:
        """The files jobs discovered (JSON list) by their key without them (`discoveries`), so a job
        with no record of its own (after `clean`, in a new `out`) is keyed as it ran and restored."""
        return dict(self.db.execute("SELECT base_key, paths FROM discoveries"))

    def discoveries_one(self, base_key: str) -> str | None:
        """`load_discoveries` for one key, for a plan that needs only a few."""
        row = self.db.execute("SELECT paths FROM discoveries WHERE base_key = ?", (base_key,)).fetchone()
        return None if row is None else str(row[0])

    def put_discoveries(self, base_key: str, paths: str, action_key: str) -> None:
        """Remember what a job keyed `base_key` (without them) discovered, and the key it got."""
        self.db.execute("INSERT OR REPLACE INTO discoveries VALUES (?, ?, ?)", (base_key, paths, action_key))

    def drop_discoveries(self, base_key: str) -> None:
        """Forget what a job keyed `base_key` (without them) discovered: it discovers nothing now."""
        self.db.execute("DELETE FROM discoveries WHERE base_key = ?", (base_key,))

    def forget_discoveries(self) -> None:
        """Drop what no output record and no cache entry keeps (after cache eviction)."""
        self.db.execute(
            "DELETE FROM discoveries WHERE action_key NOT IN (SELECT action_key FROM cache) "
            "AND action_key NOT IN (SELECT action_key FROM outputs WHERE action_key IS NOT NULL)"
        )

    def output_basis(self, path: str) -> tuple[str, str, str | None]:
        """What one output was built from: its inputs and discovered dependencies (canonical JSON)
        and its recipe's hash; read only for a stale output, to say why it is stale."""
        row = self.db.execute(
            "SELECT inputs, discovered, recipe FROM outputs WHERE path = ?", (path,)
        ).fetchone()
        return ("[]", "{}", None) if row is None else (str(row[0]), str(row[1]), row[2])

    def claim_outputs(self, claims: Iterable[tuple[str, str, str]]) -> None:
        """Record (path, job_id, rule) as batchit's own before anything is renamed into the path."""
        self.db.executemany(
            "INSERT INTO outputs (path, job_id, rule, status) VALUES (?, ?, ?, 'claimed') "
            "ON CONFLICT (path) DO UPDATE SET job_id = excluded.job_id, rule = excluded.rule",
            claims,
        )

    def reown_outputs(self, owners: Iterable[tuple[str, str, str]]) -> None:
        """Record (job_id, rule, path): the job that now produces an up-to-date output (its rule
        was renamed, or rules swapped output templates); a path without a row stays without."""
        self.db.executemany("UPDATE outputs SET job_id = ?, rule = ? WHERE path = ?", owners)

    def outputs_of_jobs(self, job_ids: Iterable[str]) -> set[str]:
        """The paths of the outputs these jobs wrote and recorded (a job blocked before its `{key8}`
        name was known, or failing, keeps the output it recorded last); a claim that never got a
        file is not among them."""
        found: set[str] = set()
        query = "SELECT path FROM outputs WHERE job_id = ? AND blake3 IS NOT NULL"
        for job_id in job_ids:
            found.update(row[0] for row in self.db.execute(query, (job_id,)))
        return found

    def commit_outputs(self, records: Iterable[OutputRecord]) -> None:
        """Store finished outputs' keys, hashes and inputs."""
        self.db.executemany(
            "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", map(_OUTPUT_FIELDS, records)
        )

    def forget_outputs(self, paths: Iterable[str]) -> None:
        """Drop outputs that were pruned or cleaned."""
        self.db.executemany("DELETE FROM outputs WHERE path = ?", ((p,) for p in paths))

    def put_recipe(self, recipe_hash: str, doc: str) -> None:
        """Keep a recipe document so `explain` can say which part of a key changed."""
        self.db.execute("INSERT OR IGNORE INTO recipes VALUES (?, ?)", (recipe_hash, doc))

    def recipe(self, recipe_hash: str) -> str | None:
        """A recipe document by its hash."""
        row = self.db.execute("SELECT doc FROM recipes WHERE hash = ?", (recipe_hash,)).fetchone()
        return None if row is None else str(row[0])

    # -- failures ---------------------------------------------------------------------------------
    def load_failures(self) -> dict[str, Failure]:
        """Current failures by job id."""
        return {row[0]: Failure(*row) for row in self.db.execute("SELECT * FROM failures")}

    def put_failure(self, failure: Failure) -> None:
        """Record a job's failure (replacing its previous one)."""
        row = _FAILURE_FIELDS(failure)
        self.db.execute("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?,?,?)", row)

    def quarantine_of(self, rule: str, input_path: str, inputs_key: str) -> str | None:
        """Where (rule, input) is already quarantined while its input is unchanged (`inputs_key`),
        by any of the rule's jobs (a matrix gives one input several), or None."""
        row = self.db.execute(
            "SELECT quarantine FROM failures WHERE rule = ? AND input = ? AND inputs_key = ? "
            "AND quarantine IS NOT NULL LIMIT 1",
            (rule, input_path, inputs_key),
        ).fetchone()
        return None if row is None else str(row[0])

    def rename_run(self, old: str, new: str) -> None:
        """Let the output and failure rows of run `old` name run `new` (a doit run recorded under
        another id than the one its sub-tasks committed with)."""
        self.db.execute("UPDATE outputs SET run_id = ? WHERE run_id = ?", (new, old))
        self.db.execute("UPDATE failures SET run_id = ? WHERE run_id = ?", (new, old))

    def release_failures(self, job_ids: Iterable[str]) -> None:
        """Let quarantined jobs go: they stay failed (the next build, `--only-failed` too, retries
        them) but are no longer held while their input is unchanged."""
        self.db.executemany(
            "UPDATE failures SET quarantine = NULL, inputs_key = NULL WHERE job_id = ?",
            ((j,) for j in job_ids),
        )

    def clear_failures(self, job_ids: Iterable[str]) -> None:
        """Forget the failures of jobs that have since succeeded or no longer exist."""
        self.db.executemany("DELETE FROM failures WHERE job_id = ?", ((j,) for j in job_ids))

    # -- content-addressed cache index ------------------------------------------------------------
    def cache_entries(self) -> dict[str, tuple[str, int]]:
        """The cache index: action key -> (blake3, size)."""
        rows = self.db.execute("SELECT action_key, blake3, size FROM cache")
        return {row[0]: (row[1], row[2]) for row in rows}

    def cache_one(self, action_key: str) -> tuple[str, int] | None:
        """`cache_entries` for one action key: (blake3, size), or None when nothing is cached under it."""
        row = self.db.execute("SELECT blake3, size FROM cache WHERE action_key = ?", (action_key,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def put_cache(self, action_key: str, blake3: str, size: int, used: int) -> None:
        """Index a cached output (or refresh its last use)."""
        self.db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", (action_key, blake3, size, used))

    def drop_cache(self, keys: Iterable[str]) -> None:
        """Remove cache entries from the index."""
        self.db.executemany("DELETE FROM cache WHERE action_key = ?", ((k,) for k in keys))

    def cache_by_age(self) -> Iterator[tuple[str, int]]:
        """Cache entries (key, size), least recently used first, for eviction."""
        yield from self.db.execute("SELECT action_key, size FROM cache ORDER BY used, action_key")

    def cache_size(self) -> int:
        """Total bytes the cache index accounts for."""
        return int(self.db.execute("SELECT COALESCE(SUM(size), 0) FROM cache").fetchone()[0])


_OUTPUT_FIELDS = attrgetter(*OutputRecord.__slots__)
"""An output record's values in column order (one per output a build commits)."""
_FAILURE_FIELDS = attrgetter(*Failure.__slots__)
"""A failure's values in column order."""


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
