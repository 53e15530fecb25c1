"""Edge cases of the data operators and `http.enrich`, through the real CLI (SPEC sections 6, 8, 11,
12): what is the input's fault (quarantined) and what is the rule's or the service's (not), data
that could not be written back or read back the same, and secrets that must stay out of every
record even when they hold a character no header may carry."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar, NamedTuple

import pytest
from conftest import Project, serving
from test_http_enrich import ENRICH as ENRICHING

from batchit.operators.http_cache import Answer, read_entry, write_entry

SECRET = "edge-7c1e-never-written"  # noqa: S105 - a made-up secret the test looks for everywhere


class Answers(BaseHTTPRequestHandler):
    """/PATH answers `bodies[PATH]` (200, application/json), sent with the Content-Encoding
    `encodings[PATH]` when it has one (the body is then written encoded); notes each path asked."""

    bodies: ClassVar[dict[str, bytes]] = {}
    encodings: ClassVar[dict[str, str]] = {}
    asked: ClassVar[list[str]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        with Answers.lock:
            Answers.asked.append(self.path)
            body = Answers.bodies.get(self.path, b'{"ok": true}')
            encoding = Answers.encodings.get(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads `asked`."""


@pytest.fixture
def answers() -> Iterator[str]:
    """A fresh Answers server on 127.0.0.1: its base URL."""
    Answers.bodies, Answers.encodings, Answers.asked = {}, {}, []
    with serving(Answers, "") as url:
        yield url


ENRICH = ENRICHING.replace("${env:TOKEN}", "${env:EDGE_TOKEN}").replace("EXTRA", "")
"""test_http_enrich's rule, its token read from EDGE_TOKEN."""


class UnusableAnswer(NamedTuple):
    """An answer the step cannot merge, and the words its failure must say."""

    body: bytes
    said: str


@pytest.mark.parametrize(
    "answer",
    [UnusableAnswer(b'{"score": NaN}', "not JSON"), UnusableAnswer(b"[1, 2]", "not an object")],
    ids=["nan", "a-list"],
)
def test_an_answer_the_step_cannot_merge_is_the_services_fault_and_not_kept(
    project: Project, answers: str, answer: UnusableAnswer
) -> None:
    """NaN is not JSON (data.load refuses it), and a JSON list cannot merge into a record (without
    `into`): either is a RecipeError, so the input is not quarantined, and the answer is not kept
    in the cache, so once the service answers an object the next build asks it again and builds,
    instead of failing on the kept answer for ever."""
    project.config(ENRICH.replace("BASE", answers))
    project.write({"items/a.json": '{"id": 1}'})
    Answers.bodies = {"/items/1": answer.body}
    project.run("build", "--no-progress", env={"EDGE_TOKEN": SECRET})
    (failure,) = project.manifest()["failures"]
    assert failure["class"] == "RecipeError" and answer.said in failure["message"], failure
    assert failure["quarantine"] is None
    Answers.bodies = {}  # the service is fixed: the next build asks it again and builds
    result = project.run("build", "--no-progress", env={"EDGE_TOKEN": SECRET})
    assert result.code == 0, result.describe()
    assert json.loads(project.read("_build/a.json")) == {"id": 1, "ok": True}
    assert Answers.asked == ["/items/1", "/items/1"]


BY_PATH = """\
version: 1
rules:
  enrich:
    inputs: ["items/**/*.json"]
    output: "{path}.json"
    steps:
      - data.load: {}
      - http.enrich: {url: "BASE/by/{path}?v=1"}
      - data.dump: {}
"""
"""A rule asking for each record by its input's path, not by a field of it."""


def test_an_output_placeholder_in_the_url_is_percent_encoded_as_a_field_is(
    project: Project, answers: str
) -> None:
    """A file named `a#1.json` asks for `.../a%231`, not `.../a` with the rest taken for a fragment
    (which `a#2.json` would ask too, sharing one answer); `%`, `?` and `&` stay the name's own, and
    `/` still separates the folders of `{path}`."""
    project.config(BY_PATH.replace("BASE", answers))
    names = ["a#1", "a#2", "b%41", "c?d&e=f", "eu/x y"]
    project.write({f"items/{name}.json": "{}" for name in names})
    project.build()
    assert sorted(Answers.asked) == [
        "/by/a%231?v=1",
        "/by/a%232?v=1",
        "/by/b%2541?v=1",
        "/by/c%3Fd%26e%3Df?v=1",
        "/by/eu/x%20y?v=1",
    ]


def test_a_secret_holding_a_line_end_is_refused_and_never_written(project: Project, answers: str) -> None:
    """A token read with its CR (a file saved on Windows) cannot be sent: the rule's fault, named by
    its variable, and the value appears in no file and no output, escaped or not."""
    project.config(ENRICH.replace("BASE", answers))
    project.write({"items/a.json": '{"id": 1}'})
    result = project.run("build", "--no-progress", env={"EDGE_TOKEN": SECRET + "\r"})
    assert result.code == 1, result.describe()
    (failure,) = project.manifest()["failures"]
    assert failure["class"] == "RecipeError" and "EDGE_TOKEN" in failure["message"], failure
    assert failure["quarantine"] is None
    written = project.snapshot(".batchit", "_build")
    assert [path for path, data in written.items() if SECRET.encode() in data] == []
    assert SECRET not in result.stdout + result.stderr
    assert Answers.asked == []


CONVERT = """\
version: 1
rules:
  convert:
    inputs: ["data/*.json"]
    output: "{stem}.yaml"
    steps:
      - data.load: {}
      - data.dump: {}
"""


@pytest.mark.parametrize(
    ("text", "problem"),
    [('{"x": 1e400}', "not a finite number"), ('{"x": "\\ud800"}', "surrogate")],
)
def test_json_data_load_refuses_what_data_cannot_hold(project: Project, text: str, problem: str) -> None:
    """A JSON number too large for a float, or a lone surrogate escape, is refused by data.load
    naming the input (as YAML's loader does), not written as a YAML no reader takes back."""
    project.config(CONVERT)
    project.write({"data/x.json": text})
    project.build(expect=1)
    (failure,) = project.manifest()["failures"]
    assert failure["message"].startswith("step 1 (data.load): data/x.json"), failure
    assert problem in failure["message"] and failure["quarantine"], failure
    assert not (project.root / "_build/x.yaml").exists()


ROUND_TRIP = """\
version: 1
rules:
  there:
    inputs: ["data/*.json"]
    output: "{stem}.FORMAT"
    steps:
      - data.load: {}
      - data.dump: {}
  back:
    inputs: {rule: there}
    output: "back/{stem}.json"
    steps:
      - data.load: {}
      - data.dump: {}
"""
"""data/*.json dumped in FORMAT, then read back and dumped as JSON again."""


def round_trip(project: Project, data: object, fmt: str) -> object:
    """`data` written as JSON, converted to `fmt` and back to JSON by the CLI: what came back."""
    project.config(ROUND_TRIP.replace("FORMAT", fmt))
    project.write({"data/x.json": json.dumps(data)})
    project.build()
    return json.loads(project.read("_build/back/x.json"))


def test_a_csv_field_holding_a_lone_cr_reads_back_as_one_field(project: Project) -> None:
    """A field with a lone CR (an old Mac line end) is quoted when dumped as CSV: read back, the
    records are the same, not split at the CR."""
    records = [{"note": "first\rsecond", "n": "1"}, {"note": "plain", "n": "2"}]
    assert round_trip(project, records, "csv") == records


def test_a_nel_character_survives_a_yaml_round_trip(project: Project) -> None:
    """U+0085 (NEL, what latin-1 makes of cp1252's ellipsis) is a line break to a YAML reader:
    data.dump writes it escaped, so data.load reads the same text back, not a space."""
    record = {"title": "wait\x85 what", "more\x85": "x"}
    assert round_trip(project, record, "yaml") == record


CSV_TO_JSON = """\
version: 1
rules:
  convert:
    inputs: ["data/*.csv"]
    output: "{stem}.json"
    steps:
      - data.load: {}
      - data.dump: {}
"""


def test_a_csv_field_longer_than_pythons_default_limit_is_read_whole(project: Project) -> None:
    """Python's csv module refuses a field over 131,072 characters unless told otherwise: a valid
    CSV holding a long text (a description, an embedded document) converts, it is not quarantined
    as malformed."""
    long = "x" * 300_000
    project.config(CSV_TO_JSON)
    project.write({"data/long.csv": f'id,body\n1,"{long}"\n2,short\n'})
    project.build()
    assert json.loads(project.read("_build/long.json")) == [
        {"id": "1", "body": long},
        {"id": "2", "body": "short"},
    ]


def test_blank_lines_before_a_csv_header_are_skipped_as_those_between_rows(project: Project) -> None:
    """A blank line between rows holds no record, and one before the header holds no header: the
    header is the first line with fields, not an empty one that every row then disagrees with."""
    project.config(CSV_TO_JSON)
    project.write({"data/gap.csv": "\r\n\r\nid,name\r\n1,Ada\r\n\r\n2,Bob\r\n"})
    project.build()
    assert json.loads(project.read("_build/gap.json")) == [
        {"id": "1", "name": "Ada"},
        {"id": "2", "name": "Bob"},
    ]


DEEP_OBJECTS = '{"a":' * 700 + "1" + "}" * 700
"""JSON nested 700 objects deep: within what json reads, past what YAML's and TOML's writers and
jsonschema's validator recurse through."""

DEEP_LISTS = '{"a":' + "[" * 700 + "]" * 700 + "}"
"""JSON nested 700 lists deep, which TOML writes as inline arrays, recursing once a level."""

NESTED = [
    ("data/x.toml", "a = " + "[" * 500 + "]" * 500 + "\n", "json", "invalid TOML: nested too deep"),
    ("data/x.json", DEEP_OBJECTS, "yaml", "cannot write YAML: the data is nested too deep"),
    ("data/x.json", DEEP_LISTS, "toml", "cannot write TOML: the data is nested too deep"),
    ("data/x.json", DEEP_OBJECTS, "toml", "invalid TOML: nested too deep"),  # written as [a.a.a...]
]


@pytest.mark.parametrize(
    ("name", "text", "fmt", "problem"), NESTED, ids=["load-toml", "dump-yaml", "dump-toml", "toml-tables"]
)
def test_data_nested_past_what_a_format_handles_is_a_clear_permanent_error(
    project: Project, name: str, text: str, fmt: str, problem: str
) -> None:
    """Nesting past what a parser or writer recurses through is refused as deep JSON is, naming
    the input or the step: no RecursionError and its traceback in the summary and the manifest."""
    project.config(ROUND_TRIP.replace("FORMAT", fmt).replace("data/*.json", "data/*"))
    project.write({name: text})
    result = project.run("build", "--no-progress")
    assert result.code == 1, result.describe()
    (failure,) = project.manifest()["failures"]
    assert failure["class"] == "PermanentError" and problem in failure["message"], failure
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stdout + result.stderr


def test_data_too_deep_to_validate_is_a_clear_permanent_error(project: Project) -> None:
    """A recursive schema checks data level by level: data nested past what the validator recurses
    through is refused naming the schema, not failed with a RecursionError's traceback."""
    project.write(
        {
            "schemas/tree.json": '{"type": "object", "properties": {"a": {"$ref": "#"}}}',
            "data/x.json": DEEP_OBJECTS,
        }
    )
    project.config(
        CONVERT.replace(
            "- data.dump: {}", "- data.validate: {schema: schemas/tree.json}\n      - data.dump: {}"
        )
    )
    result = project.run("build", "--no-progress")
    assert result.code == 1, result.describe()
    (failure,) = project.manifest()["failures"]
    assert failure["class"] == "PermanentError", failure
    assert "nested too deep to check against schemas/tree.json" in failure["message"], failure
    assert "RecursionError" not in result.stdout + result.stderr


def test_an_answer_nested_too_deep_is_the_services_fault_not_the_inputs(
    project: Project, answers: str
) -> None:
    """JSON nested past what the parser reads is no usable answer, as one that is not JSON: a
    RecipeError, and the input is not quarantined."""
    project.config(ENRICH.replace("BASE", answers))
    project.write({"items/a.json": '{"id": 1}'})
    Answers.bodies = {"/items/1": b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"}
    project.run("build", "--no-progress", env={"EDGE_TOKEN": SECRET})
    (failure,) = project.manifest()["failures"]
    assert failure["class"] == "RecipeError" and "nested too deep" in failure["message"], failure
    assert failure["quarantine"] is None


def test_sort_keys_sorts_the_columns_of_a_csv_as_the_keys_of_any_format(project: Project) -> None:
    """`sort_keys: true` writes every mapping's keys sorted: in CSV, a record's keys are the header."""
    project.config(
        ROUND_TRIP.replace("FORMAT", "csv").replace("- data.dump: {}", "- data.dump: {sort_keys: true}", 1)
    )
    project.write({"data/x.json": json.dumps([{"b": 1, "a": 2}, {"c": 3}])})
    project.build()
    assert project.read("_build/x.csv") == "a,b,c\n2,1,\n,,3\n"


YAML_TO_YAML = """\
version: 1
rules:
  copy:
    inputs: ["data/*.yaml"]
    output: "{stem}.yaml"
    steps:
      - data.load: {}
      - data.dump: {}
"""


def test_equal_data_dumps_to_equal_bytes_whether_read_through_aliases_or_not(project: Project) -> None:
    """YAML read through an alias shares one object between two places; data.dump writes it out in
    full at both, as it writes the same data spelled out, never as `&id001` anchors."""
    project.config(YAML_TO_YAML)
    project.write(
        {"data/aliased.yaml": "a: &A {k: 1}\nb: *A\n", "data/spelled.yaml": "a: {k: 1}\nb: {k: 1}\n"}
    )
    project.build()
    assert (
        project.read("_build/aliased.yaml")
        == project.read("_build/spelled.yaml")
        == "a:\n  k: 1\nb:\n  k: 1\n"
    )


@pytest.mark.parametrize(("age", "fresh"), [(10, True), (59, True), (61, False), (-3600, False)])
def test_a_kept_answer_is_fresh_only_while_younger_than_its_ttl(
    tmp_path: Path, age: float, fresh: bool
) -> None:
    """An answer's age is measured from when it was fetched; one stamped later than now (the clock
    was set back since) has no age to trust, and is fetched again rather than kept for ever."""
    entry = tmp_path / "entry"
    write_entry(entry, "GET", "http://127.0.0.1/x", Answer(200, "application/json", b"{}", 1_000_000.0))

    assert (read_entry(entry, 60, now=1_000_000.0 + age) is not None) is fresh


def gzipped(data: bytes, times: int = 1) -> bytes:
    """`data` gzip-compressed `times` over, as a server sends `Content-Encoding: gzip[, gzip]`."""
    for _ in range(times):
        data = gzip.compress(data, mtime=0)
    return data


PADDED = b'{"pad": "' + b"0" * 20_000_000 + b'"}'
"""A 20 MB JSON answer that gzip shrinks to ~20 KB: over the default max_bytes (10 MB) once inflated."""


@pytest.mark.parametrize(
    ("extra", "encoding", "told"),
    [
        (
            ", max_bytes: 1000",
            "gzip",
            "more than 1,000 bytes once decompressed, over the step's max_bytes (1,000)",
        ),
        (
            "",
            "gzip, gzip",
            "more than 10,000,000 bytes once decompressed, over the step's max_bytes (10,000,000)",
        ),
        ("", "", "20,000,011 bytes, over the step's max_bytes (10,000,000)"),
    ],
    ids=["gzip-over-a-small-cap", "gzip-twice-over-the-default", "plain-over-the-default"],
)
def test_an_answer_over_max_bytes_quarantines_the_input_and_is_never_kept(
    project: Project, answers: str, extra: str, encoding: str, told: str
) -> None:
    """A gzip bomb (or just a huge answer) is refused as it is read, counted once decoded: the job
    fails with a permanent error naming the URL, the size and the parameter to raise, the input is
    quarantined, and no answer is kept in the response cache. Below the cap the same answer builds."""
    project.config(ENRICH.replace("BASE", answers).replace("}}", f"}}{extra}}}", 1))
    project.write({"items/a.json": '{"id": 1}'})
    Answers.bodies = {"/items/1": gzipped(PADDED, encoding.count("gzip")) if encoding else PADDED}
    Answers.encodings = {"/items/1": encoding} if encoding else {}
    result = project.run("build", "--no-progress", env={"EDGE_TOKEN": SECRET})
    assert result.code == 1, result.describe()
    (failure,) = project.manifest()["failures"]
    assert failure["class"] == "PermanentError", failure
    assert f"GET {answers}/items/1: the answer is {told}" in failure["message"], failure
    assert "raise the http.enrich step's max_bytes" in failure["message"], failure
    reason = json.loads(project.read(".batchit/quarantine/enrich/items/a.json.reason.json"))
    assert told in reason["message"], reason
    assert [path for path in (project.root / ".batchit/http").rglob("*") if path.is_file()] == []


def test_a_gzip_answer_under_max_bytes_is_inflated_and_merged(project: Project, answers: str) -> None:
    project.config(ENRICH.replace("BASE", answers).replace("}}", "}, max_bytes: 64}", 1))
    project.write({"items/a.json": '{"id": 1}', "items/b.json": '{"id": 2}'})
    Answers.bodies = {"/items/1": gzipped(b'{"title": "one"}'), "/items/2": gzipped(b'{"title": "two"}', 2)}
    Answers.encodings = {"/items/1": "gzip", "/items/2": "gzip, gzip"}
    result = project.run("build", "--no-progress", env={"EDGE_TOKEN": SECRET})
    assert result.code == 0, result.describe()
    assert json.loads(project.read("_build/a.json")) == {"id": 1, "title": "one"}
    assert json.loads(project.read("_build/b.json")) == {"id": 2, "title": "two"}
