"""Structured data operators: `data.load`, `data.dump`, `data.validate` (SPEC sections 11 and 12).

`data.load` reads JSON, YAML, TOML or CSV into JSON-like data (dicts, lists, strings, numbers,
booleans, None), later steps transform it, and `data.dump` writes it in any of those formats. The
formats themselves live in `batchit.operators.data_formats`; `data.mask` in `data_mask`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from batchit.errors import PermanentError, RecipeError
from batchit.operators.base import JSON_INDENT, InputFile, InputKind, JobContext, Operator
from batchit.operators.data_formats import (
    FORMATS,
    decoded_text,
    dump,
    first_misfit,
    format_by_extension,
    parse,
    recipe_format,
    require_data,
    unknown_format,
)
from batchit.operators.schema_files import checked_schema_files, schema_validator

MESSAGE_LIMIT = 500
"""The longest schema mismatch message shown whole: jsonschema quotes the failing value (or the
`enum` it is not one of) whole, and a long text would flood every summary, manifest and report."""


def clipped(message: str) -> str:
    """`message`, cut in its middle when longer than MESSAGE_LIMIT: its start (the value's first
    characters) and its end (the rule it broke: `does not match '^a'`) stay."""
    if len(message) <= MESSAGE_LIMIT:
        return message
    head, tail = MESSAGE_LIMIT * 3 // 5, MESSAGE_LIMIT * 3 // 10
    left_out = len(message) - head - tail
    return f"{message[:head]}...({left_out} characters left out)...{message[-tail:]}"


def _format_param(description: str) -> dict[str, Any]:
    return {"enum": ["auto", *FORMATS], "default": "auto", "description": description}


class DataLoad(Operator):
    """`data.load`: a JSON, YAML, TOML or CSV input as JSON-like data.

    YAML goes through batchit's safe YAML 1.2 loader (the config's): a tag such as
    `!!python/object/apply:...` is refused, never constructed, and an alias bomb stops at a budget
    of nodes instead of hanging. A malformed input, or one that is not UTF-8, is a permanent error
    naming it and the line and column the parser reports: the input is quarantined.
    """

    name = "data.load"
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Read JSON, YAML, TOML or CSV into data (mappings, lists, strings, numbers).",
        "properties": {
            "format": _format_param(
                "The input's format; auto reads it from the extension: .json, .yaml or .yml, .toml, .csv "
                "(the input's path then enters the job's key: a renamed input is read again)."
            ),
        },
        "additionalProperties": False,
    }
    libraries = ("pyyaml",)
    ends_with = "data.dump"  # its value is data, which only data.dump writes as text

    def sees_paths(self, params: Mapping[str, Any]) -> bool:
        """With `format: auto`, the input's extension decides what the step does."""
        return bool(params.get("format", "auto") == "auto")

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The data of the input file (or bytes, or text); an aggregate's files give a list of them."""
        if isinstance(value, list) and all(isinstance(item, InputFile) for item in value):
            return [self.run(item, ctx, **params) for item in value]
        if isinstance(value, InputFile):
            source, text = value.path, decoded_text(value.read_bytes(), value.path)
        elif isinstance(value, bytes | str):
            source = ctx.input if isinstance(ctx.input, str) else ctx.output
            text = value if isinstance(value, str) else decoded_text(value, source)
        else:
            raise RecipeError(
                f"step {self.name} needs a file, bytes or text, got {type(value).__name__}",
                hint="put data.load first",
            )
        fmt: str = params.get("format", "auto")
        if fmt == "auto":
            fmt = format_by_extension(source) or ""
            if not fmt:
                raise PermanentError(
                    unknown_format(source, "the input", self.name),
                    hint="set the step's `format`, or narrow the rule's inputs to those extensions",
                )
        return parse(text, fmt, source)


class DataDump(Operator):
    """`data.dump`: data written as JSON, YAML, TOML or CSV text, the same data always as the same bytes.

    Keys keep the order they were read in (which the input fixes) unless `sort_keys` is set. A value
    the format cannot hold (a list at the top of TOML, a null in TOML, a nested value in a CSV cell)
    is a permanent error naming its path.
    """

    name = "data.dump"
    takes: ClassVar[frozenset[InputKind]] = frozenset()
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Write data as JSON, YAML, TOML or CSV text.",
        "properties": {
            "format": _format_param(
                "The output's format; auto reads it from the output's extension, as data.load does (the "
                "output's path then enters the job's key)."
            ),
            "indent": JSON_INDENT,
            "sort_keys": {
                "type": "boolean",
                "default": False,
                "description": "Write every mapping's keys sorted; by default they keep the input's order.",
            },
        },
        "additionalProperties": False,
    }
    libraries = ("pyyaml", "tomli-w")

    def sees_paths(self, params: Mapping[str, Any]) -> bool:
        """With `format: auto`, the output's extension decides what the step does."""
        return bool(params.get("format", "auto") == "auto")

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The data's text in the chosen format, ending with a newline."""
        require_data(value, self.name)
        fmt: str = params.get("format", "auto")
        if fmt == "auto":
            fmt = recipe_format(ctx.output, self.name)
        return dump(
            value, fmt, self.name, indent=params.get("indent", 2), sort_keys=params.get("sort_keys", False)
        )


class DataValidate(Operator):
    """`data.validate`: the data, unchanged, once it meets the JSON Schema in the `schema` file.

    A mismatch is a permanent error naming the failing value's path (`$.items[2].price: -1 is less
    than the minimum of 0`): the input is quarantined. The schema file (JSON, or YAML read safely)
    is part of the job's key, so editing it rebuilds. A schema that cannot be read or is not a valid
    schema is the recipe's fault, found as the build plans (exit 2). The schema's `$schema` picks
    the draft (2020-12 when it names none); a `$ref` may name another project file, relative to
    the file holding it, and each file reached enters the key too (batchit.operators.schema_files).
    """

    name = "data.validate"
    takes: ClassVar[frozenset[InputKind]] = frozenset()
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Check the data against a JSON Schema; pass it on unchanged.",
        "properties": {
            "schema": {
                "type": "string",
                "minLength": 1,
                "description": "Project-relative JSON Schema file, JSON (.json) or YAML (.yaml, .yml).",
            },
        },
        "required": ["schema"],
        "additionalProperties": False,
    }
    file_params = ("schema",)
    libraries = ("jsonschema", "pyyaml")
    ends_with = "data.dump"  # it passes the data on: only data.dump writes it as text

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """`value` itself, when it is valid."""
        import jsonschema  # ~60 ms: imported only by a job that validates
        import referencing.exceptions

        require_data(value, self.name)
        problem = first_misfit(value)
        if problem:
            raise PermanentError(f"step {self.name}: {problem}")
        schema_file: str = params["schema"]
        validator = schema_validator(ctx.root, schema_file)
        try:
            errors = list(validator.iter_errors(value))
            error = jsonschema.exceptions.best_match(errors)
        except RecursionError:  # a recursive schema descends into the data level by level
            raise PermanentError(
                f"step {self.name}: the data is nested too deep to check against {schema_file}",
                hint="flatten the data",
            ) from None
        except referencing.exceptions.Unresolvable as exc:  # met only where the data reaches it
            cause = exc.__cause__ if isinstance(exc.__cause__, RecipeError) else None
            raise RecipeError(
                f"step {self.name}: schema {schema_file}: cannot resolve $ref {exc.ref!r}"
                + (f": {cause.message}" if cause else ""),
                hint=cause.hint if cause and cause.hint else "define it under $defs, or in a file it names",
            ) from None
        if error is not None:
            count = len(errors)
            more = f" (and {count - 1} more)" if count > 1 else ""
            raise PermanentError(
                f"{error.json_path}: {clipped(error.message)}{more} (schema {schema_file})",
                hint="fix the data, or the schema if it is wrong",
            )
        return value

    def key_files(self, params: Mapping[str, Any], root: Path) -> dict[str, Path]:
        """The schema file and every file its `$ref`s reach (`checked_schema_files`), each checked
        to be a valid schema as the build plans: a schema no job could use is a config error."""
        files = super().key_files(params, root)
        schema_file = params.get("schema")
        if isinstance(schema_file, str) and (root / schema_file).is_file():  # else the planner names it
            for target in checked_schema_files(root, schema_file):
                files[f"schema:{schema_file} $ref {target}"] = root / target
        return files
