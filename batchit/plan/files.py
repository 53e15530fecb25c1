"""Finding input files and knowing their content hashes without re-reading unchanged ones.

Globs compile to one regular expression each and are matched against project-relative paths found
by one `os.scandir` walk per glob base, so 100,000 inputs cost one walk and no per-file objects. The
stat cache maps (size, mtime_ns, ctime_ns, inode) to a BLAKE3 hash: a checkout that moves mtimes
backwards or a copy that preserves them still changes ctime or inode, so it is re-hashed.

A file's timestamps come from a clock that ticks coarsely (a few milliseconds; a second or two on
FAT, HFS+ or some network filesystems), so a file rewritten in the same tick as it was read, to the
same size, keeps its stat. As git does for its index ("racy git"), a hash read from a file whose
timestamps are not older than the read by more than a tick is not vouched for by its stat: it is not
stored in the stat cache, and a plan snapshot treats the file as changed, so the next plan reads it
again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from batchit.errors import ConfigError
from batchit.fsutil import StatTuple, is_racy, is_utf8_name, resolves_inside, shown_path
from batchit.globs import Glob
from batchit.hashing import hash_file
from batchit.state.rows import StatRow

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", ".batchit", "__pycache__"})
"""Directories no glob descends into (version control, batchit's own state, bytecode)."""

MISSING = "missing"
"""The hash recorded for a file that does not exist (a deleted discovered dependency)."""

UNDECODABLE = ("has a name that is not valid UTF-8", "rename it (batchit records paths as UTF-8)")
LEADING_OUT = ("is a symlink leading outside the project", "copy the file into the project")

PARALLEL_HASH_BYTES = 64 << 20
"""Below this many bytes to re-read, hashing serially beats a thread pool's per-file overhead."""


@dataclass
class FileTree:
    """Project files under the glob bases asked for, with their stat results, found lazily."""

    root: Path
    skip: frozenset[str]
    """Project-relative directories never entered (the output root and batchit's state)."""
    stats: dict[str, StatTuple] = field(default_factory=dict)
    walked: list[str] = field(default_factory=list)
    """The glob bases walked, in order."""
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Walked files no job may read, kept out of `stats`, with what is wrong and the fix: names
    that are not valid UTF-8 (no key, record or report can hold them), symlinks leading out of the
    project. `match` refuses one that a glob matches and no exclude pattern leaves out."""

    def files_under(self, base: str) -> list[str]:
        """Project-relative paths of every file under `base` (walked once, then remembered)."""
        if not any(_is_under(base, done) for done in self.walked):
            self._walk(base)
            self.walked.append(base)
        if not base:
            return list(self.stats)
        prefix = f"{base}/"
        return [p for p in self.stats if p.startswith(prefix)]

    def match(
        self, globs: Iterable[Glob], exclude: Iterable[Glob], among: Iterable[str] | None = None
    ) -> list[tuple[str, str]]:
        """Sorted (path, glob base) pairs of files matching a glob and no exclude pattern (with
        `among`, of these paths instead of the walked files)."""
        excluded = [g.regex.fullmatch for g in exclude]
        found: dict[str, str] = {}
        candidates = None if among is None else list(among)
        for glob in globs:
            self._inside(glob)
            files = self.files_under(glob.base) if candidates is None else candidates
            matching: Iterable[str] = filter(glob.regex.fullmatch, files)
            if excluded:
                matching = (p for p in matching if not any(rx(p) for rx in excluded))
            for path in matching:
                found.setdefault(path, glob.base)
            for path, (wrong, fix) in self.refused.items():
                if glob.regex.fullmatch(path) and not any(rx(path) for rx in excluded):
                    raise ConfigError(
                        f"input {shown_path(path)} {wrong} (glob {glob.pattern!r} matches it)",
                        hint=f"{fix}, or leave it out with an `exclude:` pattern of the rule that matches it",
                    )
        return sorted(found.items())

    def _inside(self, glob: Glob) -> None:
        """Refuse a glob whose base folder leads out of the project through a symlink (`photos`
        linked to a folder elsewhere): the walk would read every file there. A symlinked folder
        met below the base is not walked at all."""
        if glob.base and not resolves_inside(self.root.resolve(), self.root / glob.base):
            raise ConfigError(
                f"input glob {glob.pattern!r} starts in {glob.base}, which leads outside the project "
                "through a symlink",
                hint="copy the files into the project, or make the link point inside it",
            )

    def _walk(self, base: str) -> None:
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        stack = [(str(start), f"{base}/" if base else "")]
        root_resolved = self.root.resolve()
        while stack:
            directory, prefix = stack.pop()
            with os.scandir(directory) as entries:
                for entry in entries:
                    rel = prefix + entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name not in SKIPPED_DIRS and rel not in self.skip:
                            stack.append((entry.path, rel + "/"))
                    elif entry.is_file():
                        if not is_utf8_name(rel):
                            self.refused[rel] = UNDECODABLE
                            continue
                        if entry.is_symlink() and not resolves_inside(root_resolved, Path(entry.path)):
                            self.refused[rel] = LEADING_OUT
                            continue
                        st = entry.stat()
                        self.stats[rel] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _is_under(path: str, base: str) -> bool:
    return not base or path == base or path.startswith(base + "/")


def stat_tuple(st: os.stat_result) -> StatTuple:
    """The stat fields that identify a file version."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass
class Hasher:
    """Content hashes through the stat cache; files whose stat changed are re-read (in parallel)."""

    root: Path
    cache: dict[str, StatRow]
    updates: dict[str, StatRow] = field(default_factory=dict)
    """New stat-cache rows found while hashing, for the engine to store."""
    looked_up: dict[str, StatTuple | None] = field(default_factory=dict)
    """Every file hashed by path, with the stat it had (None: missing), for a plan snapshot."""
    key_files: set[str] = field(default_factory=set)
    """The files of `looked_up` hashed for a recipe (not only as a job's discovered dependency)."""
    racy: set[str] = field(default_factory=set)
    """Files read while their timestamps were within a tick of the read: their stat cannot vouch
    for the hash, so it is not stored and a plan snapshot does not vouch for them either."""

    def __post_init__(self) -> None:
        self._root_text = str(self.root)

    def hash_many(self, items: list[tuple[str, StatTuple]]) -> dict[str, str]:
        """Hashes of several files, reading only those the stat cache cannot vouch for."""
        result: dict[str, str] = {}
        todo: list[tuple[str, StatTuple]] = []
        cache = self.cache
        for path, stat in items:
            entry = cache.get(path)
            if entry is not None and entry[1:5] == stat:
                result[path] = entry[5]
            else:
                todo.append((path, stat))
        read_from = time.time_ns()
        if sum(stat[0] for _, stat in todo) > PARALLEL_HASH_BYTES:
            with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
                digests = list(pool.map(self._read, todo))
        else:
            digests = [self._read(item) for item in todo]
        for (path, stat), digest in zip(todo, digests, strict=True):
            row = cache[path] = (path, *stat, digest)
            if is_racy(stat, read_from):
                self.racy.add(path)
                self.updates.pop(path, None)
            else:
                self.updates[path] = row
            result[path] = digest
        return result

    def hash_path(self, path: str, *, discovered: bool = False) -> str:
        """The hash of one file by path (project-relative or absolute); MISSING if it is gone.

        `discovered`: the file is a job's discovered dependency, so only that job's key reads it.
        """
        if not discovered:
            self.key_files.add(path)
        try:
            stat = stat_tuple(os.stat(self.root / path))
        except FileNotFoundError:
            self.looked_up[path] = None
            return MISSING
        self.looked_up[path] = stat
        return self.hash_many([(path, stat)])[path]

    def watch_folder(self, path: str) -> None:
        """Note a project folder whose entries decide which files a recipe reads (where Python
        finds a module), with its stat now: a plan snapshot holds only while it is unchanged."""
        self.key_files.add(path)
        try:
            self.looked_up[path] = stat_tuple(os.stat(self.root / path))
        except (FileNotFoundError, NotADirectoryError):
            self.looked_up[path] = None

    def _read(self, item: tuple[str, StatTuple]) -> str:
        path, stat = item
        # a Path per file would cost more than the read; an absolute `path` (hash_path) stays as it is
        return hash_file(os.path.join(self._root_text, path), expected_size=stat[0])  # noqa: PTH118
