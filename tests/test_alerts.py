"""`alerts.webhook` keeps to its deadline (SPEC section 6: retried with backoff for at most 30 s),
whatever the webhook does: httpx's timeouts bound each phase of a request (connect, each read), not
the request, so a server that sends its answer a byte at a time would hold a build for as long as
it trickles. Each test runs a real server on 127.0.0.1 that never finishes its answer."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import PICKY, Project

from batchit.record.alerts import DEADLINE, send_alert


@contextlib.contextmanager
def trickling(lasting: float) -> Iterator[str]:
    """A webhook on 127.0.0.1 that starts each answer, then sends one more byte of its headers every
    0.2 s for `lasting` seconds (each read gets a byte long before any read timeout): its URL."""
    stop = threading.Event()
    listening = socket.create_server(("127.0.0.1", 0))

    def answer(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            until = time.monotonic() + lasting
            while time.monotonic() < until and not stop.wait(0.2):
                connection.sendall(b"a")

    def serve() -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                connection, _ = listening.accept()
                threading.Thread(target=answer, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}/hook"
    finally:
        stop.set()
        listening.close()


def test_an_answer_that_trickles_is_given_up_at_the_deadline() -> None:
    with trickling(lasting=20) as url:
        started = time.monotonic()
        problem = send_alert(url, "20260101T000000000Z-abcdef", {"status": "failed"}, deadline=2.0)
        took = time.monotonic() - started
    assert problem is not None and "gave up" in problem, problem
    assert took < 2.5, f"the alert took {took:.1f} s, past its 2 s deadline"


def test_a_webhook_that_never_answers_is_given_up_at_the_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listening:  # connections wait in its backlog
        url = f"http://127.0.0.1:{listening.getsockname()[1]}/hook"
        started = time.monotonic()
        problem = send_alert(url, "20260101T000000000Z-abcdef", {"status": "failed"}, deadline=1.0)
        took = time.monotonic() - started
    assert problem is not None and "gave up" in problem, problem
    assert took < 1.5, f"the alert took {took:.1f} s, past its 1 s deadline"


@pytest.mark.slow
def test_a_build_whose_webhook_trickles_ends_once_the_alert_deadline_passed(picky: Project) -> None:
    with trickling(lasting=3 * DEADLINE) as url:
        picky.config(PICKY + f'alerts: {{webhook: "{url}"}}\n')
        started = time.monotonic()
        result = picky.build(expect=1)  # a job failed; the alert does not change that
        took = time.monotonic() - started
    assert "not delivered" in result.stderr, result.describe()
    assert took < DEADLINE + 10, f"the build took {took:.0f} s with a {DEADLINE:g} s alert deadline"
