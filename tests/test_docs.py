"""The reference docs stay true to the code: generated tables match the schemas, examples pass them."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import yaml

from batchit.config.yaml12 import Yaml12Loader

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def make_operators() -> ModuleType:
    """docs/make_operators.py, imported from its path (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_operators", DOCS / "make_operators.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def yaml_blocks(name: str) -> list[Any]:
    """The fenced `yaml` blocks of a file under docs/, parsed as batchit reads YAML."""
    text = (DOCS / name).read_text(encoding="utf-8")
    return [
        yaml.load(block, Loader=Yaml12Loader)  # noqa: S506 - batchit's own safe YAML 1.2 loader
        for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    ]


def published_schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((REPO / "batchit.schema.json").read_text("utf-8")))


def test_operator_tables_are_generated_from_the_schemas() -> None:
    current = (DOCS / "operators.md").read_text(encoding="utf-8")
    assert make_operators().render(current) == current, "run: python docs/make_operators.py"


def test_operator_examples_pass_the_published_schema() -> None:
    rules: dict[str, Any] = {}
    for block in yaml_blocks("operators.md"):
        assert not set(block["rules"]) & set(rules), "example rule names must differ: they form one project"
        rules.update(block["rules"])
    published_schema().validate({"version": 1, "rules": rules})


def test_config_example_passes_the_published_schema() -> None:
    published_schema().validate(yaml_blocks("config.md")[-1])
