"""The request rate of `http.enrich`: at most N requests to a host in any one-second window (SPEC 12).

SPEC counts the rate across the whole run, and a run is not always one process: under doit with
`-P process`, each sub-task runs in a process of its own. So the limiter keeps each host's record
in a small file under `.batchit/http/rate/`, read and written under an exclusive `flock`, and every
thread of every process of the project goes through it. A request holds its slot from the moment
it is sent until one second after its answer (or its failure) came back: counting from the answer
rather than from the sending makes the limit hold where the server counts, whatever the latency of
each request, so a burst above N is never seen at the other end. A rate below 1 spaces requests
1/rate seconds apart (0.5: one every two seconds); above 1 it is a whole number of requests per
second (2.5 counts as 2).

Times are `time.monotonic()`, one clock for every process of the machine. A process that died
while sending (SIGKILL) leaves its entry behind. The next request drops it when its pid is gone,
or is this very process but not one of its requests (a container's pid 1 started again), or when
it is older than STALE_SECONDS whatever its pid says (a pid used again by another process).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blake3 import blake3

from batchit.errors import OutputError
from batchit.model import STATE_DIR

RATE_FOLDER = Path("http") / "rate"
"""Where the hosts' files live, under the state folder."""
POLL_SECONDS = 0.01
"""How often a request waiting for one under way (in any process) to end looks again."""
STALE_SECONDS = 600.0
"""A request under way longer than this is taken for one whose process died (each attempt of a
request ends within its `timeout` of silence; ten minutes of a slow answer is past any sane one)."""

_mine: set[str] = set()
"""The tokens of this process's requests under way, to tell them from a dead process's entries
that carry this process's pid."""


def allowance(rate: float) -> tuple[int, float]:
    """(requests, seconds): how many requests a `rate` lets start in a window of how many seconds."""
    if rate >= 1:
        return math.floor(rate), 1.0
    return 1, 1.0 / rate


@dataclass
class HostRecord:
    """What one host's file holds: the requests under way, and when recent ones ended."""

    sending: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Each request under way, by a token of its own: the pid of the process sending it, and when
    it started."""
    answered: list[float] = field(default_factory=list)
    """When each recent request ended, oldest first."""
    longest: float = 0.0
    """The longest window any rate used for this host: older answers count for no one."""

    @classmethod
    def parse(cls, raw: bytes) -> HostRecord:
        """The record in `raw`; an empty or damaged file (a crash while writing) is an empty record."""
        try:
            data: Any = json.loads(raw) if raw else {}
            record = cls(
                {str(k): (int(pid), float(since)) for k, (pid, since) in data.get("sending", {}).items()},
                sorted(float(t) for t in data.get("answered", [])),
                float(data.get("longest", 0.0)),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()
        times = [*record.answered, record.longest, *(since for _, since in record.sending.values())]
        return record if all(math.isfinite(t) for t in times) else cls()

    def dump(self) -> bytes:
        """The record as the file holds it."""
        record = {"sending": self.sending, "answered": self.answered, "longest": self.longest}
        return json.dumps(record).encode()

    def forget_stale(self, now: float) -> None:
        """Drop answers too old to count for any rate (or from a clock before a reboot) and the
        requests of processes that are gone."""
        self.answered = [t for t in self.answered if now - self.longest < t <= now]
        self.sending = {
            token: (pid, since)
            for token, (pid, since) in self.sending.items()
            if now - STALE_SECONDS < since <= now and (token in _mine if pid == os.getpid() else _alive(pid))
        }


class HostLimiter:
    """Request slots per host, shared by every thread and process of one project."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextmanager
    def slot(self, host: str, rate: float | None) -> Iterator[None]:
        """Wait until a request to `host` fits in `rate` (None: no limit), and hold its slot while
        the block sends it and for the window after it ends."""
        if rate is None:
            yield
            return
        count, window = allowance(rate)
        token = uuid.uuid4().hex
        path = self.folder / f"{blake3(host.encode()).hexdigest()[:32]}.json"
        while True:
            with self._record(path) as record:
                now = time.monotonic()
                record.longest = max(record.longest, window)
                record.forget_stale(now)
                recent = [ended for ended in record.answered if ended > now - window]
                if len(record.sending) + len(recent) < count:
                    record.sending[token] = (os.getpid(), now)
                    _mine.add(token)
                    break
            # the oldest recent answer leaves the window then; a request under way may end sooner
            wait = recent[0] + window - now if recent else POLL_SECONDS
            time.sleep(max(min(wait, POLL_SECONDS) if record.sending else wait, 0.0))
        try:
            yield
        finally:
            try:
                with self._record(path) as record:
                    record.sending.pop(token, None)
                    record.answered.append(time.monotonic())
            finally:
                _mine.discard(token)  # only now: until the answer is counted, the slot stays held

    @contextmanager
    def _record(self, path: Path) -> Iterator[HostRecord]:
        """The host's record, read and written back under an exclusive lock on its file. A file
        that cannot be made or written fails the job, as an output that cannot be: no fault of its
        input, which stays out of quarantine."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(
                f"cannot keep the request rate in {path}: {exc.strerror or exc}",
                hint=f"make {self.folder} writable",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            record = HostRecord.parse(os.pread(fd, 1 << 20, 0))
            yield record
            data = record.dump()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)


def limiter_for(root: Path) -> HostLimiter:
    """The limiter of the project at `root`."""
    return HostLimiter(root / STATE_DIR / RATE_FOLDER)


def _alive(pid: int) -> bool:
    if pid <= 0:  # no process's pid (0 and -1 would ask about a group or every process)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
