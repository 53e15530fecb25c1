"""Watching a project for changes and rebuilding after a quiet spell (`batchit watch`).

watchdog reports file events from its own thread; they are filtered (nothing under `out`, `.batchit`,
version control or bytecode) and queued. The main thread waits for the first event, then for
`debounce` seconds without a new one, so saving ten files or a checkout triggers one rebuild, not
ten. Events that arrive during a rebuild start the next one.
"""

from __future__ import annotations

import functools
import logging
import queue
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

IGNORED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)
"""Directories whose changes never trigger a rebuild, wherever they are (besides `out` and `.batchit`)."""


STOP_SECONDS = 5.0
"""How long the watch waits for watchdog's threads to stop before it exits anyway."""


class _Collector(FileSystemEventHandler):
    """Queues the project-relative paths of relevant events (watchdog calls it from its thread)."""

    def __init__(
        self, root: Path, ignored: Sequence[str], changes: queue.Queue[str], outside: Sequence[Path] = ()
    ) -> None:
        self.root = root
        self.outside = frozenset(str(path) for path in outside)
        """Absolute paths of files outside `root` whose changes count as well."""
        self.ignored = ignored
        """Project-relative files and directories (`out`, `.batchit`) whose changes do not count; the
        caller may change it while the watch runs."""
        self.changes = changes

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Queue each path an event names, unless it is ignored or only a directory's mtime moved."""
        if event.event_type in ("opened", "closed_no_write") or (
            event.is_directory and event.event_type == "modified"
        ):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = raw.decode() if isinstance(raw, bytes) else raw
            if path in self.outside:
                self.changes.put(path)
            elif path and (relative := self._relative(path)) is not None:
                self.changes.put(relative)

    def _relative(self, path: str) -> str | None:
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return None
        text = relative.as_posix()
        if not relative.parts or IGNORED_DIRS.intersection(relative.parts) or self.ignores(text):
            return None
        return text

    def ignores(self, text: str) -> bool:
        """True when the project-relative path is in (or is) one of the ignored ones, or is a folder
        holding one (a build re-creating `build/` for `out: build/site` is no change of the user's)."""
        return any(
            text == top or text.startswith(f"{top}/") or top.startswith(f"{text}/") for top in self.ignored
        )


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
    caller after the observer is stopped.
    """
    _quiet_watchdog_races()
    changes: queue.Queue[str] = queue.Queue()
    observer = Observer()
    collector = _Collector(root, ignored, changes, outside)
    observer.schedule(collector, str(root), recursive=True)
    for folder in sorted({str(path.parent) for path in outside}):
        observer.schedule(collector, folder, recursive=False)
    observer.start()
    try:
        if not first():
            return
        ready()
        while True:
            burst = {_next_change(changes)}
            quiet_until = time.monotonic() + debounce
            while (left := quiet_until - time.monotonic()) > 0:
                try:
                    burst.add(changes.get(timeout=left))
                    quiet_until = time.monotonic() + debounce
                except queue.Empty:
                    break
            counted = sorted(
                path for path in burst if not collector.ignores(path)
            )  # `ignored` may have grown
            if counted and not rebuild(counted):
                return
    finally:
        observer.stop()
        observer.join(timeout=STOP_SECONDS)  # its threads are daemons: a stuck one cannot hold the exit


@functools.cache  # once per process
def _quiet_watchdog_races() -> None:
    """Silence what watchdog says about its own harmless races, which a user can do nothing about:
    a warning when a folder created during the watch is added to it twice (with a long dump of the
    watch), and an error logged when an event arrives as the observer stops."""
    warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)
    logging.getLogger("watchdog.observers.inotify").addFilter(
        lambda record: "called when the thread is inactive" not in record.getMessage()
    )


def _next_change(changes: queue.Queue[str]) -> str:
    """The next changed path, however long it takes. The wait wakes every half second: a Ctrl-C
    that lands just before an untimed wait blocks would only be handled at the next change."""
    while True:
        try:
            return changes.get(timeout=0.5)
        except queue.Empty:
            continue
