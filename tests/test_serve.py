"""`batchit serve`: the HTTP trigger API (SPEC section 4), started as a real process and called over HTTP."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import COPY_CONFIG, THREE_SOURCES, Project

WAIT = {"wait": "60"}
"""Long-poll a request until its build has ended (the API's own way to wait; no sleeping)."""


@contextmanager
def serving_api(project: Project, *args: str, env: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    """`batchit serve --port 0` in the project, and a client for its URL; stopped with Ctrl-C after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "batchit", "serve", "--port", "0", *args],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # printed once the server listens
    assert "listening on http://" in first, first + process.communicate(timeout=30)[1]
    url = first.split("listening on ")[1].split()[0]
    try:
        with httpx.Client(base_url=url, timeout=90) as client:
            yield client
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "batchit serve: stopped" in out


@pytest.fixture
def api(copies: Project) -> Iterator[httpx.Client]:
    """The API of a project of three files copied by one rule."""
    with serving_api(copies) as client:
        yield client


def test_a_posted_run_builds_and_names_its_recorded_run(api: httpx.Client, copies: Project) -> None:
    posted = api.post("/runs", json={})
    assert posted.status_code == 202
    request_id = posted.json()["id"]
    assert posted.headers["Location"] == f"/runs/{request_id}"

    done = api.get(f"/runs/{request_id}", params=WAIT).json()

    assert done["status"] == "succeeded" and done["exit_code"] == 0
    latest = (copies.root / ".batchit/runs/LATEST").read_text().strip()
    assert done["run_id"] == latest
    assert copies.read("_build/a.txt") == "alpha\n"
    listed = api.get("/runs").json()
    assert [r["run_id"] for r in listed["runs"]] == [latest]
    assert [r["id"] for r in listed["requests"]] == [request_id]
    assert api.get(f"/runs/{latest}").json()["summary"]["built"] == 3


def test_manifest_and_report_are_served_by_run_id_and_by_request_id(
    api: httpx.Client, copies: Project
) -> None:
    request_id = api.post("/runs").json()["id"]
    run_id = api.get(f"/runs/{request_id}", params=WAIT).json()["run_id"]
    on_disk = (copies.root / ".batchit/runs" / run_id / "manifest.json").read_bytes()

    for name in (run_id, request_id):
        manifest = api.get(f"/runs/{name}/manifest")
        assert manifest.status_code == 200 and manifest.content == on_disk
        report = api.get(f"/runs/{name}/report")
        assert report.status_code == 200
        assert report.headers["Content-Type"].startswith("text/html")
        assert run_id in report.text


def test_the_same_idempotency_key_queues_one_build(api: httpx.Client, copies: Project) -> None:
    first = api.post("/runs", json={"rules": ["copy"]}, headers={"Idempotency-Key": "deploy-42"})
    again = api.post("/runs", json={"rules": ["copy"]}, headers={"Idempotency-Key": "deploy-42"})

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    api.get(f"/runs/{first.json()['id']}", params=WAIT)
    assert len(api.get("/runs").json()["requests"]) == 1
    assert len([p for p in (copies.root / ".batchit/runs").iterdir() if p.is_dir()]) == 1


def test_an_idempotency_key_sent_again_with_another_body_is_refused(api: httpx.Client) -> None:
    api.post("/runs", json={"rules": ["copy"]}, headers={"Idempotency-Key": "k"})

    other = api.post("/runs", json={"flags": {"fast": True}}, headers={"Idempotency-Key": "k"})

    assert other.status_code == 422
    assert "different request" in other.json()["error"]


def test_a_null_flag_reaches_the_build_as_flag_null_would(project: Project) -> None:
    """`{"flags": {"reviewer": null}}` is `--flag reviewer=null`: accepted, and the build sees it."""
    project.config(
        """\
        version: 1
        flags: {reviewer: "ann"}
        rules:
          copy:
            inputs: ["src/*.txt"]
            output: "{name}"
            steps:
              - text.load: {}
              - text.replace: {pattern: "$", replacement: " (unreviewed)", when: "flags.reviewer == 'null'"}
        """
    )
    project.write({"src/a.txt": "a"})
    with serving_api(project) as api:
        posted = api.post("/runs", json={"flags": {"reviewer": None}})
        assert posted.status_code == 202, posted.text
        done = api.get(f"/runs/{posted.json()['id']}", params=WAIT).json()
    assert done["status"] == "succeeded", done
    assert project.read("_build/a.txt") == "a (unreviewed)", "a string flag takes the text as written"


def test_queued_builds_run_one_at_a_time_in_order(api: httpx.Client) -> None:
    ids = [api.post("/runs").json()["id"] for _ in range(3)]

    done = [api.get(f"/runs/{i}", params=WAIT).json() for i in ids]

    assert [d["status"] for d in done] == ["succeeded"] * 3  # none met another's lock (exit 3)
    for before, after in itertools.pairwise(done):
        assert before["finished"] <= after["started"]


def test_a_build_that_cannot_start_ends_in_error_with_its_message(api: httpx.Client) -> None:
    request_id = api.post("/runs", json={"rules": ["nosuchrule"]}).json()["id"]

    done = api.get(f"/runs/{request_id}", params=WAIT).json()

    assert (done["status"], done["exit_code"], done["run_id"]) == ("error", 2, None)
    assert "nosuchrule" in done["message"]
    assert api.get(f"/runs/{request_id}/manifest").status_code == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (b'{"rule": ["copy"]}', "unknown field"),
        (b'{"rules": "copy"}', "list of rule names"),
        (b"[1]", "JSON object"),
        (b'{"flags": {"a=b": "c"}}', "map flag names"),
        (b'{"rules": ["co\\u0000py"]}', "NUL"),
        (b'{"flags": {"fa\\u0000st": "1"}}', "NUL"),
        (b'{"flags": {"fast": "1\\u0000"}}', "NUL"),
        (b'{"rules": ["copy\\ud800"]}', "lone surrogate"),
    ],
    ids=[
        "not-json",
        "unknown-field",
        "rules-not-a-list",
        "not-an-object",
        "flag-name-with-equals",
        "rule-with-nul",
        "flag-name-with-nul",
        "flag-value-with-nul",
        "rule-with-lone-surrogate",
    ],
)
def test_a_malformed_request_is_refused_with_400(api: httpx.Client, body: bytes, says: str) -> None:
    answer = api.post("/runs", content=body, headers={"Content-Type": "application/json"})

    assert answer.status_code == 400
    assert says in answer.json()["error"]
    assert api.get("/runs").json()["requests"] == []
    request_id = api.post("/runs").json()["id"]  # and the queue still builds what comes next
    assert api.get(f"/runs/{request_id}", params=WAIT).json()["status"] == "succeeded"


def test_unknown_routes_and_runs_are_404(api: httpx.Client) -> None:
    assert api.get("/nothing").status_code == 404
    assert api.get("/runs/20990101T000000000Z-abcdef").status_code == 404
    assert api.get("/runs/../../batchit.yaml/manifest").status_code == 404


def test_health_and_openapi_describe_the_api(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    spec = api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/runs", "/runs/{id}", "/runs/{id}/manifest", "/runs/{id}/report", "/healthz"} <= set(
        spec["paths"]
    )


PEEK_CONFIG = """\
version: 1
rules:
  peek:
    inputs: ["src/*.txt"]
    output: "{name}"
    steps:
      - python: {function: "peek:token", version: "1"}
"""
PEEK_MODULE = """\
import os

def token(value, ctx):
    return repr(os.environ.get("BATCHIT_API_TOKEN"))
"""


def test_with_a_token_every_route_but_health_needs_it_and_builds_never_see_it(project: Project) -> None:
    project.config(PEEK_CONFIG)
    project.write({"peek.py": PEEK_MODULE, "src/a.txt": "a\n"})
    with serving_api(project, env={"BATCHIT_API_TOKEN": "s3cret"}) as api:
        assert api.get("/runs").status_code == 401
        assert api.get("/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert api.post("/runs").status_code == 401
        assert api.get("/healthz").status_code == 200

        bearer = {"Authorization": "Bearer s3cret"}
        request_id = api.post("/runs", headers=bearer).json()["id"]
        done = api.get(f"/runs/{request_id}", params=WAIT, headers=bearer).json()

    assert done["status"] == "succeeded"
    assert project.read("_build/a.txt") == "None"


def test_without_a_token_it_listens_on_loopback_only(copies: Project) -> None:
    result = copies.run(
        "serve",
        "--host",
        "0.0.0.0",  # noqa: S104 - refused before it binds
        env={"BATCHIT_API_TOKEN": ""},
    )

    assert result.code == 2
    assert "BATCHIT_API_TOKEN" in result.stderr


def test_a_broken_config_stops_serve_before_it_listens(project: Project) -> None:
    project.config("rules: [\n")
    project.write(THREE_SOURCES)

    result = project.run("serve", "--port", "0")

    assert result.code == 2
    assert "batchit.yaml" in result.stderr and "listening" not in result.stdout


def test_a_config_broken_while_serving_fails_that_request_only(api: httpx.Client, copies: Project) -> None:
    copies.config("rules: [\n")
    broken = api.get(f"/runs/{api.post('/runs').json()['id']}", params=WAIT).json()
    copies.config(COPY_CONFIG)
    fixed = api.get(f"/runs/{api.post('/runs').json()['id']}", params=WAIT).json()

    assert (broken["status"], broken["exit_code"]) == ("error", 2)
    assert "batchit.yaml" in broken["message"]
    assert fixed["status"] == "succeeded"


def test_other_methods_are_405_naming_the_allowed_ones(api: httpx.Client) -> None:
    put = api.put("/runs")
    delete = api.delete("/runs/req-1")

    assert (put.status_code, put.headers["Allow"]) == (405, "GET, POST")
    assert (delete.status_code, delete.headers["Allow"]) == (405, "GET")
    assert "DELETE" in delete.json()["error"]


def raw_request(api: httpx.Client, request: bytes) -> tuple[bytes, bytes]:
    """Send bytes no HTTP client would, and read the answer to the end: its head and its body."""
    with socket.create_connection((str(api.base_url.host), int(api.base_url.port or 80)), timeout=30) as raw:
        raw.sendall(request)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def test_a_content_length_that_is_no_number_is_400(api: httpx.Client) -> None:
    head, body = raw_request(api, b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}")

    assert head.startswith(b"HTTP/1.1 400")
    assert "Content-Length" in json.loads(body)["error"]
    assert api.get("/runs").json()["requests"] == []


def test_wait_that_is_no_number_is_400_for_a_run_as_for_a_request(api: httpx.Client) -> None:
    run_id = api.get(f"/runs/{api.post('/runs').json()['id']}", params=WAIT).json()["run_id"]

    assert api.get(f"/runs/{run_id}", params={"wait": "abc"}).status_code == 400


def test_the_servers_own_error_answers_stay_json(api: httpx.Client) -> None:
    head, body = raw_request(api, b'FO"O /runs HTTP/1.1\r\nHost: x\r\n\r\n')

    assert head.startswith(b"HTTP/1.1 501")
    assert 'FO"O' in json.loads(body)["error"]
