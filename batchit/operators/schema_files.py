"""JSON Schema files for `data.validate`: read, checked, and followed through `$ref` to other files.

A schema may split its definitions over several files: a `$ref` that is not a fragment of the same
file (`address.json`, `defs/person.yaml#/$defs/name`) names a file relative to the file holding
the `$ref`, as a browser resolves a relative link. Only project files are reached: an absolute URI
(`https://...`, `file:...`) or a path leading out of the project is refused, so a build never
depends on the network or on a file outside what its key can hash. Every file reached enters the
job's action key (`checked_schema_files`), so editing one rebuilds the jobs that validate with it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from batchit.errors import PermanentError, RecipeError
from batchit.fsutil import StatTuple, stat_identity
from batchit.operators.data_formats import decoded_text, format_by_extension, parse

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
        schema = parse(decoded_text(raw, shown), fmt, shown)
    except PermanentError as exc:  # not UTF-8, or not JSON or YAML
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
    follow (see the module's docstring), or a file reached that is no valid schema.

    A `$ref` is resolved as the validator resolves it: against the `file:` URI of the file holding
    it, or against the `$id` of the schema around it, so a `$ref` to a schema embedded by its
    `$id` (a bundled schema) names no file."""
    import jsonschema  # ~60 ms: only a plan that keys a data.validate step pays it

    schema = load_schema(root, schema_file)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    _checked(cls, root, schema_file)
    seen = {schema_file}
    found: list[str] = []
    pending = [schema_file]
    while pending:
        current = pending.pop(0)
        base = file_uri(root, current)
        references = list(_references(load_schema(root, current), base))
        embedded = {base} | {uri for kind, _, uri in references if kind == "$id"}
        for kind, written, uri in references:
            if kind == "$id" or uri in embedded:
                continue
            target = _project_file(root, uri)
            if target is None:
                raise _not_followed(current, written, uri)
            if target not in seen:
                _checked(cls, root, target)
                seen.add(target)
                found.append(target)
                pending.append(target)
    return found


def file_uri(root: Path, relative: str) -> str:
    """The `file:` URI of a project file: the base its schema's relative `$ref`s resolve against."""
    return (root / relative).as_uri()


def _project_file(root: Path, uri: str) -> str | None:
    """The project-relative path of the file a `file:` URI names, or None for any other URI and
    for a file outside the project (also through a symlink)."""
    prefix = root.as_uri().rstrip("/") + "/"
    if not uri.startswith(prefix):
        return None
    target = posixpath.normpath(unquote(uri[len(prefix) :]))
    if target == ".." or target.startswith("../"):
        return None
    return target if (root / target).resolve().is_relative_to(root.resolve()) else None


def _not_followed(holder: str, written: str, uri: str) -> RecipeError:
    """The error of a `$ref` that names no project file: another URI, or a file out of the project."""
    if uri.startswith("file:") and not urlsplit(written).scheme:
        return RecipeError(
            f"{STEP}: schema {holder}: $ref {written!r} leads out of the project",
            hint="keep every schema file the $refs reach inside the project",
        )
    return RecipeError(
        f"{STEP}: schema {holder}: $ref {written!r} is not a project file ({uri})",
        hint="copy that schema into the project, and $ref it by its path relative to the file "
        "holding the $ref (a schema's $id, when it has one, is what relative $refs resolve against)",
    )


VALUE_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
"""Keywords whose values are data, not schemas: a `$ref` in them names nothing."""

SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
)
"""Keywords whose values map names (of properties, definitions) to schemas: a name is no keyword."""

REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def _references(node: Any, base: str) -> Iterator[tuple[str, str, str]]:
    """(keyword, value as written, absolute URI without its fragment) of every `$id` and reference
    in a schema, each resolved against the base URI in force where it stands: `base`, or the
    nearest enclosing `$id` (a fragment-only `$id`, draft 7's anchor, moves nothing)."""
    if isinstance(node, list):
        for item in node:
            yield from _references(item, base)
        return
    if not isinstance(node, dict):
        return
    own = node.get("$id")
    if isinstance(own, str) and urldefrag(own)[0]:
        base = urljoin(base, own)
        yield "$id", own, urldefrag(base)[0]
    for keyword in REF_KEYWORDS:
        ref = node.get(keyword)
        if isinstance(ref, str):
            yield keyword, ref, urldefrag(urljoin(base, ref))[0]
    for key, value in node.items():
        if key in VALUE_KEYWORDS or key in REF_KEYWORDS or key == "$id":
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            for schema in value.values():
                yield from _references(schema, base)
        else:
            yield from _references(value, base)


def schema_validator(root: Path, schema_file: str) -> Any:
    """A validator of the schema in `schema_file` (its `$schema` picks the draft; 2020-12 when it
    names none), whose `$ref`s to other files are read from the project; RecipeError when a file
    is no valid schema. A schema without an `$id` gets its file's `file:` URI as one, so a relative
    `$ref` resolves against the file that holds it, as `checked_schema_files` resolved it."""
    import jsonschema  # ~60 ms: imported only where a schema is used
    import referencing
    import referencing.jsonschema

    schema = load_schema(root, schema_file)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    default_spec = referencing.jsonschema.specification_with(cls.META_SCHEMA["$schema"])

    def retrieve(uri: str) -> referencing.Resource[Any]:
        target = _project_file(root, uri)
        if target is None:
            raise _not_followed(schema_file, uri, uri)
        _checked(cls, root, target)
        return referencing.Resource.from_contents(
            load_schema(root, target), default_specification=default_spec
        )

    _checked(cls, root, schema_file)
    id_keyword = "id" if cls.META_SCHEMA.get("$schema", "").startswith(OLD_DRAFTS) else "$id"
    if id_keyword not in schema:  # its relative $refs resolve against the file, as at plan time
        schema = {id_keyword: file_uri(root, schema_file), **schema}
    registry: referencing.Registry[Any] = referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return cls(schema, registry=registry)


OLD_DRAFTS = ("http://json-schema.org/draft-03/", "http://json-schema.org/draft-04/")
"""The drafts whose identifier keyword is `id`, not `$id`."""


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
