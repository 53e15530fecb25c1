"""The request rate of `http.enrich`: at most N requests to a host in any one-second window (SPEC 12).

One limiter serves the whole process, every thread of it: `http.enrich` is a coordinator-only
operator (`Operator.coordinator_only`), so a build's requests all go through here. A request holds
its slot from the moment it is sent until one second after its answer (or its failure) came back:
counting from the answer rather than from the sending makes the limit hold where the server counts,
whatever the latency of each request, so a burst above N is never seen at the other end. A rate
below 1 spaces requests 1/rate seconds apart (0.5: one every two seconds); above 1 it is a whole
number of requests per second (2.5 counts as 2).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def allowance(rate: float) -> tuple[int, float]:
    """(requests, seconds): how many requests a `rate` lets start in a window of how many seconds."""
    if rate >= 1:
        return math.floor(rate), 1.0
    return 1, 1.0 / rate


class HostLimiter:
    """Request slots per host, shared by every thread that asks for one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._changed = threading.Condition()
        self._sending: dict[str, int] = {}
        """Requests to each host that are under way."""
        self._answered: dict[str, deque[float]] = {}
        """When each recent request to a host ended, oldest first."""
        self._longest: dict[str, float] = {}
        """The longest window any rate used for a host: older answers count for no one."""

    @contextmanager
    def slot(self, host: str, rate: float | None) -> Iterator[None]:
        """Wait until a request to `host` fits in `rate` (None: no limit), and hold its slot while
        the block sends it and for the window after it ends."""
        if rate is None:
            yield
            return
        count, window = allowance(rate)
        with self._changed:
            self._longest[host] = max(self._longest.get(host, 0.0), window)
            answered = self._answered.setdefault(host, deque())
            while True:
                now = self._clock()
                while answered and answered[0] <= now - self._longest[host]:
                    answered.popleft()
                recent = [ended for ended in answered if ended > now - window]
                if self._sending.get(host, 0) + len(recent) < count:
                    break
                # the oldest recent answer leaves the window then; a request under way may end first
                self._changed.wait(recent[0] + window - now if recent else None)
            self._sending[host] = self._sending.get(host, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                self._sending[host] -= 1
                answered.append(self._clock())
                self._changed.notify_all()


LIMITER = HostLimiter()
"""The process's limiter: a rate is per host across the whole run, whichever rule or job asks."""
