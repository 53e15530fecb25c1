"""The build queue behind `batchit serve`: requests wait in order and one build runs at a time.

Each request runs as its own `batchit build` process, exactly as a person would run it, so a
build started through the API takes the project lock, signs its record and can be interrupted the
same way; the queue reads the run id from the build's JSON summary line. Requests live in memory:
an `Idempotency-Key` is remembered for as long as the server runs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchit.errors import BatchitError, UsageError
from batchit.record.manifest import iso_time

TOKEN_VARIABLE = "BATCHIT_API_TOKEN"  # noqa: S105 - the variable's name, not a secret

FINISHED = frozenset({"succeeded", "failed", "error", "interrupted", "cancelled"})
"""The states a request ends in; `queued` and `running` are the others."""

STATUS_OF_EXIT = {0: "succeeded", 1: "failed", 130: "interrupted"}
"""A build's exit code -> the request's final state; any other code (2: a config or usage error,
3: the project lock was held) is `error`."""


class IdempotencyConflict(BatchitError):
    """An `Idempotency-Key` sent again with a different request body."""


@dataclass(frozen=True)
class BuildRequest:
    """What a `POST /runs` asks for: the rules to build (none: all) and feature flags."""

    rules: tuple[str, ...] = ()
    flags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, body: Any) -> BuildRequest:
        """The request a JSON body describes (`{"rules": [...], "flags": {"NAME": "VALUE"}}`, both
        optional); anything else is a UsageError saying what is wrong."""
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise UsageError("the request body must be a JSON object")
        unknown = sorted(set(body) - {"rules", "flags"})
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}: a run takes `rules` and `flags`")
        rules = body.get("rules", [])
        if not isinstance(rules, list) or not all(isinstance(r, str) and r for r in rules):
            raise UsageError("`rules` must be a list of rule names")
        flags = body.get("flags", {})
        if (
            not isinstance(flags, dict)
            or not all(v is None or isinstance(v, str | int | float | bool) for v in flags.values())
            or any(not name or "=" in name for name in flags)
        ):
            raise UsageError('`flags` must map flag names to values: {"NAME": "VALUE"}')
        request = cls(tuple(rules), tuple(sorted((str(k), _flag_text(v)) for k, v in flags.items())))
        if not all(map(_passable, request.argv())):
            raise UsageError(
                "a rule name, flag name or flag value holds a NUL character or a lone surrogate "
                "(\\u0000, \\ud800), which no command line can carry"
            )
        return request

    def argv(self) -> list[str]:
        """The `batchit build` arguments that carry this request out."""
        flags = [arg for name, value in self.flags for arg in ("--flag", f"{name}={value}")]
        return [*flags, "--", *self.rules]


def _passable(arg: str) -> bool:
    """Whether `arg` can be an argument of the build's command line: the system's encoding takes
    it (a lone surrogate it cannot) and it holds no NUL (which would end it)."""
    try:
        return b"\0" not in os.fsencode(arg)
    except UnicodeEncodeError:
        return False


def _flag_text(value: str | int | float | bool | None) -> str:
    """A flag value as `--flag NAME=VALUE` spells it (booleans and null as YAML does: true/false, null)."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass
class QueuedRun:
    """One request, from queued to finished, as `GET /runs/{id}` shows it."""

    id: str
    request: BuildRequest
    idempotency_key: str | None
    queued: str
    status: str = "queued"
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    run_id: str | None = None
    """The run the build recorded (None until it has, or when it stopped before recording)."""
    message: str | None = None
    """Why a build ended in `error` (its error line), or what it said when it failed."""
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The request as the API returns it."""
        return {
            "id": self.id,
            "status": self.status,
            "rules": list(self.request.rules),
            "flags": dict(self.request.flags),
            "queued": self.queued,
            "started": self.started,
            "finished": self.finished,
            "exit_code": self.exit_code,
            "run_id": self.run_id,
            "message": self.message,
        }


class BuildQueue:
    """Requests in arrival order, built one at a time by a thread of their own."""

    def __init__(self, root: Path, config_file: str) -> None:
        self.root = root
        self.config_file = config_file
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: deque[QueuedRun] = deque()
        self._by_id: dict[str, QueuedRun] = {}
        self._by_key: dict[str, QueuedRun] = {}
        self._running: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="batchit-serve-builds", daemon=True)

    def start(self) -> None:
        """Start building queued requests."""
        self._thread.start()

    def submit(self, request: BuildRequest, idempotency_key: str | None) -> tuple[QueuedRun, bool]:
        """Queue `request`; with a key already seen, return that request instead (False: not new).
        The same key with another request is an IdempotencyConflict."""
        with self._lock:
            if idempotency_key is not None and idempotency_key in self._by_key:
                known = self._by_key[idempotency_key]
                if known.request != request:
                    raise IdempotencyConflict(
                        "this Idempotency-Key was sent before with a different request",
                        hint="use a new key for a new request",
                    )
                return known, False
            run = QueuedRun(f"req-{secrets.token_hex(6)}", request, idempotency_key, _now())
            self._by_id[run.id] = run
            if idempotency_key is not None:
                self._by_key[idempotency_key] = run
            self._waiting.append(run)
            self._wake.notify()
            return run, True

    def get(self, request_id: str) -> QueuedRun | None:
        """The request with this id, if this server received it."""
        with self._lock:
            return self._by_id.get(request_id)

    def requests(self) -> list[dict[str, Any]]:
        """Every request this server received, oldest first, as JSON."""
        with self._lock:
            return [run.as_json() for run in self._by_id.values()]

    def stop(self) -> None:
        """Cancel what waits, interrupt the running build (it commits what finished, as on Ctrl-C)
        and wait for it to end."""
        with self._lock:
            self._stopping = True
            for run in self._waiting:
                self._finish(run, "cancelled", None, "the server stopped before this build started")
            self._waiting.clear()
            if self._running is not None:
                self._running.send_signal(signal.SIGINT)
            self._wake.notify()
        self._thread.join()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                run = self._waiting.popleft()
                run.status, run.started = "running", _now()
                self._running = subprocess.Popen(
                    self._command(run.request),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=_child_environment(),
                    # A group of its own: a Ctrl-C in the server's terminal reaches the server alone,
                    # which passes the build one SIGINT (`stop`); a second one would make it exit at
                    # once, unrecorded (batchit.execute.signals).
                    process_group=0,
                )
                process = self._running
            summary, error = _read_events(process)
            code = process.wait()
            with self._lock:
                self._running = None
                run.run_id = summary.get("run_id")
                self._finish(run, STATUS_OF_EXIT.get(code, "error"), code, error)

    def _command(self, request: BuildRequest) -> list[str]:
        return [
            sys.executable,
            "-m",
            "batchit",
            "-C",
            str(self.root),
            "-f",
            self.config_file,
            "build",
            "--no-progress",
            "--log-format",
            "json",
            *request.argv(),
        ]

    @staticmethod
    def _finish(run: QueuedRun, status: str, code: int | None, message: str | None) -> None:
        run.status, run.exit_code, run.message, run.finished = status, code, message, _now()
        run.done.set()


def _read_events(process: subprocess.Popen[bytes]) -> tuple[dict[str, Any], str | None]:
    """The build's summary event and its last error message, read from its JSON lines on stderr."""
    summary: dict[str, Any] = {}
    error = None
    assert process.stderr is not None
    for line in process.stderr:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line some user code printed
        if not isinstance(event, dict):
            continue
        if event.get("event") == "summary":
            summary = event
        elif event.get("event") == "error":
            error = str(event.get("message"))
    return summary, error


def _child_environment() -> dict[str, str]:
    """The server's environment without the API token: a build has no use for it."""
    return {name: value for name, value in os.environ.items() if name != TOKEN_VARIABLE}


def _now() -> str:
    return iso_time(datetime.now(UTC))
