"""The published JSON Schema of `batchit.yaml`, for editors to complete and check (SPEC section 2).

`config_schema(registry)` is the structure the loader checks plus every operator's parameters;
`python -m batchit.config.schema` prints it for the built-in operators, as the committed
`batchit.schema.json` (a test keeps the two equal).
"""

from __future__ import annotations

import copy
import json

from batchit.config.structure import Schema, structure_schema
from batchit.operators.registry import BUILTIN_OPERATORS, OperatorRegistry

PLACEHOLDER_ONLY = "^\\{[A-Za-z_][A-Za-z0-9_]*\\}$"
"""A parameter written as one placeholder, which takes the value's type when the job runs."""


def _editor_params(params_schema: Schema) -> Schema:
    """An operator's parameter schema that also accepts `when` and a `"{placeholder}"` for any value."""
    schema = copy.deepcopy(params_schema)
    properties = schema.setdefault("properties", {})
    for name, prop in properties.items():
        placeholder = {"type": "string", "pattern": PLACEHOLDER_ONLY}
        properties[name] = {"description": prop.get("description", name), "anyOf": [prop, placeholder]}
    properties["when"] = {
        "description": "Run the step only when this Jinja2 expression is true.",
        "type": "string",
    }
    return schema


def config_schema(registry: OperatorRegistry) -> Schema:
    """The published schema: the structure plus each operator's parameters, so editors complete them."""
    schema = copy.deepcopy(structure_schema())
    step = schema["properties"]["rules"]["additionalProperties"]["properties"]["steps"]["items"]
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
