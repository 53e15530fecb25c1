"""What a command skips to start fast, and that skipping it never lets a mistake through.

A build records that its config passed the schema checks (`.batchit/validated.json`); a later load
skips them only while nothing they depend on changed: the config, an included file, an operator's
parameter schema. Installed operators are found through their entry points when a config names one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COPY_CONFIG, THREE_SOURCES, Project

RECORD = ".batchit/validated.json"

PRESET_CONFIG = """\
version: 1
include: [presets/copy.yaml]
rules:
  copy: {preset: copying}
"""

PRESET_FILE = """\
presets:
  copying:
    inputs: ["src/**/*.txt"]
    output: "{path}.txt"
    steps: [file.copy: {}]
"""


@pytest.fixture
def built(copies: Project) -> Project:
    """COPY_CONFIG built twice: the first build records the config, the second trusts the record."""
    copies.build()
    assert (copies.root / RECORD).is_file()
    copies.build()
    return copies


def test_only_a_build_records_the_config(copies: Project) -> None:
    assert copies.run("plan").code == 0
    assert not (copies.root / ".batchit").exists()
    copies.build()
    assert (copies.root / RECORD).is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("output:", "ouput:"), "unknown key 'ouput'"),
        (("file.copy: {}", "file.copy: {bogus: 1}"), "unknown parameter 'bogus'"),
        (("version: 1", "version: 2"), "'version' must be 1, not 2"),
    ],
    ids=["unknown-key", "bad-parameter", "bad-value"],
)
def test_config_made_invalid_after_a_recorded_build_is_rejected(
    built: Project, change: tuple[str, str], message: str
) -> None:
    before = built.snapshot(".batchit", "_build")
    built.config(COPY_CONFIG.replace(*change))
    result = built.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert message in result.stderr, result.describe()
    assert built.snapshot(".batchit", "_build") == before


def test_the_same_error_with_or_without_a_record(built: Project, tmp_path: Path) -> None:
    bad = COPY_CONFIG.replace("output:", "ouput:")
    built.config(bad)
    fresh = Project(tmp_path / "fresh")
    fresh.write({"batchit.yaml": bad, **THREE_SOURCES})
    assert built.run("build", "--no-progress").stderr == fresh.run("build", "--no-progress").stderr


def test_editing_an_included_preset_invalidates_the_record(project: Project) -> None:
    project.write({"batchit.yaml": PRESET_CONFIG, "presets/copy.yaml": PRESET_FILE, **THREE_SOURCES})
    project.build()
    project.build()
    project.write({"presets/copy.yaml": PRESET_FILE.replace("output:", "ouput:")})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "presets/copy.yaml:4:5: preset 'copying': unknown key 'ouput'" in result.stderr


def test_a_damaged_record_only_means_checking_again(built: Project) -> None:
    (built.root / RECORD).write_text("{not json")
    built.build()
    assert "batchit.yaml" in json.loads((built.root / RECORD).read_text())
    built.config(COPY_CONFIG.replace("output:", "ouput:"))
    assert built.run("build", "--no-progress").code == 2


def test_a_record_copied_from_another_config_vouches_for_nothing(built: Project) -> None:
    record = json.loads((built.root / RECORD).read_text())
    record["other.yaml"] = record["batchit.yaml"]
    (built.root / RECORD).write_text(json.dumps(record))
    built.write({"other.yaml": COPY_CONFIG.replace("output:", "ouput:")})
    result = built.run("-f", "other.yaml", "build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "unknown key 'ouput'" in result.stderr


SHOUT = """\
from typing import Any, ClassVar

from batchit.operators.base import JobContext, Operator, as_text


class Shout(Operator):
    name = "text.shout"
    version = "1"
    resources = "io"
    params_schema: ClassVar[dict[str, Any]] = {SCHEMA}

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        return as_text(value, self.name).upper() + params.get("end", "")
"""

OPEN_SCHEMA = '{"type": "object", "properties": {"end": {"type": "string"}}, "additionalProperties": False}'


def install_plugin(site: Path, schema: str = OPEN_SCHEMA) -> dict[str, str]:
    """Install a distribution whose entry points add `text.shout` and claim `file.copy` too, into
    `site` (a directory to put on PYTHONPATH); return the environment that makes it visible."""
    (site / "shout.py").write_text(SHOUT.replace("{SCHEMA}", schema))
    info = site / "shout_op-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-op\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[batchit.operators]\ntext.shout = shout:Shout\nfile.copy = shout:Shout\n"
    )
    return {"PYTHONPATH": str(site)}


PLUGIN_CONFIG = (
    COPY_CONFIG
    + """\
  shout:
    inputs: ["src/**/*.txt"]
    output: "loud/{path}.txt"
    steps:
      - text.shout: {end: "!"}
"""
)


def test_an_installed_operator_is_found_and_a_built_in_keeps_its_name(
    copies: Project, tmp_path: Path
) -> None:
    env = install_plugin(tmp_path)
    copies.config(PLUGIN_CONFIG)
    result = copies.run("build", "--no-progress", env=env)
    assert result.code == 0, result.describe()
    assert copies.read("_build/loud/a.txt") == "ALPHA\n!"
    assert copies.read("_build/a.txt") == "alpha\n"


def test_a_changed_operator_schema_invalidates_the_record(copies: Project, tmp_path: Path) -> None:
    env = install_plugin(tmp_path)
    copies.config(PLUGIN_CONFIG)
    assert copies.run("build", "--no-progress", env=env).code == 0
    install_plugin(tmp_path, OPEN_SCHEMA.replace('"string"', '"integer"'))
    result = copies.run("build", "--no-progress", env=env)
    assert result.code == 2, result.describe()
    assert "parameter 'end' must be an integer" in result.stderr, result.describe()


PROBE = """\
import sys
from batchit.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)), file=sys.stderr)
"""
"""Runs the `batchit` command in-process, then lists every module it imported on the last line of stderr."""


@pytest.mark.parametrize(
    ("args", "unused"),
    [
        (
            ["--help"],
            ["batchit.engine", "batchit.config", "jinja2", "yaml", "cryptography", "watchdog", "dask"],
        ),
        (
            ["build", "--no-progress"],
            ["jsonschema", "watchdog", "importlib.metadata", "batchit.cli.records", "distributed", "dask"],
        ),
    ],
    ids=["help", "no-op-build"],
)
def test_a_command_imports_only_what_it_uses(built: Project, args: list[str], unused: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=built.root, capture_output=True, text=True, check=True
    )
    imported = set(proc.stderr.splitlines()[-1].split())
    assert [name for name in unused if name in imported] == []
