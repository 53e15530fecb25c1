"""The HTTP trigger API of `batchit serve` (SPEC section 4), on the standard library's HTTP server.

Routes: `POST /runs` queues a build (idempotent by `Idempotency-Key`), `GET /runs` lists this
server's requests and the runs recorded in `.batchit/runs`, `GET /runs/{id}` shows a request
(`req-...`, optionally waiting for it with `?wait=SECONDS`) or a recorded run, `/runs/{id}/manifest`
and `/runs/{id}/report` return the run's signed manifest and HTML report, `/healthz` says the
server is up, `/openapi.json` describes all of it. With `BATCHIT_API_TOKEN` set, every route but
`/healthz` and `/openapi.json` needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import json
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from batchit.errors import BatchitError
from batchit.record.recorder import MANIFEST
from batchit.record.report import REPORT_FILE
from batchit.record.rundata import RUN_FILE
from batchit.record.runs import list_runs, read_json_object, run_summary
from batchit.serve.openapi import IDLE_SECONDS, LARGEST_BODY, LONGEST_WAIT, OPENAPI
from batchit.serve.queue import BuildQueue, BuildRequest, IdempotencyConflict

SEND_CHUNK = 64 * 1024
"""An answer is sent in pieces this large, each within IDLE_SECONDS: a whole report need not be."""
OPEN_ROUTES = frozenset({"/healthz", "/openapi.json"})
"""What answers without the token: a load balancer's probe and the API's description."""
RECORD_FILES = {
    "manifest": (MANIFEST, "application/json"),
    "report": (REPORT_FILE, "text/html; charset=utf-8"),
}


class ApiServer(ThreadingHTTPServer):
    """An HTTP server holding what every request handler needs: the queue, the runs folder, the token."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        queue: BuildQueue,
        runs: Path,
        token: str | None,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, ApiHandler)
        self.queue = queue
        self.runs = runs
        self.token = token
        self.idle_seconds = idle_seconds

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a reset, a broken pipe, silence past the idle
        limit) is no fault of the server's: nothing is printed. Anything else is, with its traceback."""
        if isinstance(sys.exception(), ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class ApiHandler(BaseHTTPRequestHandler):
    """One HTTP request: checks the token, routes, and answers JSON (or a record file)."""

    server: ApiServer
    protocol_version = "HTTP/1.1"
    error_content_type = "application/json"
    error_message_format = '{"error": "%(message)s"}'
    quiet: ClassVar[bool] = True

    def setup(self) -> None:
        """Give the connection the server's idle limit before anything is read from it."""
        super().setup()
        self.connection.settimeout(self.server.idle_seconds)

    def do_GET(self) -> None:
        """Health, the API description, the list of runs, one run, a run's manifest or report."""
        path, query = self._route()
        if path is None:
            return
        parts = path.strip("/").split("/")
        if path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif path == "/openapi.json":
            self._json(HTTPStatus.OK, OPENAPI)
        elif parts == ["runs"]:
            runs = [run.as_json() for run in list_runs(self.server.runs)]
            self._json(HTTPStatus.OK, {"requests": self.server.queue.requests(), "runs": runs})
        elif len(parts) == 2 and parts[0] == "runs":
            self._show(parts[1], query)
        elif len(parts) == 3 and parts[0] == "runs" and parts[2] in RECORD_FILES:
            self._record_file(parts[1], parts[2])
        else:
            self._problem(HTTPStatus.NOT_FOUND, f"no route {path}")

    def refuse_method(self) -> None:
        """Any other method: 405, with the methods the path takes."""
        allowed = "GET, POST" if urlsplit(self.path).path == "/runs" else "GET"
        self._problem(
            HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not a method of this API", {"Allow": allowed}
        )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse_method

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's error answers (a malformed request line, a path too long), with
        the message escaped so that the body stays JSON."""
        escaped = json.dumps(message)[1:-1] if message else None
        super().send_error(code, escaped, explain)

    def do_POST(self) -> None:
        """`POST /runs`: queue a build; 202 for a new request, 200 for a repeated Idempotency-Key."""
        path, _ = self._route()
        if path is None:
            return
        if path != "/runs":
            self._problem(
                HTTPStatus.NOT_FOUND if path not in OPEN_ROUTES else HTTPStatus.METHOD_NOT_ALLOWED, path
            )
            return
        body = self._body()
        if body is _REFUSED:
            return
        try:
            run, created = self.server.queue.submit(
                BuildRequest.from_json(body), self.headers.get("Idempotency-Key")
            )
        except IdempotencyConflict as exc:
            self._problem(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
            return
        except BatchitError as exc:
            self._problem(HTTPStatus.BAD_REQUEST, str(exc))
            return
        status = HTTPStatus.ACCEPTED if created else HTTPStatus.OK
        self._json(status, run.as_json(), {"Location": f"/runs/{run.id}"})

    def _route(self) -> tuple[str | None, dict[str, list[str]]]:
        """The request's path and query once the token checks out; (None, {}) when answered already."""
        parts = urlsplit(self.path)
        if parts.path not in OPEN_ROUTES and not self._authorised():
            self._problem(HTTPStatus.UNAUTHORIZED, "a bearer token is needed", {"WWW-Authenticate": "Bearer"})
            return None, {}
        return parts.path, parse_qs(parts.query)

    def _authorised(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        sent = self.headers.get("Authorization", "")
        scheme, _, credentials = sent.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), token.encode()
        )

    def _body(self) -> Any:
        """The request's JSON body (None when empty); _REFUSED after answering a bad one."""
        if "Transfer-Encoding" in self.headers:  # chunked: unread, the body would be taken for none
            self._problem(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
            self.close_connection = True
            return _REFUSED
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._problem(HTTPStatus.BAD_REQUEST, "Content-Length is not a number of bytes")
            self.close_connection = True
            return _REFUSED
        if length > LARGEST_BODY:
            self._problem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a request body holds at most {LARGEST_BODY} bytes"
            )
            self.close_connection = True
            return _REFUSED
        try:
            raw = self.rfile.read(length) if length else b""
        except TimeoutError:
            waited = self.server.idle_seconds
            self._problem(HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive within {waited:g} s")
            self.close_connection = True
            return _REFUSED
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            self._problem(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {exc}")
            return _REFUSED

    def _show(self, run_id: str, query: dict[str, list[str]]) -> None:
        """A request this server queued (waiting up to `?wait=` seconds for it to end), else a run."""
        wait = _seconds(query.get("wait", ["0"])[-1])
        if wait is None:
            self._problem(HTTPStatus.BAD_REQUEST, "`wait` takes a number of seconds")
            return
        request = self.server.queue.get(run_id)
        if request is not None:
            request.done.wait(min(wait, LONGEST_WAIT))
            self._json(HTTPStatus.OK, request.as_json())
            return
        recorded = self._run_dir(run_id)
        summary = run_summary(recorded) if recorded is not None else None
        if summary is None:
            self._problem(HTTPStatus.NOT_FOUND, f"no run {run_id}")
            return
        self._json(HTTPStatus.OK, summary.as_json())

    def _record_file(self, run_id: str, which: str) -> None:
        """A run's manifest or report, by run id or by the id of the request that made it."""
        request = self.server.queue.get(run_id)
        if request is not None:
            run_id = request.run_id or ""
        run_dir = self._run_dir(run_id)
        name, content_type = RECORD_FILES[which]
        if run_dir is None or not (run_dir / name).is_file():
            self._problem(HTTPStatus.NOT_FOUND, f"no {which} for {run_id or 'a request not yet recorded'}")
            return
        self._send(HTTPStatus.OK, (run_dir / name).read_bytes(), content_type)

    def _run_dir(self, run_id: str) -> Path | None:
        """The folder of a recorded run (one with a manifest or run.json), None for any other name."""
        if not run_id or run_id.startswith(".") or "/" in run_id:
            return None
        run_dir = self.server.runs / run_id
        if read_json_object(run_dir / RUN_FILE) is None and not (run_dir / MANIFEST).is_file():
            return None
        return run_dir

    def _json(self, status: HTTPStatus, document: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(document, indent=2).encode() + b"\n", "application/json", headers)

    def _problem(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message}, headers)

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        view = memoryview(body)
        for start in range(0, len(view), SEND_CHUNK):  # a socket timeout bounds one whole write
            self.wfile.write(view[start : start + SEND_CHUNK])

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged line by line: the builds they start report themselves."""


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


_REFUSED = object()
"""What `_body` returns after it has answered a body it refused."""
