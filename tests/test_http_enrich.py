"""`http.enrich` against a real HTTP server on 127.0.0.1 (SPEC sections 6, 11, 12): records merged
with the service's answers, secrets kept out of every file, the per-host rate, the response cache,
and the `deferred` outcome of a service that cannot be reached."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from blake3 import blake3
from conftest import Project, Result, serving

from batchit.operators.http import host_of
from batchit.operators.rate_limit import STALE_SECONDS

TOKEN = "tok-3f9a1c-never-written"  # noqa: S105 - a made-up secret the test looks for everywhere

ENRICH = """\
version: 1
rules:
  enrich:
    inputs: ["items/*.json"]
    output: "{stem}.json"
    retry: {attempts: 2, backoff: 0.01, max_backoff: 0.02}
    steps:
      - data.load: {}
      - http.enrich: {url: "BASE/items/{id}", headers: {Authorization: "Bearer ${env:TOKEN}"}EXTRA}
      - data.dump: {}
"""
"""One rule enriching each items/*.json record from BASE/items/{id}; two quick attempts."""

DOWNSTREAM = """\
  copies:
    inputs: {rule: enrich}
    output: "copies/{stem}.json"
    steps:
      - file.copy: {}
  index:
    inputs: {rule: enrich}
    aggregate: true
    output: index.txt
    steps:
      - python: {function: "tools:join", version: "1"}
"""
"""A 1:1 rule and an aggregate reading `enrich`'s outputs."""

TOOLS = """\
def join(value, ctx):
    return "".join(item.read_text() for item in value)
"""


class Api(BaseHTTPRequestHandler):
    """/redir/ID redirects to /items/ID, which answers {"title": "item ID", "authorized": ...}
    (never the token itself); an ID in `down` answers 503 (Retry-After: 0), the first `busy`
    requests 503 too, `missing` IDs 404.
    Notes when each request arrived, its path and its Authorization header."""

    asked: ClassVar[list[tuple[float, str, str | None]]] = []
    busy: ClassVar[int] = 0
    down: ClassVar[set[str]] = set()
    missing: ClassVar[set[str]] = set()
    lock = threading.Lock()

    def do_GET(self) -> None:
        with Api.lock:
            Api.asked.append((time.monotonic(), self.path, self.headers.get("Authorization")))
            busy = len(Api.asked) <= Api.busy
        item = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/redir/"):  # moved: to /items/ID
            self.send_response(302)
            self.send_header("Location", f"/items/{item}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = 503 if busy or item in Api.down else 404 if item in Api.missing else 200
        answer = {
            "title": f"item {item}",
            "authorized": self.headers.get("Authorization") == f"Bearer {TOKEN}",
        }
        body = json.dumps(answer).encode() if status == 200 else b'{"error": "no"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads `asked`, not the server's log."""

    @classmethod
    def reset(cls) -> None:
        """Forget every request and answer every item."""
        cls.asked, cls.busy, cls.down, cls.missing = [], 0, set(), set()


@pytest.fixture
def api() -> Iterator[str]:
    """A fresh Api server on 127.0.0.1: its base URL."""
    Api.reset()
    with serving(Api, "") as url:
        yield url


@pytest.fixture
def closed_port() -> Iterator[socket.socket]:
    """A socket bound to a port on 127.0.0.1, never listening: connections to it are refused until
    the test serves there (`serving_on`)."""
    Api.reset()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@contextlib.contextmanager
def serving_on(sock: socket.socket) -> Iterator[None]:
    """The Api server on the port `sock` held closed until now."""
    port = sock.getsockname()[1]
    sock.close()
    server = ThreadingHTTPServer(("127.0.0.1", port), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def enrich(
    project: Project, base: str, items: dict[str, int], extra: str = "", downstream: bool = False
) -> None:
    """Write the ENRICH config for `base` (plus DOWNSTREAM) and one record per item: {"id", "name"}."""
    config = ENRICH.replace("BASE", base).replace("EXTRA", extra)
    project.config(config + (DOWNSTREAM if downstream else ""))
    project.write({"tools.py": TOOLS})
    project.write(
        {f"items/{name}.json": json.dumps({"id": id_, "name": name}) for name, id_ in items.items()}
    )


def build(project: Project, *args: str, expect: int = 0) -> Result:
    """`batchit build` with the token in the environment."""
    result = project.run("build", "--no-progress", *args, env={"TOKEN": TOKEN})
    assert result.code == expect, result.describe()
    return result


def output(project: Project, name: str) -> dict[str, Any]:
    return json.loads(project.read(f"_build/{name}.json"))  # type: ignore[no-any-return]


def test_the_answer_is_merged_into_the_record_fetched_by_its_id(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7, "b": 8})
    build(project)
    assert output(project, "a") == {"id": 7, "name": "a", "title": "item 7", "authorized": True}
    assert output(project, "b")["title"] == "item 8"
    assert sorted(path for _, path, _ in Api.asked) == ["/items/7", "/items/8"]


def test_into_keeps_the_answer_under_a_key(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7}, extra=", into: meta")
    build(project)
    assert output(project, "a") == {"id": 7, "name": "a", "meta": {"title": "item 7", "authorized": True}}


@pytest.mark.parametrize(
    ("record", "says"),
    [('{"name": "a"}', "'id' is missing"), ('{"id": null}', "'id' is not a text, number or boolean")],
    ids=["missing", "null"],
)
def test_a_missing_or_null_field_is_a_permanent_error_naming_it(
    project: Project, api: str, record: str, says: str
) -> None:
    enrich(project, api, {"a": 7})
    project.write({"items/a.json": record})
    result = build(project, expect=1)
    (failure,) = project.manifest()["failures"]
    assert says in failure["message"] and "http.enrich" in failure["message"]
    assert failure["quarantine"], result.describe()
    assert Api.asked == []


def test_the_header_secret_reaches_the_server_and_no_record(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7, "b": 8, "c": 9})
    Api.missing = {"9"}  # a failure's message and quarantine reason are records too
    results = [build(project, expect=1), build(project, "--force", "--log-format", "json", expect=1)]
    results += [project.run("report"), project.run("plan", "--json"), project.run("explain", "a.json")]
    assert {auth for _, _, auth in Api.asked} == {f"Bearer {TOKEN}"}
    assert output(project, "a")["authorized"] is True
    written = project.snapshot(".batchit", "_build")
    assert any(path.startswith(".batchit/http/") for path in written)
    assert [path for path, data in written.items() if TOKEN.encode() in data] == []
    assert not any(TOKEN in result.stdout + result.stderr for result in results)


def test_an_unset_header_variable_fails_the_job_and_keeps_the_input(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7})
    project.config(project.read("batchit.yaml").replace("${env:TOKEN}", "${env:BATCHIT_TEST_UNSET}"))
    build(project, expect=1)
    (failure,) = project.manifest()["failures"]
    assert failure["class"] == "RecipeError" and "BATCHIT_TEST_UNSET" in failure["message"]
    assert failure["quarantine"] is None
    assert Api.asked == []


def busiest_second(arrivals: list[float]) -> int:
    """The most requests that arrived within one second of each other."""
    return max(sum(1 for other in arrivals if start <= other < start + 1.0) for start in arrivals)


def test_rate_holds_in_every_one_second_window_at_the_server(project: Project, api: str) -> None:
    enrich(project, api, {f"i{n}": n for n in range(5)}, extra=", rate: 2")
    build(project, "-j", "4")
    arrivals = sorted(when for when, _, _ in Api.asked)
    assert len(arrivals) == 5
    assert busiest_second(arrivals) <= 2, arrivals


@pytest.mark.slow
def test_rate_holds_across_the_processes_of_doit_sub_tasks(project: Project, api: str) -> None:
    enrich(project, api, {f"i{n}": n for n in range(6)}, extra=", rate: 2")
    dodo = f"import batchit.doit\ntask_enrich = batchit.doit.tasks({project.root.name!r})\n"
    (project.root.parent / "dodo.py").write_text(dodo, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "doit", "-n", "3", "-P", "process"],  # each sub-task in one of 3 processes
        cwd=project.root.parent,
        env={**os.environ, "TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    arrivals = sorted(when for when, _, _ in Api.asked)
    assert len(arrivals) == 6
    assert busiest_second(arrivals) <= 2, arrivals


def test_each_redirect_counts_against_the_rate(project: Project, api: str) -> None:
    enrich(project, api.replace("/items", "") + "/redir", {f"i{n}": n for n in range(3)}, extra=", rate: 1")
    build(project, "-j", "4")
    arrivals = sorted(when for when, _, _ in Api.asked)
    assert len(arrivals) == 6  # each record: the redirect, then the item
    assert busiest_second(arrivals) == 1, arrivals


def test_the_default_port_written_out_is_the_same_host_to_the_rate() -> None:
    assert host_of("http://Example.org/a") == host_of("http://example.org:80/b") == "example.org:80"
    assert host_of("https://example.org/a") == host_of("https://example.org:443/b")
    assert host_of("http://example.org:8080/a") != host_of("http://example.org/a")


def test_a_request_left_under_way_by_a_dead_run_holds_the_rate_only_so_long(
    project: Project, api: str
) -> None:
    """An entry whose pid is alive again (another process now) is still dropped once it is older
    than any request can be; else the build would wait for it for ever."""
    enrich(project, api, {"a": 1}, extra=", rate: 1")
    record = {"sending": {"left": [os.getpid(), time.monotonic() - STALE_SECONDS - 1]}, "answered": []}
    rate_file(project, api).write_text(json.dumps(record), encoding="utf-8")
    build(project)
    assert len(Api.asked) == 1


def rate_file(project: Project, api: str) -> Path:
    """The project's rate file for the test server's host, its folder made."""
    port = api.rsplit(":", 1)[1].split("/")[0]
    folder = project.root / ".batchit/http/rate"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{blake3(f'127.0.0.1:{port}'.encode()).hexdigest()[:32]}.json"


def test_a_rate_file_whose_window_is_nan_is_read_as_empty(project: Project, api: str) -> None:
    """JSON as Python writes it may hold NaN; a window of NaN would drop every recent answer and
    let every request through at once."""
    enrich(project, api, {f"i{n}": n for n in range(3)}, extra=", rate: 1")
    rate_file(project, api).write_text('{"sending": {}, "answered": [], "longest": NaN}')
    build(project, "-j", "3")
    arrivals = sorted(when for when, _, _ in Api.asked)
    assert len(arrivals) == 3
    assert busiest_second(arrivals) == 1, arrivals


def test_a_rate_that_cannot_be_kept_fails_the_job_without_quarantining_the_input(
    project: Project, api: str
) -> None:
    enrich(project, api, {"a": 1}, extra=", rate: 1")
    (project.root / ".batchit/http").mkdir(parents=True)
    (project.root / ".batchit/http/rate").write_text("a file where the folder belongs", encoding="utf-8")
    result = build(project, expect=1)
    [failure] = project.manifest()["failures"]
    assert "cannot keep the request rate" in failure["message"], result.describe()
    assert failure["quarantine"] is None
    assert Api.asked == []


def test_a_404_quarantines_the_input_naming_the_url_and_status(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7, "b": 8})
    Api.missing = {"8"}
    build(project, expect=1)
    (failure,) = project.manifest()["failures"]
    assert failure["class"] == "PermanentError"
    assert f"GET {api}/items/8 answered 404" in failure["message"]
    assert (project.root / ".batchit/quarantine/enrich/items/b.json").exists()
    assert len(Api.asked) == 2, "a 404 is not retried"
    assert project.manifest()["summary"]["deferred"] == 0


def test_a_503_is_retried_and_the_job_builds(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7})
    Api.busy = 1
    build(project)
    assert [path for _, path, _ in Api.asked] == ["/items/7", "/items/7"]
    assert output(project, "a")["title"] == "item 7"


def test_an_unreachable_service_defers_the_job_until_it_answers(
    project: Project, closed_port: socket.socket
) -> None:
    enrich(project, f"http://127.0.0.1:{closed_port.getsockname()[1]}", {"a": 7})
    result = build(project)
    assert "deferred enrich: _build/a.json" in result.stderr and "ConnectError" in result.stderr
    manifest = project.manifest()
    assert manifest["summary"]["deferred"] == 1 and manifest["summary"]["failed"] == 0
    assert manifest["status"] == "ok"
    assert manifest["failures"] == [] and manifest["outputs"] == []
    assert not (project.root / "_build/a.json").exists()
    assert not (project.root / ".batchit/quarantine").exists()
    run_dir = project.root / ".batchit/runs" / manifest["run_id"]
    (deferred,) = json.loads((run_dir / "run.json").read_text())["deferred"]
    assert deferred["output"] == "a.json"
    build(project, "--strict", expect=1)
    assert project.manifest()["status"] == "failed"  # the record says what the exit code says
    with serving_on(closed_port):
        assert "run      _build/a.json" in project.run("plan").stdout, "a deferred job stays stale"
        build(project)
    assert output(project, "a")["title"] == "item 7"
    assert project.manifest()["summary"]["built"] == 1


def test_jobs_reading_a_deferred_output_are_deferred_too(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7, "b": 8}, downstream=True)
    build(project)
    Api.down = {"9"}  # 5xx after the last attempt: the service cannot help, as a refused connection
    project.write({"items/b.json": json.dumps({"id": 9, "name": "b"})})
    build(project)
    manifest = project.manifest()
    summary = manifest["summary"]
    assert (summary["deferred"], summary["up_to_date"], summary["failed"]) == (3, 2, 0)
    statuses = {entry["path"]: entry["status"] for entry in manifest["outputs"]}
    assert statuses["b.json"] == "deferred", "its old output stays, listed as deferred"
    assert statuses["copies/b.json"] == statuses["index.txt"] == "deferred"
    assert output(project, "b")["title"] == "item 8"
    Api.down = set()
    build(project)
    assert project.manifest()["summary"]["built"] == 3
    assert output(project, "copies/b")["title"] == "item 9"


@pytest.mark.parametrize(("ttl", "asked_again"), [(3600, 0), (0, 2)])
def test_a_forced_build_reuses_answers_younger_than_cache_ttl(
    project: Project, api: str, ttl: int, asked_again: int
) -> None:
    enrich(project, api, {"a": 7, "b": 8}, extra=f", cache_ttl: {ttl}")
    build(project)
    first = output(project, "a")
    build(project, "--force", "--no-cache")
    assert len(Api.asked) == 2 + asked_again
    assert output(project, "a") == first


def test_a_rule_with_http_enrich_cannot_be_a_cpu_rule(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7})
    project.config(project.read("batchit.yaml").replace("    steps:", "    resources: cpu\n    steps:"))
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert re.search(r"batchit\.yaml:\d+.*resources: io", result.stderr), result.describe()


PRESET = """\
version: 1
include: [batchit:enrich]
rules:
  products:
    preset: enrich_records
    with:
      src: ["items/*.json"]
      url: "BASE/items/{id}"
      headers: {Authorization: "Bearer ${env:TOKEN}"}
      attempts: 2
"""


def test_the_enrich_preset_loads_fetches_and_dumps_each_record(project: Project, api: str) -> None:
    enrich(project, api, {"a": 7})
    project.config(PRESET.replace("BASE", api))
    build(project)
    assert output(project, "records/a") == {"id": 7, "name": "a", "title": "item 7", "authorized": True}
