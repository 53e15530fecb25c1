"""Fill docs/operators.md's parameter tables in from the operators' `params_schema`, so they cannot drift.

    .venv/bin/python docs/make_operators.py           # rewrite docs/operators.md in place
    .venv/bin/python docs/make_operators.py --check   # exit 1 when it is out of date

Each built-in operator has a block `<!-- generated: NAME -->` ... `<!-- /generated -->` in the file;
what is between the markers is replaced, and the prose and examples around them are left alone.
`tests/test_docs.py` fails when the committed file differs from what this script would write.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from batchit.operators.registry import BUILTIN_OPERATORS, load_target

DOC = Path(__file__).resolve().parent / "operators.md"
BLOCK_TEXT = "<!-- generated: {name} -->\n{table}\n<!-- /generated -->"
BLOCK = re.compile(r"<!-- generated: (?P<name>[a-z_.]+) -->\n.*?<!-- /generated -->", re.DOTALL)


def type_of(schema: dict[str, Any]) -> str:
    """A short human name for a parameter's JSON Schema type."""
    if "enum" in schema:
        return " \\| ".join(f"`{value}`" for value in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(type_of(part) for part in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items", {})
        return f"list of {_plural(type_of(items))}" if items else "list"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"map of string -> {type_of(values)}" if isinstance(values, dict) else "map"
    if kind == "integer":
        return "integer" + _bounds(schema)
    if kind == "number":
        return "number" + _bounds(schema)
    return str(kind or "any")


def _bounds(schema: dict[str, Any]) -> str:
    """The range of a number, as `>= 1`, `> 0`, `0 to 1` or `> 0, <= 1`."""
    exclusive = "exclusiveMinimum" in schema
    low = schema.get("exclusiveMinimum", schema.get("minimum"))
    high = schema.get("maximum")
    if low is not None and high is not None:
        return f" > {low}, <= {high}" if exclusive else f" {low} to {high}"
    if low is not None:
        return f" {'>' if exclusive else '>='} {low}"
    return "" if high is None else f" <= {high}"


def _plural(kind: str) -> str:
    """`string` -> `strings` and `integer >= 0` -> `integers >= 0`, for "list of ..."; enums stay."""
    word, _, rest = kind.partition(" ")
    if word in ("string", "integer", "number", "boolean"):
        return f"{word}s {rest}".rstrip()
    return kind


def _default(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in schema:
        return "none"
    value = schema["default"]
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`[{', '.join(map(str, value))}]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    """Table-cell text: backslashes, pipes, asterisks and angle brackets escaped, so Markdown shows
    them as written."""
    escaped = text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
    return escaped.replace("<", "&lt;").replace("\n", " ")


def table(name: str) -> str:
    """The generated part of one operator's section: what it does, its class, its parameters."""
    cls = load_target(BUILTIN_OPERATORS[name])
    schema = cls.params_schema
    required = set(schema.get("required", []))
    lines = [
        f"{schema.get('description', '')} Resource class: `{cls.resources}`. Version: {cls.version}.",
        "",
    ]
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    if properties:
        lines += ["| parameter | type | default | meaning |", "| --- | --- | --- | --- |"]
        for param, prop in properties.items():
            meaning = _cell(prop.get("description", ""))
            lines.append(f"| `{param}` | {type_of(prop)} | {_default(prop, param in required)} | {meaning} |")
        if schema.get("additionalProperties") is True:
            lines.append("| *any other key* | any | none | passed to the function as a keyword argument |")
    else:
        lines.append("No parameters.")
    return "\n".join(lines)


def render(text: str) -> str:
    """`text` with every generated block filled in; every built-in operator must have exactly one."""
    found = [match["name"] for match in BLOCK.finditer(text)]
    missing = sorted(set(BUILTIN_OPERATORS) - set(found))
    unknown = sorted(set(found) - set(BUILTIN_OPERATORS))
    if missing or unknown or len(found) != len(set(found)):
        raise SystemExit(f"operators.md blocks: missing {missing}, unknown {unknown}, found {found}")
    return BLOCK.sub(lambda match: BLOCK_TEXT.format(name=match["name"], table=table(match["name"])), text)


def main(argv: list[str]) -> int:
    current = DOC.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{DOC} is out of date: run python docs/make_operators.py", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
