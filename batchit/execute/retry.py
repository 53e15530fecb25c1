"""Transient failures (SPEC section 6): which failures retry, and how long to wait before the next try.

Backoff is exponential with full jitter, from a random source seeded by the run's seed, the job's
key and the attempt, so a replay with the same seed waits the same way; a server's Retry-After is
a floor, never shortened.

A step's code often meets a network fault through a library that wraps it: httpx's ConnectError,
urllib's URLError around a refused connection, an HTTP error carrying a 503. So a failure is
transient when it, or anything it wraps (its cause, the exception it was raised while handling, a
URLError's reason), is one: a timeout, a connection error, EAGAIN or EBUSY, httpx's timeouts and
network errors, an HTTP response of 429 or 5xx. A JobError says for itself.
"""

from __future__ import annotations

import errno
import math
import random
import sys
import time
from collections.abc import Iterator

from batchit.errors import JobError
from batchit.model import Retry

TRANSIENT_ERRNOS = frozenset(
    {errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET}
)


LONGEST_RETRY_AFTER = 300.0
"""The longest `Retry-After` a build waits for, in seconds: a server asking for more (an hour, a
day) ends the job's attempts now, and the next build tries it again, instead of a build that
sits idle for the rest of the day."""


def backoff_delay(policy: Retry, attempt: int, seed: str, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based) before the next one."""
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
    delay = random.Random(f"{seed}:{attempt}").uniform(0, ceiling)  # noqa: S311 - jitter, not crypto
    return max(delay, retry_after) if retry_after else delay


def classify(exc: BaseException) -> tuple[bool, str]:
    """(transient?, class name) of a failure."""
    name = type(exc).__name__
    if isinstance(exc, JobError):
        return exc.transient, name
    return any(_transient(inner) for inner in _wrapped(exc)), name


def retry_after_of(exc: BaseException) -> float | None:
    """The least wait in seconds a failure asks for before the next attempt: a `retry_after`
    attribute (TransientError's), or the Retry-After header of an HTTP response it carries."""
    for inner in _wrapped(exc):
        value = getattr(inner, "retry_after", None)
        if value is None:
            response = getattr(inner, "response", None)
            headers = getattr(response if response is not None else inner, "headers", None)
            value = headers.get("Retry-After") if headers is not None and hasattr(headers, "get") else None
        seconds = retry_after_seconds(value)
        if seconds is not None:
            return seconds
    return None


def retry_after_seconds(value: object) -> float | None:
    """The seconds a Retry-After value asks to wait: a number, or the header's text (seconds or an
    HTTP date); None for anything else, such as a negative or unreadable value."""
    seconds: float
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            seconds = max(seconds, 0.0)  # a date already past: try again now
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _wrapped(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps, each once: causes, contexts not suppressed, URLError's reason."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, getattr(current, "reason", None)]
        if not current.__suppress_context__:
            inner.append(current.__context__)
        todo.extend(found for found in inner if isinstance(found, BaseException))


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, JobError):
        return exc.transient
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    status = _http_status(exc)
    if status is not None:
        return status == 429 or 500 <= status < 600
    httpx = sys.modules.get("httpx")  # a step that raised one of its errors has imported it
    return httpx is not None and isinstance(
        exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
    )


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of the response a failure carries: httpx's HTTPStatusError and requests'
    HTTPError (`response.status_code`), urllib's HTTPError (`code`)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is None:
        urllib_error = sys.modules.get("urllib.error")
        if urllib_error is not None and isinstance(exc, urllib_error.HTTPError):
            status = exc.code
    return status if isinstance(status, int) and not isinstance(status, bool) else None
