"""Network faults a step meets through an HTTP library are transient (SPEC section 6): retried, never
quarantined, and a server's Retry-After is honoured, however the library wraps them."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from conftest import Project, serving

FETCH = """\
version: 1
rules:
  fetch:
    inputs: ["in/*.txt"]
    output: "{stem}.json"
    retry: {attempts: 2, backoff: 0.01, max_backoff: 0.02}
    steps:
      - python: {function: "steps:FUNCTION", version: "1"}
"""
"""One rule fetching the URL in url.txt for each input; two attempts, next to no backoff of its own."""

STEPS = """\
import urllib.request

import httpx

from batchit.errors import TransientError


def _url(ctx):
    with open(ctx.root / "attempts.log", "a") as log:
        log.write(ctx.input + "\\n")
    return (ctx.root / "url.txt").read_text().strip()


def via_urllib(value, ctx):
    with urllib.request.urlopen(_url(ctx), timeout=10) as answer:
        return answer.read()


def via_httpx(value, ctx):
    answer = httpx.get(_url(ctx), timeout=10)
    answer.raise_for_status()
    return answer.content


def told_to_wait(value, ctx):
    wait = _url(ctx)
    if len((ctx.root / "attempts.log").read_text().splitlines()) == 1:
        raise TransientError("busy", retry_after=wait)
    return b"{}"
"""


def fetching(project: Project, function: str, url: str) -> None:
    """Make `project` fetch `url` once per input (one input, in/a.txt) through `function` of STEPS."""
    project.config(FETCH.replace("FUNCTION", function))
    project.write({"steps.py": STEPS, "url.txt": url, "in/a.txt": "a\n"})


def attempts(project: Project) -> int:
    """How many times the step ran."""
    return len(project.read("attempts.log").splitlines())


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A URL on 127.0.0.1 whose port refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/item"


@pytest.mark.parametrize("function", ["via_urllib", "via_httpx"])
def test_a_refused_connection_is_retried_never_quarantined(
    project: Project, refusing_url: str, function: str
) -> None:
    fetching(project, function, refusing_url)
    project.build(expect=1)
    assert attempts(project) == 2
    (failure,) = project.manifest()["failures"]
    assert failure["class"] in {"URLError", "ConnectError"}
    assert failure["quarantine"] is None
    assert not (project.root / ".batchit/quarantine").exists()
    project.build(expect=1)
    assert attempts(project) == 4, "the next build tries it again"


class Busy(BaseHTTPRequestHandler):
    """Answers 503 with "Retry-After: 2" (as seconds or as an HTTP date) once, then 200 with a JSON
    body; notes when it was asked."""

    form: ClassVar[str] = "seconds"
    asked: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        Busy.asked.append(time.monotonic())
        first = len(Busy.asked) == 1
        body = b"" if first else b'{"ok": true}'
        self.send_response(503 if first else 200)
        if first and Busy.form == "seconds":
            self.send_header("Retry-After", "2")
        elif first:  # whole seconds: 3 s ahead, cut down, is 2 s ahead at least
            self.send_header("Retry-After", email.utils.formatdate(time.time() + 3, usegmt=True))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads when it was asked, not the server's log."""


@pytest.fixture
def busy_url() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that is busy (503) the first time it is asked."""
    Busy.asked = []
    with serving(Busy, "/item") as url:
        yield url


@pytest.mark.parametrize("function", ["via_urllib", "via_httpx"])
@pytest.mark.parametrize("form", ["seconds", "HTTP date"])
def test_a_503_is_retried_no_sooner_than_its_retry_after(
    project: Project, busy_url: str, function: str, form: str
) -> None:
    Busy.form = form
    fetching(project, function, busy_url)
    project.build()
    assert project.read("_build/a.json") == '{"ok": true}'
    first, second = Busy.asked
    assert second - first >= 1.9, "the retry waits as long as Retry-After says, not the rule's backoff"


def test_a_transient_error_may_pass_retry_after_as_the_header_text(project: Project) -> None:
    fetching(project, "told_to_wait", "1.5")
    started = time.monotonic()
    project.build()
    assert attempts(project) == 2
    assert time.monotonic() - started >= 1.5


def test_an_unreadable_retry_after_is_ignored(project: Project) -> None:
    fetching(project, "told_to_wait", "soon")
    project.build()
    assert attempts(project) == 2
    assert project.read("_build/a.json") == "{}"


def test_a_retry_after_longer_than_a_build_waits_ends_the_attempts_now(project: Project) -> None:
    fetching(project, "told_to_wait", "86400")  # come back tomorrow

    result = project.build(expect=1)

    assert attempts(project) == 1
    assert "retry after 86400 s" in result.stderr and "the next build tries again" in result.stderr
    assert not list(project.root.glob(".batchit/quarantine/**/*.txt"))  # transient: never quarantined
