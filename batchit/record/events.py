"""A run's structured event log, `.batchit/runs/<RUN_ID>/events.jsonl`: every engine event, one line each.

`EventLog` stands between the engine and whatever shows events to the user (the console): it writes
each event as a JSON line, then passes it on. The file is opened on the first event, so a command that
fails before doing anything (a config error, a held lock) leaves no run directory behind.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from batchit.fsutil import naming

EVENTS_FILE = "events.jsonl"

_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)
"""How an event becomes a line (one encoder for the run: `json.dumps` with options makes one per call)."""

FLUSH_EVERY = 0.5
"""Seconds between commits of job results while a build runs, and so the longest a finished job's
event waits in memory before it is written: a killed run loses no more of one than of the other."""

EventSink = Callable[[dict[str, Any]], None]


class EventLog:
    """An event sink that appends every event to a run's `events.jsonl` and forwards it."""

    def __init__(self, run_dir: Path, forward: EventSink) -> None:
        self.path = run_dir / EVENTS_FILE
        self.forward = forward
        self._handle: IO[str] | None = None
        self._flushed = time.monotonic()
        self.warnings: list[str] = []
        """The run's warning messages, for the report."""
        self.retries: list[dict[str, Any]] = []
        """Each retry scheduled (rule, output, attempt, delay, message), for the report."""
        self._busy = False
        self._deferred: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        """Log one event, then forward it.

        A `job` event reaches the file within FLUSH_EVERY seconds (as results reach the state
        store), so a 10,000-job build does not pay a write per job; every other event is written at
        once, so a killed run keeps it. An event emitted while another is being handled (by a signal
        handler, which runs between two steps of the main thread) waits for it to finish: a file
        or stream written to from inside its own write raises "reentrant call".
        """
        if self._busy:
            self._deferred.append(event)
            return
        self._busy = True
        try:
            self._handle_event(event)
            while self._deferred:
                self._handle_event(self._deferred.pop(0))
        finally:
            self._busy = False

    def _handle_event(self, event: dict[str, Any]) -> None:
        with self._named():
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run
            self._handle.write(_ENCODER.encode(event) + "\n")
            now = time.monotonic()
            if event.get("event") != "job" or now - self._flushed >= FLUSH_EVERY:
                self._handle.flush()
                self._flushed = now
        if event.get("event") == "warning":
            self.warnings.append(str(event.get("message")))
        elif event.get("event") == "retry":
            self.retries.append({k: event.get(k) for k in ("rule", "output", "attempt", "delay", "message")})
        self.forward(event)

    def close(self) -> None:
        """Close the file (further events open it again and append)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with self._named():
                handle.close()  # it writes what is buffered

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """Name the log in an OSError a write to it raises (a full disk): the error of a write to an
        open file names no file, and the user needs to know which one could not be written."""
        try:
            yield
        except OSError as exc:
            raise naming(exc, self.path) from exc
