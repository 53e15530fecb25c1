"""JSON Schema checks whose failures read like a person wrote them, at the line where the value is.

jsonschema reports "Additional properties are not allowed ('ouput' was unexpected)" at a path of
keys; this module turns the most useful error of a check into `batchit.yaml:14:7: rule 'thumbs':
unknown key 'ouput'` with `fix: did you mean 'output'?`, using the marks `yaml12` recorded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

from jsonschema import Draft202012Validator, SchemaError, TypeChecker, ValidationError
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import extend, validator_for

from batchit.config.hints import did_you_mean, listing
from batchit.config.yaml12 import Marks, YamlPath, error_at, nearest

_KINDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true/false)",
    "null": "empty",
}


def validator(schema: Mapping[str, Any]) -> Validator:
    """A validator for `schema` (by its `$schema`, 2020-12 when it names none) that checks formats.

    Its `integer` is a whole number written without a decimal point: JSON Schema counts `2.0` as an
    integer, but the code past the loader (sizes, worker counts, retention) needs a real int, so
    `jobs: 2.0` is refused here rather than crash a build halfway.
    """
    base = validator_for(schema, default=Draft202012Validator)
    cls: type[Validator] = extend(  # type: ignore[no-untyped-call]  # jsonschema leaves it untyped
        base, type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer)
    )
    return cls(schema, format_checker=base.FORMAT_CHECKER)


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why `schema` is not a valid JSON Schema (against its `$schema`'s metaschema, 2020-12 when
    it names none), or None: an operator's parameter schema is checked before any value is."""
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(dict(schema))
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path)
        return f"{exc.message}" + (f" (at {where})" if where else "")
    return None


def _is_integer(_checker: TypeChecker, instance: object) -> bool:
    """An int as YAML reads `2` (not `2.0`, and not a boolean, which Python counts as an int)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def check(
    instance: Any,
    against: Validator,
    marks: Marks,
    *,
    prefix: YamlPath = (),
    rule: str | None = None,
    skip: Callable[[ValidationError], bool] | None = None,
) -> None:
    """Raise a located ConfigError for the most useful way `instance` fails the schema, if any.

    `marks` are looked up at `prefix` + the error's path; errors for which `skip` is true are
    ignored. Without `rule`, errors under `rules.NAME` (or `presets.NAME`) name it themselves.
    """
    errors = [error for error in against.iter_errors(instance) if skip is None or not skip(error)]
    unknown = [error for error in errors if error.validator == "additionalProperties"]
    error = unknown[0] if unknown else best_match(errors)
    if error is None:
        return
    while _is_choice(error.parent):  # best_match goes down into `width or height` of crop's
        error = error.parent  # `box, or width or height`: name every alternative
    path: YamlPath = (*prefix, *error.absolute_path)
    relative, owner = path, ""
    if rule is None and len(path) >= 2 and path[0] in ("rules", "presets"):
        relative = path[2:]
        if path[0] == "rules":
            rule = str(path[1])
        else:
            owner = f"preset '{path[1]}': "
    message, hint, where = _explain(error, relative, rule, against.schema)
    raise error_at(nearest(marks, (*path, *where)), owner + message, rule=rule, hint=hint)


def _explain(
    error: ValidationError, path: YamlPath, rule: str | None, root: Any
) -> tuple[str, str | None, YamlPath]:
    """The message, the hint, and the path below `path` where the problem is written (`root`: the
    whole schema, whose descriptions around the error's place can serve as the hint)."""
    label = _label(path, rule)
    value: Any = error.validator_value
    instance: Any = error.instance
    properties: Mapping[str, Any] = _schema(error).get("properties", {})
    if error.validator == "additionalProperties":
        known = sorted(properties)
        key = sorted(set(instance) - set(known))[0]
        noun = "parameter" if _in_step(path) else "key"
        hint = did_you_mean(key, known, f"valid {noun}s: {listing(known)}")
        return f"{_prefix(path, label)}unknown {noun} '{key}'", hint, (key,)
    if error.validator == "required":
        missing = next(key for key in value if key not in instance)
        noun = "parameter" if _in_step(path) else "key"
        about = properties.get(missing, {}).get("description")
        hint = f"add '{missing}:'" + (f" ({about})" if about else "")
        return f"{_prefix(path, label)}missing required {noun} '{missing}'", hint, ()
    if error.validator == "dependentRequired":
        key, needs = next((k, n) for k, n in value.items() if k in instance and not set(n) <= set(instance))
        missing = next(n for n in needs if n not in instance)
        message = f"{_prefix(path, label)}'{key}' means nothing without '{missing}'"
        return message, f"add '{missing}:', or remove '{key}:'", (key,)
    if _is_choice(error):
        return f"{label} {_phrase(error)}", _choice_hint(error), ()
    if "propertyNames" in error.schema_path:
        return f"{_prefix(path, label)}invalid name {instance!r}", _description(error), (instance,)
    hint = _description(error) or _enclosing_description(root, error) or _where_documented(path)
    return f"{label} {_phrase(error)}", hint, ()


def _phrase(error: ValidationError) -> str:
    """What is wrong with the value, completing a sentence that starts with its name."""
    value: Any = error.validator_value
    instance: Any = error.instance
    shown = f" ({instance!r})" if isinstance(instance, str | int | float) else ""
    if error.validator == "type":
        kinds = [_KINDS.get(kind, kind) for kind in ([value] if isinstance(value, str) else value)]
        wanted = " or ".join(filter(None, [", ".join(kinds[:-1]), kinds[-1]]))
        return f"must be {wanted}, not {_kind(instance)}{shown}"
    if error.validator == "enum":
        return f"must be one of {', '.join(repr(item) for item in value)}, not {instance!r}"
    if error.validator == "const":
        return f"must be {value!r}, not {instance!r}"
    if error.validator in ("minItems", "minProperties", "minLength") and value == 1:
        return "must not be empty"
    if error.validator == "maxProperties":
        return f"must have at most {value} key(s), not {len(instance)} ({', '.join(map(str, instance))})"
    if error.validator in ("minimum", "exclusiveMinimum"):
        return (
            f"must be {'at least' if error.validator == 'minimum' else 'more than'} {value}, not {instance}"
        )
    if error.validator in ("maximum", "exclusiveMaximum"):
        return f"must be {'at most' if error.validator == 'maximum' else 'less than'} {value}, not {instance}"
    if error.validator == "uniqueItems":
        return "must not list the same item twice"
    choices = _required_choices(value) if error.validator in ("anyOf", "oneOf") else None
    if choices:
        one = "exactly one" if error.validator == "oneOf" else "at least one"
        return f"needs {one} of {', '.join(choices)}"
    if error.validator in ("pattern", "anyOf", "oneOf"):
        return f"is not valid: {instance!r}" if shown else "is not valid"
    if error.validator == "format":
        return f"is not a valid {value}: {instance!r}"
    return f"is invalid: {error.message}"


def _required_choices(schemas: Any) -> list[str] | None:
    """How the alternatives of an anyOf/oneOf read when each only requires keys: `'text'`,
    `'image'`, or `'width' or 'height'` for a nested anyOf; None for other alternatives."""
    if not isinstance(schemas, list):
        return None
    choices = []
    for schema in schemas:
        if not isinstance(schema, dict):
            return None
        if schema.keys() == {"required"}:
            choices.append(" and ".join(f"'{key}'" for key in schema["required"]))
        elif schema.keys() == {"anyOf"} and (inner := _required_choices(schema["anyOf"])):
            choices.append(" or ".join(inner))
        else:
            return None
    return choices


def _is_choice(error: object) -> TypeGuard[ValidationError]:
    """True for an anyOf/oneOf error whose alternatives only require keys (`width` or `height`)."""
    return (
        isinstance(error, ValidationError)
        and error.validator in ("anyOf", "oneOf")
        and _required_choices(error.validator_value) is not None
    )


def _choice_hint(error: ValidationError) -> str:
    """The fix for a mapping that gives none of the alternative keys (add one), or, for a oneOf,
    more than one alternative (jsonschema then gives no sub-errors: keep one)."""
    if error.validator == "oneOf" and not error.context:
        instance: Any = error.instance
        given = [key for key in _choice_keys(error.validator_value) if key in instance]
        return f"keep only one of {', '.join(f'{key!r}' for key in given)}: they are alternatives"
    choices = _required_choices(error.validator_value) or []
    return "add " + ", or ".join(re.sub(r"'([^']*)'", r"'\1:'", choice) for choice in choices)


def _choice_keys(schemas: Any) -> list[str]:
    """Every key an anyOf/oneOf of required keys names, in order."""
    keys: list[str] = []
    for schema in schemas:
        for key in schema.get("required", []):
            keys.append(key)
        keys.extend(_choice_keys(schema.get("anyOf", [])))
    return keys


def _description(error: ValidationError) -> str | None:
    """The description of the failing schema or of the nearest schema around it, as the hint."""
    current: ValidationError | None = error
    while current is not None:
        description = _schema(current).get("description")
        if description:
            return str(description)
        parent = current.parent
        current = parent if isinstance(parent, ValidationError) else None
    return None


def _enclosing_description(root: Any, error: ValidationError) -> str | None:
    """The description of the innermost schema, on the way from `root` to the failing one, that
    has one (a list's items have none; the list they belong to does)."""
    found: str | None = None
    schema: Any = root
    for part in list(error.absolute_schema_path)[:-1]:  # the last part is the failing keyword
        try:
            schema = schema[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(schema, dict) and isinstance(schema.get("description"), str):
            found = schema["description"]
    return found


def _where_documented(path: YamlPath) -> str:
    """The fallback hint, when no schema around the error describes the value: where it is."""
    if len(path) >= 3 and path[0] == "steps":
        return f"see `{path[2]}`'s parameters in docs/operators.md"
    return "see docs/config.md for what this key takes"


def _schema(error: ValidationError) -> Mapping[str, Any]:
    """The (sub)schema an error comes from, as a mapping (a boolean schema has no keywords)."""
    return error.schema if isinstance(error.schema, Mapping) else {}


def _kind(instance: Any) -> str:
    """The YAML-ish name of a value's type (a bool is checked first: it is also an int)."""
    if isinstance(instance, bool):
        return _KINDS["boolean"]
    for python_type, kind in (
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    ):
        if isinstance(instance, python_type):
            return _KINDS[kind]
    return _KINDS["null"]


def _in_step(path: YamlPath) -> bool:
    return len(path) >= 3 and path[0] == "steps"


def _label(path: Sequence[str | int], rule: str | None) -> str:
    """How a message names the value at `path` (relative to its rule, when it is in one)."""
    if not path:
        return "the rule" if rule else "the file"
    if path[0] == "steps" and len(path) >= 2 and isinstance(path[1], int):
        step = f"step {path[1] + 1}" + (f" ({path[2]})" if len(path) >= 3 else "")
        return step + (f" parameter '{_dotted(path[3:])}'" if len(path) > 3 else "")
    return f"'{_dotted(path)}'"


def _prefix(path: YamlPath, label: str) -> str:
    """`label: ` for a problem inside a nested value; nothing at the top of a file or a rule."""
    return f"{label}: " if path else ""


def _dotted(path: Sequence[str | int]) -> str:
    """`retry.attempts`, `inputs[0]`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
