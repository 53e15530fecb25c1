"""The published JSON Schema of `batchit.yaml`, for editors to complete and check (SPEC section 2).

`config_schema(registry)` is the structure the loader checks plus every operator's parameters;
`python -m batchit.config.schema` prints it for the built-in operators, as the committed
`batchit.schema.json` (a test keeps the two equal).
"""

from __future__ import annotations

import copy
import json

from batchit.config.rules import RESERVED_NAMES
from batchit.config.structure import IDENTIFIER, Schema, structure_schema
from batchit.operators.registry import BUILTIN_OPERATORS, OperatorRegistry

PLACEHOLDER_ONLY = "^\\{[A-Za-z_][A-Za-z0-9_]*\\}$"
"""A parameter written as one placeholder, which takes the value's type when the job runs."""


def _editor_params(params_schema: Schema) -> Schema:
    """An operator's parameter schema that also accepts `when`, and a `"{placeholder}"` for any
    value, at the top or inside a list or a mapping (batchit fills each by type, where it is)."""
    schema = _inside(params_schema)
    properties = schema.setdefault("properties", {})
    properties["when"] = {
        "description": "Run the step only when this Jinja2 expression is true.",
        "type": "string",
    }
    return schema


def _inside(schema: Schema) -> Schema:
    """`schema` with every value and item it describes (properties, list items, a mapping's other
    values, through `anyOf` and `oneOf` alternatives) also accepting a `"{placeholder}"`."""
    opened = copy.deepcopy(schema)
    if isinstance(opened.get("properties"), dict):
        opened["properties"] = {name: _value(prop, name) for name, prop in opened["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(opened.get(key), dict):
            opened[key] = _value(opened[key])
    for key in ("anyOf", "oneOf"):
        if isinstance(opened.get(key), list):
            opened[key] = [_inside(branch) for branch in opened[key]]
    return opened


def _value(schema: Schema, name: str | None = None) -> Schema:
    """A value's schema that also accepts one placeholder, which takes the value's type when the
    job runs; described as the value is (or by its `name`), for an editor's hover."""
    placeholder = {"type": "string", "pattern": PLACEHOLDER_ONLY}
    described = schema.get("description", name)
    return {**({"description": described} if described else {}), "anyOf": [_inside(schema), placeholder]}


def config_schema(registry: OperatorRegistry) -> Schema:
    """The published schema: the structure plus each operator's parameters, so editors complete them."""
    schema = copy.deepcopy(structure_schema())
    rule = schema["properties"]["rules"]["additionalProperties"]["properties"]
    # the loader refuses these names with a message of its own (`matrix key 'path' is reserved`)
    rule["matrix"]["propertyNames"] = {**IDENTIFIER, "not": {"enum": sorted(RESERVED_NAMES)}}
    step = rule["steps"]["items"]
    step["properties"] = {
        name: {
            "description": params.get("description", name),
            "anyOf": [{"type": "null"}, _editor_params(params)],
        }
        for name in registry.names()
        for params in [registry.get(name).params_schema]
    }
    return schema


def published_schema_text() -> str:
    """`batchit.schema.json` as committed: the built-in operators only, indented, keys sorted."""
    return (
        json.dumps(config_schema(OperatorRegistry(dict(BUILTIN_OPERATORS))), indent=2, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    print(published_schema_text(), end="")
