"""JSON Schema files for `data.validate`: read, checked, and followed through `$ref` to other files.

A schema may split its definitions over several files: a `$ref` that is not a fragment of the same
file (`address.json`, `defs/person.yaml#/$defs/name`) names a file relative to the file holding
the `$ref`, as a browser resolves a relative link. Only project files are reached: an absolute URI
(`https://...`, `file:...`) or a path leading out of the project is refused, so a build never
depends on the network or on a file outside what its key can hash. Every file reached enters the
job's action key (`referenced_files`), so editing one rebuilds the jobs that validate with it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urlsplit

from batchit.errors import PermanentError, RecipeError
from batchit.fsutil import StatTuple, stat_identity
from batchit.operators.data_formats import format_by_extension, parse

STEP = "step data.validate"


def load_schema(root: Path, schema_file: str) -> dict[str, Any]:
    """The schema in the project file `schema_file` (JSON, or YAML read safely); RecipeError when it
    cannot be read, parsed, or holds no mapping: every job would fail on it alike."""
    path = root / schema_file
    return _parsed(str(path), schema_file, stat_identity(str(path)))


@cache
def _parsed(path: str, shown: str, identity: StatTuple | None) -> dict[str, Any]:
    """`load_schema`'s work, once per file version (`identity`: its stat) in a process."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RecipeError(
            f"{STEP}: cannot read schema {shown}: {exc.strerror}",
            hint="write the schema file, or fix the `schema` path (or the `$ref` naming it)",
        ) from None
    fmt = "json" if format_by_extension(shown) == "json" else "yaml"
    try:
        schema = parse(raw.decode("utf-8-sig"), fmt, shown)
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{STEP}: schema {shown} is not valid UTF-8: {exc.reason}", hint="save it as UTF-8"
        ) from None
    except PermanentError as exc:
        raise RecipeError(exc.message, hint=exc.hint) from None
    if not isinstance(schema, dict):
        raise RecipeError(
            f"{STEP}: schema {shown} holds a {type(schema).__name__}, not a schema",
            hint="write the schema as a mapping ({type: object, ...})",
        )
    return schema


def checked_schema_files(root: Path, schema_file: str) -> list[str]:
    """The project files `schema_file` reaches through `$ref`, directly or through each other, in
    the order first met (the file itself not included), once each is checked to be a valid schema:
    what a job would fail on, found as the build plans. RecipeError for a `$ref` no job could
    follow (see the module's docstring), or a file reached that is no valid schema."""
    import jsonschema  # ~60 ms: only a plan that keys a data.validate step pays it

    schema = load_schema(root, schema_file)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    _checked(cls, root, schema_file)
    seen = {schema_file}
    found: list[str] = []
    pending = [schema_file]
    while pending:
        current = pending.pop(0)
        document = load_schema(root, current)
        embedded = set(_values_of("$id", document))  # a $ref to an embedded schema's $id is no file
        for ref in _values_of("$ref", document):
            target = None if urldefrag(ref)[0] in embedded else ref_target(root, current, ref)
            if target is not None and target not in seen:
                _checked(cls, root, target)
                seen.add(target)
                found.append(target)
                pending.append(target)
    return found


def ref_target(root: Path, holder: str, ref: str) -> str | None:
    """The project-relative file the `$ref` `ref` in the file `holder` names, or None for a fragment
    of `holder` itself (`#/$defs/x`); RecipeError for one that leads outside the project."""
    address, _ = urldefrag(ref)
    if not address:
        return None
    if urlsplit(address).scheme or address.startswith("/"):
        raise RecipeError(
            f"{STEP}: schema {holder}: $ref {ref!r} is not a project file",
            hint="copy that schema into the project, and $ref it by its path relative to the file "
            "holding the $ref",
        )
    target = posixpath.normpath(posixpath.join(posixpath.dirname(holder), unquote(address)))
    if (
        target == ".."
        or target.startswith("../")
        or not (root / target).resolve().is_relative_to(root.resolve())
    ):
        raise RecipeError(
            f"{STEP}: schema {holder}: $ref {ref!r} leads out of the project",
            hint="keep every schema file the $refs reach inside the project",
        )
    return target


VALUE_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
"""Keywords whose values are data, not schemas: a `$ref` key in them names nothing."""


def _values_of(keyword: str, node: Any) -> Iterator[str]:
    """Every string value of `keyword` (`$ref`, `$id`) in a schema document, however deep."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == keyword and isinstance(value, str):
                yield value
            elif key not in VALUE_KEYWORDS:
                yield from _values_of(keyword, value)
    elif isinstance(node, list):
        for item in node:
            yield from _values_of(keyword, item)


def schema_validator(root: Path, schema_file: str) -> Any:
    """A validator of the schema in `schema_file` (its `$schema` picks the draft; 2020-12 when it
    names none), whose `$ref`s to other files are read from the project (`ref_target`);
    RecipeError when a file is no valid schema."""
    import jsonschema  # ~60 ms: imported only where a schema is used
    import referencing
    import referencing.jsonschema

    schema = load_schema(root, schema_file)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    default_spec = referencing.jsonschema.specification_with(cls.META_SCHEMA["$schema"])

    def retrieve(uri: str) -> referencing.Resource[Any]:
        # `uri` is relative to the directory of `schema_file` (whose base URI is empty), already
        # joined with those of the files between: the path `ref_target` makes of it from there
        target = ref_target(root, schema_file, uri)
        assert target is not None, "a fragment is never retrieved"
        contents = load_schema(root, target)
        _checked(cls, root, target)
        return referencing.Resource.from_contents(contents, default_specification=default_spec)

    _checked(cls, root, schema_file)
    registry: referencing.Registry[Any] = referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return cls(schema, registry=registry)


def _checked(cls: Any, root: Path, schema_file: str) -> None:
    """`_check` of a project file, once per file version and draft in a process: a step whose
    schema is named per job (`schemas/{stem}.json`) keys every job, not once per rule."""
    path = str(root / schema_file)
    _checked_version(cls, path, schema_file, stat_identity(path))


@cache
def _checked_version(cls: Any, path: str, shown: str, identity: StatTuple | None) -> None:
    _check(cls, _parsed(path, shown, identity), shown)


def _check(cls: Any, schema: dict[str, Any], shown: str) -> None:
    """RecipeError unless `schema` is a valid schema of the validator class's draft."""
    import jsonschema

    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise RecipeError(
            f"{STEP}: schema {shown} is not a valid JSON Schema: {exc.json_path}: {exc.message}",
            hint="fix the schema",
        ) from None
