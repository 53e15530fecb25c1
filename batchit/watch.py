"""Watching a project for changes and rebuilding after a quiet spell (`batchit watch`).

watchdog reports file events from its own thread; they are filtered (nothing under `out`, `.batchit`,
version control or bytecode, no editor's scratch file) and queued. The main thread waits for the
first event, then for `debounce` seconds without a new one, so saving ten files or a checkout
triggers one rebuild, not ten (a burst that never goes quiet is rebuilt after LONGEST_BURST
periods). A file that appeared during the burst and is gone at its end (the temporary file of an
atomic save) was no change. Events that arrive during a rebuild start the next one.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import queue
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from batchit.errors import SystemFailure

IGNORED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)
"""Directories whose changes never trigger a rebuild, wherever they are (besides `out` and `.batchit`)."""

EDITOR_SCRATCH = (
    ".*.sw[a-px]",  # vim's (and nano's) swap files, and the .swx vim probes with
    "*~",  # vim's, emacs's and gedit's backups
    ".#*",  # emacs's lock links
    "#*#",  # emacs's auto-saves
    "*___jb_tmp___",  # JetBrains' safe write: the new text...
    "*___jb_old___",  # ...and the old file, until the new one is in place
    ".goutputstream-*",  # GLib's (gedit's, GNOME's) atomic save
    ".*.kate-swp",  # Kate's swap files
    ".DS_Store",  # macOS Finder's folder settings
)
"""Names (shell patterns) of the files editors write beside the ones they edit, which never trigger a
rebuild: saving `a.txt` from vim changes `a.txt` alone."""

VIM_PROBE_FIRST, VIM_PROBE_STEP = 4913, 123
"""vim checks it may create files in a folder by creating and deleting one named 4913 (or, when that
exists, 5036, 5159 and so on)."""


WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
"""What the system is asked to report: changes, not a file opened or closed unwritten (each build
reads its inputs: with thousands, their flood overflowed the system's queue, which drops events
then, the user's edits among them), nor a folder's own mtime."""

LOST = "(what the system could not report: its queue of events overflowed)"
"""The change a rebuild names when the system dropped events (too many at once, as a big build
writes): any change may have been among them, and only a build can tell."""

LONGEST_BURST = 10
"""Debounce periods (2 s by default) after which a burst is rebuilt though changes keep coming: a
program writing a file in the project every 100 ms (a server's log) would otherwise hold back the
user's edits for as long as it runs."""

STOP_SECONDS = 5.0
"""How long the watch waits for watchdog's threads to stop before it exits anyway."""


@dataclass(frozen=True)
class Change:
    """A counted event's path (project-relative, or absolute outside the project)."""

    path: str
    appeared: bool
    """Whether the event made the path appear (created, or moved there): when such a path is gone
    again at the end of the burst, it was never a change."""


class _Collector(FileSystemEventHandler):
    """Queues the project-relative paths of relevant events (watchdog calls it from its thread)."""

    def __init__(
        self, root: Path, ignored: Sequence[str], changes: queue.Queue[Change], outside: Sequence[Path] = ()
    ) -> None:
        self.root = root
        self.outside = frozenset(str(path) for path in outside)
        """Absolute paths of files outside `root` whose changes count as well."""
        self.ignored = ignored
        """Project-relative files and directories (`out`, `.batchit`) whose changes do not count; the
        caller may change it while the watch runs."""
        self.changes = changes

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Queue each path an event (one of WATCHED_EVENTS) names, unless it is ignored."""
        for raw, appeared in (
            (event.src_path, event.event_type == "created"),
            (getattr(event, "dest_path", ""), True),
        ):
            path = raw.decode() if isinstance(raw, bytes) else raw
            if path in self.outside:
                self.changes.put(Change(path, appeared))
            elif path and (relative := self._relative(path)) is not None:
                self.changes.put(Change(relative, appeared))

    def _relative(self, path: str) -> str | None:
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return None
        text = relative.as_posix()
        if (
            not relative.parts
            or IGNORED_DIRS.intersection(relative.parts)
            or is_editor_scratch(relative.name)
            or self.ignores(text)
        ):
            return None
        return text

    def ignores(self, text: str) -> bool:
        """True when the project-relative path is in (or is) one of the ignored ones, or is a folder
        holding one (a build re-creating `build/` for `out: build/site` is no change of the user's)."""
        return any(
            text == top or text.startswith(f"{top}/") or top.startswith(f"{text}/") for top in self.ignored
        )


def is_editor_scratch(name: str) -> bool:
    """True when a file name is one an editor gives its swap, lock, backup or temporary files."""
    if name.isdigit():
        return int(name) >= VIM_PROBE_FIRST and (int(name) - VIM_PROBE_FIRST) % VIM_PROBE_STEP == 0
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in EDITOR_SCRATCH)


def watch(
    root: Path,
    ignored: Sequence[str],
    debounce: float,
    first: Callable[[], bool],
    rebuild: Callable[[list[str]], bool],
    ready: Callable[[], None],
    outside: Sequence[Path] = (),
) -> None:
    """Call `first()` once the watch is in place, then `rebuild(changed paths)` after each burst of
    changes under `root`, until either returns False.

    A change made while `first()` runs (the first build, or the first after a restart) starts a
    rebuild once it is done. `ignored` are project-relative files and directories (`out`,
    `.batchit`) whose changes do not count (read afresh for each event, so the caller may change
    it); `ready()` is called after `first()`. `outside` are absolute paths of files outside
    `root` whose changes count too (a config named with `-f ../site.yaml`), named by that path;
    their folders are watched, not recursively. KeyboardInterrupt (Ctrl-C) propagates to the
    caller after the observer is stopped; SystemFailure is raised when `root` was removed or moved
    away (its watch then sees nothing more, and there is nothing left to build).
    """
    _quiet_watchdog_races()
    watched = _identity(root)
    changes: queue.Queue[Change] = queue.Queue()
    overflows = _OverflowsToChanges(changes)
    logging.getLogger(INOTIFY_LOGGER).addFilter(overflows)
    observer = Observer()
    collector = _Collector(root, ignored, changes, outside)
    observer.schedule(collector, str(root), recursive=True, event_filter=WATCHED_EVENTS)
    for folder in sorted({str(path.parent) for path in outside}):
        observer.schedule(collector, folder, recursive=False, event_filter=WATCHED_EVENTS)
    observer.start()
    try:
        if not first():
            return
        ready()
        while True:
            change = _next_change(changes)
            burst = {change.path: change.appeared}  # each path, and whether it was new to the burst
            quiet_until = time.monotonic() + debounce
            ends_by = quiet_until + debounce * (LONGEST_BURST - 1)
            while (left := min(quiet_until, ends_by) - time.monotonic()) > 0:
                try:
                    change = changes.get(timeout=left)
                except queue.Empty:
                    break
                burst.setdefault(change.path, change.appeared)
                quiet_until = time.monotonic() + debounce
            counted = sorted(
                path
                for path, new in burst.items()
                if not collector.ignores(path)  # `ignored` may have grown
                and not (new and not os.path.lexists(root / path))  # came and went: no change
            )
            if _identity(root) != watched:
                raise SystemFailure(
                    f"the project folder {root} was removed or moved away while watched",
                    hint="start `batchit watch` again in the project",
                )
            if counted and not rebuild(counted):
                return
    finally:
        observer.stop()
        observer.join(timeout=STOP_SECONDS)  # its threads are daemons: a stuck one cannot hold the exit
        logging.getLogger(INOTIFY_LOGGER).removeFilter(overflows)


def _identity(folder: Path) -> tuple[int, int] | None:
    """The folder's device and inode, None when it is gone: a folder made anew at its path is
    another, which the watch does not see into."""
    try:
        found = os.stat(folder)
    except OSError:
        return None
    return found.st_dev, found.st_ino


INOTIFY_LOGGER = "watchdog.observers.inotify_c"
"""Where watchdog says that Linux dropped events; it tells no handler."""


class _OverflowsToChanges(logging.Filter):
    """Turns watchdog's warning that the system dropped events into a change (LOST), which starts a
    rebuild: the user's edit may have been dropped, and the build finds it. The warning itself
    ("filesystem events were lost") is not shown: the rebuild line says it."""

    def __init__(self, changes: queue.Queue[Change]) -> None:
        super().__init__()
        self.changes = changes

    def filter(self, record: logging.LogRecord) -> bool:
        """False (not shown) for the overflow, which is queued as LOST; True for anything else."""
        if "queue overflowed" not in record.getMessage():
            return True
        self.changes.put(Change(LOST, appeared=False))
        return False


@functools.cache  # once per process
def _quiet_watchdog_races() -> None:
    """Silence what watchdog says about its own harmless races, which a user can do nothing about:
    a warning when a folder created during the watch is added to it twice (with a long dump of the
    watch), an error logged when an event arrives as the observer stops, and that it adds its
    watches again after the system dropped events (which the rebuild line says)."""
    warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)
    said = ("called when the thread is inactive", "queue overflowed; reconciling")
    logging.getLogger("watchdog.observers.inotify").addFilter(
        lambda record: not any(text in record.getMessage() for text in said)
    )


def _next_change(changes: queue.Queue[Change]) -> Change:
    """The next change, however long it takes. The wait wakes every half second: a Ctrl-C
    that lands just before an untimed wait blocks would only be handled at the next change."""
    while True:
        try:
            return changes.get(timeout=0.5)
        except queue.Empty:
            continue
