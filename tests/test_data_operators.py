"""The data operators (`data.load`, `data.dump`, `data.validate`, `data.mask`) and the `convert_data`
preset, through the real `batchit` command on real files (SPEC sections 8, 11 and 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import ConfigMistake, Project, assert_refused

TRICKY = {
    "name": "Ada",
    "looks_like": ["yes", "on", "010", "0o17", "0x1f", "1e3", ".inf", "null", "true", "", "~"],
    "numbers": [0, -7, 1.5, 9007199254740993, 2.5e-08],
    "flags": [True, False],
    "unicode": "café ✓",
    "nested": {"list": [{"a": 1}, {"a": 2}], "none": [], "empty": {}},
}
"""JSON data whose strings a YAML 1.1 writer or a careless one would turn into other types. Its
mappings end with their sub-mappings, as TOML writes a table's sub-tables after its other keys."""


def convert(project: Project, files: dict[str, str | bytes], steps: str, output: str = "{stem}.json") -> None:
    """Write `files` and a config whose rule `data` maps in/* through `steps` (YAML flow list) to
    `output`."""
    project.write(files)
    project.config(
        f'version: 1\nrules:\n  data:\n    inputs: ["in/*"]\n    output: "{output}"\n    steps: {steps}\n'
    )


def failures(project: Project) -> dict[str, str]:
    """The latest run's failure messages by input path."""
    return {failure["input"]: failure["message"] for failure in project.manifest()["failures"]}


class RoundTrip(NamedTuple):
    """A file converted to `via` and back to its own format by two rules."""

    id: str
    name: str
    content: str
    via: str


ROUND_TRIPS = [
    RoundTrip("json_via_yaml", "a.json", json.dumps(TRICKY, indent=2, ensure_ascii=False) + "\n", "yaml"),
    RoundTrip("json_via_toml", "a.json", json.dumps(TRICKY, indent=2, ensure_ascii=False) + "\n", "toml"),
    RoundTrip("csv_via_json", "a.csv", 'name,code,note\nAda,010,yes\n"Lovelace, A",0o17,\n', "json"),
    RoundTrip("yaml_via_json", "a.yaml", "name: Ada\nlooks_like:\n- 'yes'\n- '0o17'\nnone: null\n", "json"),
]


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=[case.id for case in ROUND_TRIPS])
def test_a_file_converted_there_and_back_is_byte_for_byte_the_same(project: Project, case: RoundTrip) -> None:
    """`format: auto` reads each format from the input's extension and writes the output's."""
    stem, ext = case.name.split(".")
    project.write({f"in/{case.name}": case.content})
    project.config(
        "version: 1\nrules:\n"
        f'  there:\n    inputs: ["in/*"]\n    output: "there/{{stem}}.{case.via}"\n'
        "    steps: [data.load: {}, data.dump: {}]\n"
        f'  back:\n    inputs: {{rule: there}}\n    output: "back/{{stem}}.{ext}"\n'
        "    steps: [data.load: {}, data.dump: {}]\n"
    )
    project.build()
    assert project.read(f"_build/back/{stem}.{ext}") == case.content
    assert project.read(f"_build/there/{stem}.{case.via}") != case.content


def test_format_auto_goes_by_extension_and_format_names_it_for_any_other(project: Project) -> None:
    convert(
        project,
        {
            "in/a.YML": "k: [1, yes]\n",
            "in/b.toml": "[t]\nwhen = 1979-05-27T07:32:00Z\n",
            "in/c.csv": "k,v\n1,x\n",
            "other/d.txt": '{"k": "from text"}',
        },
        "[data.load: {}, data.dump: {indent: 0}]",
    )
    project.write(
        {
            "batchit.yaml": project.read("batchit.yaml")
            + '  text:\n    inputs: ["other/*.txt"]\n    output: "{stem}.yaml"\n'
            "    steps: [data.load: {format: json}, data.dump: {}]\n"
        }
    )
    project.build()
    assert project.read("_build/a.json") == '{"k":[1,"yes"]}\n'
    assert project.read("_build/b.json") == '{"t":{"when":"1979-05-27T07:32:00+00:00"}}\n'
    assert project.read("_build/c.json") == '[{"k":"1","v":"x"}]\n'
    assert project.read("_build/d.yaml") == "k: from text\n"


def test_format_auto_tells_apart_outputs_that_differ_only_by_extension(project: Project) -> None:
    """The extension decides the bytes, so it is part of what makes a job: four outputs of one
    input are four jobs, each in its own format, not one job restored three times."""
    convert(project, {"in/x.json": '{"a": 1}'}, "[data.load: {}, data.dump: {}]", output="{stem}.{fmt}")
    project.write({"batchit.yaml": project.read("batchit.yaml") + "    matrix: {fmt: [json, yaml, toml]}\n"})
    project.build()
    assert project.read("_build/x.yaml") == "a: 1\n"
    assert project.read("_build/x.toml") == "a = 1\n"
    assert project.manifest()["summary"]["built"] == 3


def test_format_auto_reads_an_input_again_when_its_extension_changes(project: Project) -> None:
    convert(project, {"in/x.yaml": "a: 1\n"}, "[data.load: {}, data.dump: {format: json, indent: 0}]")
    project.build()
    assert project.read("_build/x.json") == '{"a":1}\n'
    (project.root / "in/x.yaml").rename(project.root / "in/x.csv")  # same bytes, now read as CSV
    project.build()
    assert project.read("_build/x.json") == "[]\n"


def test_twins_by_content_read_by_extension_are_not_one_job(project: Project) -> None:
    convert(
        project,
        {"in/x.txt": '{"a": 1}', "in/y.json": '{"a": 1}'},
        "[data.load: {}, data.dump: {format: json, indent: 0}]",
        output="{name}.out",
    )
    project.build(expect=1)  # x.txt: no format goes by .txt
    assert project.read("_build/y.json.out") == '{"a":1}\n'
    assert set(failures(project)) == {"in/x.txt"}


def test_a_malformed_input_is_quarantined_naming_it_and_its_line(project: Project) -> None:
    convert(
        project,
        {"in/good.json": '{"a": 1}', "in/bad.json": '{\n  "a": 1,\n  "b": ]\n}\n'},
        "[data.load: {}, data.dump: {}]",
    )
    project.build(expect=1)
    assert json.loads(project.read("_build/good.json")) == {"a": 1}
    assert "in/bad.json:3:8: invalid JSON" in failures(project)["in/bad.json"]
    reason = json.loads(project.read(".batchit/quarantine/data/in/bad.json.reason.json"))
    assert "in/bad.json:3:8" in reason["message"]


class Hostile(NamedTuple):
    """A YAML input that must be refused before anything is built from it."""

    id: str
    content: str
    message: str


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{before}'] * 10)}]\n"
    for before, name in zip("abcdefgh", "bcdefghi", strict=True)
)
"""Billion laughs: nine levels of ten aliases each, 10^9 strings once expanded."""

HOSTILE = [
    Hostile("python_tag", '!!python/object/apply:os.system ["touch pwned"]\n', "unsupported tag !!python/"),
    Hostile("python_tag_inside", 'x: !!python/object/apply:os.system ["touch pwned"]\n', "unsupported tag"),
    Hostile("alias_bomb", LAUGHS, "the document expands too far"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[case.id for case in HOSTILE])
def test_a_hostile_yaml_input_is_quarantined_without_running_anything(
    project: Project, case: Hostile
) -> None:
    convert(project, {"in/evil.yaml": case.content}, "[data.load: {}, data.dump: {}]")
    result = project.run("build", "--no-progress", timeout=60)  # the timeout is only a safety net
    assert result.code == 1, result.describe()
    assert case.message in failures(project)["in/evil.yaml"]
    assert (project.root / ".batchit/quarantine/data/in/evil.yaml").exists()
    assert not (project.root / "pwned").exists()
    assert not (project.root / "_build/evil.json").exists()


def test_an_input_that_is_not_utf8_is_quarantined(project: Project) -> None:
    convert(project, {"in/latin.csv": "name\ncaf\xe9\n".encode("latin-1")}, "[data.load: {}, data.dump: {}]")
    project.build(expect=1)
    assert "in/latin.csv is not valid UTF-8" in failures(project)["in/latin.csv"]


class Unfit(NamedTuple):
    """Data a target format cannot hold, and the message naming where."""

    id: str
    content: str
    output: str
    message: str


UNFIT = [
    Unfit("null_in_toml", '{"a": {"b": null}}', "{stem}.toml", "$.a.b is null, which TOML cannot hold"),
    Unfit("huge_integer_in_toml", '{"n": 100000000000000000000}', "{stem}.toml", "beyond TOML's 64-bit"),
    Unfit(
        "list_at_top_of_toml",
        "[1, 2]",
        "{stem}.toml",
        "cannot write TOML, whose top is a table (a mapping), from a list",
    ),
    Unfit("nested_in_csv", '[{"a": 1}, {"a": [2]}]', "{stem}.csv", "$[1].a is a list"),
    Unfit("scalars_as_csv", '["a", "b"]', "{stem}.csv", "cannot write CSV, which holds a list of records"),
]


@pytest.mark.parametrize("case", UNFIT, ids=[case.id for case in UNFIT])
def test_data_the_output_format_cannot_hold_fails_naming_its_path(project: Project, case: Unfit) -> None:
    convert(project, {"in/a.json": case.content}, "[data.load: {}, data.dump: {}]", case.output)
    project.build(expect=1)
    message = failures(project)["in/a.json"]
    assert case.message in message
    assert message.startswith("step 2 (data.dump): ") and "step data.dump" not in message, "named once"


SCHEMA = """\
type: object
required: [items]
properties:
  items:
    type: array
    items:
      type: object
      properties: {price: {type: number, minimum: 0}}
"""
"""A YAML JSON Schema: a list of items whose prices are not negative."""

VALIDATE = "[data.load: {}, data.validate: {schema: schemas/order.yaml}, data.dump: {indent: 0}]"


def test_data_validate_passes_valid_data_and_names_the_failing_path(project: Project) -> None:
    convert(
        project,
        {
            "schemas/order.yaml": SCHEMA,
            "in/ok.json": '{"items": [{"price": 1}]}',
            "in/bad.json": '{"items": [{"price": 1}, {"price": 0}, {"price": -1}]}',
        },
        VALIDATE,
    )
    project.build(expect=1)
    assert project.read("_build/ok.json") == '{"items":[{"price":1}]}\n'
    assert "$.items[2].price: -1 is less than the minimum of 0" in failures(project)["in/bad.json"]
    assert (project.root / ".batchit/quarantine/data/in/bad.json").exists()


def test_a_mismatch_in_a_huge_value_is_named_without_quoting_all_of_it(project: Project) -> None:
    """jsonschema's message quotes the failing value whole: for a 200,000-character text the
    message is cut in its middle, keeping where it failed and which rule it broke, instead of
    flooding the terminal summary, the manifest and the report with the value."""
    pattern = "type: object\nproperties: {name: {type: string, pattern: '^a'}}\n"
    huge = "b" * 200_000
    convert(
        project,
        {"schemas/order.yaml": pattern, "in/big.json": json.dumps({"name": huge})},
        VALIDATE,
    )
    result = project.build(expect=1)
    message = failures(project)["in/big.json"]
    assert message.startswith("step 2 (data.validate): $.name: 'bbb"), message
    assert "does not match '^a' (schema schemas/order.yaml)" in message, message
    assert len(message) < 1000, len(message)
    assert len(result.stdout) + len(result.stderr) < 10_000


def test_editing_the_schema_rebuilds_the_jobs_it_checks(project: Project) -> None:
    convert(project, {"schemas/order.yaml": SCHEMA, "in/ok.json": '{"items": []}'}, VALIDATE)
    project.build()
    project.build()
    assert project.manifest()["summary"]["built"] == 0
    project.write({"schemas/order.yaml": SCHEMA.replace("minimum: 0", "minimum: 1")})
    project.build()
    assert project.manifest()["summary"]["built"] == 1


ITEM_SCHEMA = """\
type: object
properties:
  items: {type: array, items: {$ref: "defs/item.yaml"}}
"""
"""A schema whose items are defined in another file, relative to it."""

ITEM_DEFS = {
    "schemas/defs/item.yaml": 'type: object\nproperties: {price: {$ref: "price.json"}}\n',
    "schemas/defs/price.json": '{"type": "number", "minimum": 0}',
}
"""The files ITEM_SCHEMA reaches: item.yaml, which reaches price.json beside it."""


def test_a_ref_to_another_schema_file_is_followed_and_editing_that_file_rebuilds(project: Project) -> None:
    convert(
        project,
        {
            "schemas/order.yaml": ITEM_SCHEMA,
            **ITEM_DEFS,
            "in/ok.json": '{"items": [{"price": 1}]}',
            "in/bad.json": '{"items": [{"price": 1}, {"price": -1}]}',
        },
        VALIDATE,
    )
    project.build(expect=1)
    assert project.read("_build/ok.json") == '{"items":[{"price":1}]}\n'
    assert "$.items[1].price: -1 is less than the minimum of 0" in failures(project)["in/bad.json"]
    project.write({"schemas/defs/price.json": '{"type": "number", "minimum": 5}'})  # two $refs away
    project.build(expect=1)
    assert "$.items[0].price: 1 is less than the minimum of 5" in failures(project)["in/ok.json"]


PEOPLE = {
    "users": [
        {"name": "a", "email": "same@example.com", "password": "p1"},
        {"name": "b", "email": "same@example.com", "password": "p2"},
        {"name": "c", "email": "other@example.com"},
    ],
    "admin": {"name": "root", "password": "p3"},
    "password": "p4",
}
"""Records with the same email twice; passwords at three depths."""


def masked(project: Project, mode: str, env: dict[str, str] | None = None) -> Any:
    """Build PEOPLE through data.mask of `users.*.email` and `*.password` in `mode`; the output's data."""
    convert(
        project,
        {"in/people.json": json.dumps(PEOPLE)},
        f'[data.load: {{}}, data.mask: {{fields: ["users.*.email", "*.password"], mode: {mode}}}, '
        "data.dump: {}]",
    )
    result = project.run("build", "--no-progress", env=env)
    assert result.code == 0, result.describe()
    return json.loads(project.read("_build/people.json"))


def test_data_mask_redacts_the_fields_its_wildcards_match_one_level_each(project: Project) -> None:
    data = masked(project, "redact")
    assert [user["email"] for user in data["users"]] == ["***", "***", "***"]
    assert data["admin"] == {"name": "root", "password": "***"}
    assert data["password"] == PEOPLE["password"], "`*.password` is one level down, not the top"
    assert [user.get("password") for user in data["users"]] == ["p1", "p2", None], "`*` is one level"
    assert [user["name"] for user in data["users"]] == ["a", "b", "c"]


def test_data_mask_hashes_equal_values_equally_keyed_by_batchit_mask_key(project: Project) -> None:
    first = masked(project, "hash", {"BATCHIT_MASK_KEY": "first secret"})
    emails = [user["email"] for user in first["users"]]
    assert emails[0] == emails[1] != emails[2]
    assert all(len(email) == 32 and int(email, 16) >= 0 for email in emails)
    second = masked(project, "hash", {"BATCHIT_MASK_KEY": "second secret"})
    assert project.manifest()["summary"]["built"] == 1, "a new key rebuilds the job"
    assert second["users"][0]["email"] not in (emails[0], "same@example.com")
    assert not any(b"secret" in data for data in project.snapshot(".batchit", "_build").values())


def test_data_mask_reaches_keys_holding_a_dot_or_a_star_through_a_backslash(project: Project) -> None:
    """`content\\.type` is one key, not `content` then `type`; `\\*` is the key `*`, not every key."""
    record = {
        "headers": {"content.type": "text/x", "content": {"type": "kept"}},
        "*": "star",
        "a": "kept",
        "glob.**": "stars",
    }
    convert(
        project,
        {"in/record.json": json.dumps(record)},
        r"[data.load: {}, data.mask: {fields: ['headers.content\.type', '\*', 'glob\.**']}, "
        "data.dump: {}]",
    )
    project.build()
    assert json.loads(project.read("_build/record.json")) == {
        "headers": {"content.type": "***", "content": {"type": "kept"}},
        "*": "***",
        "a": "kept",
        "glob.**": "***",  # one key: its `**` is no segment of its own
    }


class ReachedFile(NamedTuple):
    """A schema whose $refs reach a file, and an edit of that file that fails the job as said."""

    id: str
    files: dict[str, str]
    edit: tuple[str, str]
    says: str


REACHED_FILES = [
    ReachedFile(  # the last file is common/number.json, as the file holding its $ref has it
        "up-a-folder",
        {
            "schemas/order.json": '{"properties": {"price": {"$ref": "../common/price.json"}}}',
            "common/price.json": '{"$ref": "number.json"}',
            "common/number.json": '{"type": "number"}',
            "schemas/common/number.json": '{"type": "string"}',  # what a clamped `..` would read
            "in/a.json": '{"price": 3}',
        },
        ("common/number.json", '{"type": "number", "maximum": 2}'),
        "$.price: 3 is greater than the maximum of 2",
    ),
    ReachedFile(  # `default` under `properties` is a property's name, not the keyword
        "a-property-named-default",
        {
            "schemas/order.json": '{"properties": {"default": {"$ref": "setting.json"}}}',
            "schemas/setting.json": '{"type": "number"}',
            "in/a.json": '{"default": 3}',
        },
        ("schemas/setting.json", '{"type": "string"}'),
        "$.default: 3 is not of type 'string'",
    ),
]


@pytest.mark.parametrize("case", REACHED_FILES, ids=[case.id for case in REACHED_FILES])
def test_the_file_a_ref_reaches_is_the_one_the_validator_reads_and_editing_it_rebuilds(
    project: Project, case: ReachedFile
) -> None:
    convert(project, case.files, VALIDATE.replace("order.yaml", "order.json"))
    project.build()
    project.write(dict([case.edit]))
    project.build(expect=1)
    assert case.says in failures(project)["in/a.json"]


@pytest.mark.parametrize(
    "schema",
    [
        {
            "$id": "https://example.com/s/root.json",
            "properties": {"price": {"$ref": "item.json"}},
            "$defs": {"item": {"$id": "https://example.com/s/item.json", "type": "number"}},
        },
        {
            "properties": {"price": {"$ref": "sub/a.json"}},
            "$defs": {
                "a": {"$id": "sub/a.json", "$ref": "b.json"},
                "b": {"$id": "sub/b.json", "type": "number"},
            },
        },
    ],
    ids=["absolute-ids", "relative-ids"],
)
def test_a_ref_to_a_schema_embedded_by_its_id_stays_in_the_document(project: Project, schema: object) -> None:
    """A bundled schema: its $refs name the $ids of schemas inside it, not files."""
    convert(
        project,
        {
            "schemas/order.json": json.dumps(schema),
            "in/ok.json": '{"price": 1}',
            "in/bad.json": '{"price": "x"}',
        },
        VALIDATE.replace("order.yaml", "order.json"),
    )
    project.build(expect=1)
    assert project.read("_build/ok.json") == '{"price":1}\n'
    assert "$.price: 'x' is not of type 'number'" in failures(project)["in/bad.json"]


MISTAKE_RULE = 'version: 1\nrules:\n  pages:\n    inputs: ["in/*.json"]\n    output: "{stem}.json"\n'
VALIDATE_STEPS = "    steps: [data.load: {}, data.validate: {schema: schemas/order.yaml}, data.dump: {}]\n"

MISTAKES = [
    ConfigMistake(
        "mask_mode_unknown",
        MISTAKE_RULE
        + "    steps: [data.load: {}, data.mask: {fields: [a], mode: scramble}, data.dump: {}]\n",
        "batchit.yaml:6:",
        "parameter 'mode' must be one of 'redact', 'hash', not 'scramble'",
        "redact",
    ),
    ConfigMistake(
        "mask_without_fields",
        MISTAKE_RULE + "    steps: [data.load: {}, data.mask: {fields: []}, data.dump: {}]\n",
        "batchit.yaml:6:",
        "'fields'",
        "Dotted paths",
    ),
    ConfigMistake(
        "mask_recursive_wildcard",
        MISTAKE_RULE + '    steps: [data.load: {}, data.mask: {fields: ["**.email"]}, data.dump: {}]\n',
        "batchit.yaml:6:",
        "parameter 'fields[0]' is not valid: '**.email'",
        "There is no ** or [0]",
    ),
    ConfigMistake(
        "mask_stray_backslash",
        MISTAKE_RULE + "    steps: [data.load: {}, data.mask: {fields: ['user\\name']}, data.dump: {}]\n",
        "batchit.yaml:6:",
        "parameter 'fields[0]' is not valid: 'user\\\\name'",
        "A backslash escapes a dot",
    ),
    ConfigMistake(
        "validate_schema_invalid",
        MISTAKE_RULE + VALIDATE_STEPS,
        "batchit.yaml:6:",
        "schemas/order.yaml is not a valid JSON Schema",
        "fix the schema",
        files={"schemas/order.yaml": "type: nonsense\n"},
    ),
    ConfigMistake(
        "validate_ref_invalid",
        MISTAKE_RULE + VALIDATE_STEPS,
        "batchit.yaml:6:",
        "schemas/defs/item.yaml is not a valid JSON Schema",
        "fix the schema",
        files={"schemas/order.yaml": ITEM_SCHEMA, "schemas/defs/item.yaml": "type: 7\n"},
    ),
    ConfigMistake(
        "validate_ref_on_the_web",
        MISTAKE_RULE + VALIDATE_STEPS,
        "batchit.yaml:6:",
        "$ref 'https://example.com/item.json' is not a project file",
        "copy that schema into the project",
        files={"schemas/order.yaml": 'items: {$ref: "https://example.com/item.json"}\n'},
    ),
    ConfigMistake(
        "validate_ref_against_a_web_id",
        MISTAKE_RULE + VALIDATE_STEPS,
        "batchit.yaml:6:",
        "$ref 'defs.json' is not a project file (https://example.com/schemas/defs.json)",
        "a schema's $id",
        files={
            "schemas/order.yaml": '$id: "https://example.com/schemas/order.json"\nitems: {$ref: defs.json}\n',
            "schemas/defs.json": "{}",
        },
    ),
    ConfigMistake(
        "validate_ref_out_of_the_project",
        MISTAKE_RULE + VALIDATE_STEPS,
        "batchit.yaml:6:",
        "$ref '../../item.json' leads out of the project",
        "inside the project",
        files={"schemas/order.yaml": 'items: {$ref: "../../item.json"}\n'},
    ),
    ConfigMistake(
        "mask_bracket_index",
        MISTAKE_RULE
        + '    steps: [data.load: {}, data.mask: {fields: ["users[0].password"]}, data.dump: {}]\n',
        "batchit.yaml:6:",
        "parameter 'fields[0]' is not valid: 'users[0].password'",
        "users.0.password",
    ),
    ConfigMistake(
        "load_format_unknown",
        MISTAKE_RULE + "    steps: [data.load: {format: xml}, data.dump: {}]\n",
        "batchit.yaml:6:",
        "parameter 'format' must be one of 'auto', 'json', 'yaml', 'toml', 'csv', not 'xml'",
        "extension",
    ),
    ConfigMistake(
        "validate_without_schema",
        MISTAKE_RULE + "    steps: [data.load: {}, data.validate: {}, data.dump: {}]\n",
        "batchit.yaml:6:",
        "missing required parameter 'schema'",
        "schema",
    ),
]


@pytest.mark.parametrize("case", MISTAKES, ids=[case.id for case in MISTAKES])
def test_a_bad_parameter_is_refused_when_the_config_loads(project: Project, case: ConfigMistake) -> None:
    assert_refused(project, case, {"in/a.json": "{}"})


def test_the_convert_preset_converts_a_tree_of_data_files_keeping_its_folders(project: Project) -> None:
    project.write(
        {
            "data/eu/prices.csv": "item,price\ntea,3\n",
            "data/settings.toml": 'title = "shop"\n[limits]\nmax = 5\n',
            "data/notes.txt": "not data\n",
            "batchit.yaml": "version: 1\ninclude: [batchit:convert]\n"
            "rules:\n  data:\n    preset: convert_data\n    with: {to: yaml}\n",
        }
    )
    project.build()
    assert project.read("_build/data/eu/prices.yaml") == "- item: tea\n  price: '3'\n"
    assert project.read("_build/data/settings.yaml") == "title: shop\nlimits:\n  max: 5\n"
    built = sorted(
        p.relative_to(project.root / "_build").as_posix()
        for p in Path(project.root / "_build").rglob("*.yaml")
    )
    assert built == ["data/eu/prices.yaml", "data/settings.yaml"]
