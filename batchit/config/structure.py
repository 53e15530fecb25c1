"""The shape of `batchit.yaml` and of included preset files, as JSON Schema (SPEC section 2).

This is what the loader validates a file against before anything else. Steps are left open here:
an operator's parameters are checked later, once placeholders are substituted, and
`batchit.config.schema` adds them for editors.
"""

from __future__ import annotations

from typing import Any

from batchit.config.units import SIZE_PATTERN
from batchit.model import MOST_WORKERS
from batchit.operators.image_names import formats_schema

LONGEST_BACKOFF = 300
"""The longest delay `retry` may ask for between attempts, in seconds: as the longest Retry-After a
build waits for (batchit.execute.retry), beyond which the next build is the better retry."""

Schema = dict[str, Any]

IDENTIFIER: Schema = {
    "description": "A name of letters, digits and _, not starting with a digit (it is used as {name}).",
    "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
}
RULE_NAME: Schema = {
    "description": "A rule name: letters, digits, _ and -, not starting with a digit or -.",
    "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$",
}


def _size(description: str) -> Schema:
    return {
        "description": f"{description} A whole number of bytes (no decimal point), or a number and a "
        "unit: B, KB, MB, GB, TB (powers of 10) or KiB, MiB, GiB, TiB (powers of 2), e.g. 20MB.",
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": SIZE_PATTERN}],
    }


def _strings(description: str, *, min_items: int = 0) -> Schema:
    return {
        "description": description,
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "minItems": min_items,
        "uniqueItems": True,
    }


def _mapping(description: str, properties: Schema, **extra: Any) -> Schema:
    return {
        "description": description,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _positive(description: str) -> Schema:
    """A count: batchit reads `2.0` as a number, not an integer, so the description says how to write it."""
    return {
        "description": f"{description} A whole number, without a decimal point.",
        "type": "integer",
        "minimum": 1,
    }


def _text_or_list(description: str) -> Schema:
    list_schema = {"type": "array", "items": {"type": "string"}, "minItems": 1}
    return {"description": description, "anyOf": [{"type": "string"}, list_schema]}


_RULE_INPUT: Schema = _mapping(
    "Another rule's outputs, with `out` as their glob base.",
    {"rule": {"description": "The name of the upstream rule.", "type": "string"}},
    required=["rule"],
)

STEP: Schema = {
    "description": "One operator call: `- operator.name: {parameters}`, parameters indented under the "
    "operator's name. A parameter `when: EXPR` "
    "(a Jinja2 expression over flags, matrix values and input) runs the step only when true.",
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {"type": ["object", "null"]},
}

RULE_PROPERTIES: Schema = {
    "inputs": {
        "description": "A list of project-relative globs (`**` crosses directories) and `{rule: NAME}` "
        "items, or a single glob, or a single `{rule: NAME}`.",
        "anyOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "array",
                "items": {"anyOf": [{"type": "string", "minLength": 1}, _RULE_INPUT]},
                "minItems": 1,
                "uniqueItems": True,
            },
            _RULE_INPUT,
        ],
    },
    "exclude": _strings("Globs of inputs to leave out."),
    "matrix": {
        "description": "One job per input and per combination of these values, each a placeholder.",
        "type": "object",
        "propertyNames": IDENTIFIER,
        "additionalProperties": {
            "description": "The key's values: a non-empty list of distinct strings, numbers or booleans.",
            "type": "array",
            "items": {"type": ["string", "number", "boolean"]},
            "minItems": 1,
            "uniqueItems": True,
        },
    },
    "output": {
        "description": "Output path template relative to `out`: {path} {dir} {name} {stem} {ext}, matrix "
        "keys, {key8}, and an aggregate's partition names.",
        "type": "string",
        "minLength": 1,
    },
    "deps": _strings("Project-relative files (globs) whose content is part of every job's key."),
    "validate": _mapping(
        "Checks on each input before any step runs; a failure quarantines the input.",
        {
            "max_size": _size("Largest input accepted."),
            "min_size": _size("Smallest input accepted."),
            "extensions": _strings("Accepted file extensions.", min_items=1),
            "image": _mapping(
                "Checks on image inputs.",
                {
                    "max_pixels": _positive("Largest width * height accepted (decompression-bomb guard)."),
                    "formats": formats_schema("Accepted input formats."),
                },
            ),
            "checksums": {
                "description": "Project-relative file of expected input checksums.",
                "type": "string",
                "minLength": 1,
            },
        },
    ),
    "expect": _mapping(
        "Contracts every output must meet; a broken one is a permanent error and the old output stays.",
        {
            "max_size": _size("Largest output allowed."),
            "min_size": _size("Smallest output allowed."),
            "image": _mapping(
                "Checks on image outputs.",
                {
                    "max_width": _positive("Widest output allowed, in pixels."),
                    "max_height": _positive("Tallest output allowed, in pixels."),
                    "formats": formats_schema("Allowed output formats."),
                },
            ),
            "schema": {
                "description": "Project-relative JSON Schema the output must satisfy.",
                "type": "string",
                "minLength": 1,
            },
            "contains": _text_or_list("Text every output must contain."),
            "not_contains": _text_or_list("Text no output may contain."),
        },
    ),
    "steps": {
        "description": "The pipeline: each step takes the value the step before produced.",
        "type": "array",
        "minItems": 1,
        "items": STEP,
    },
    "resources": {
        "description": "Which worker pool runs the rule's jobs: cpu (processes) or io (threads). Default: io "
        "when every step is an io operator, else cpu.",
        "enum": ["cpu", "io"],
    },
    "concurrency": _positive("At most this many of the rule's jobs run at once."),
    "retry": _mapping(
        "Retries of transient failures, with exponential backoff and full jitter.",
        {
            "attempts": _positive("Attempts in all, the first included (default 1)."),
            "backoff": {
                "description": "First delay in seconds (default 0.2; at most 300).",
                "type": "number",
                "minimum": 0,
                "maximum": LONGEST_BACKOFF,
            },
            "max_backoff": {
                "description": "Longest delay in seconds (default 10; at most 300, as the longest "
                "Retry-After a build waits for).",
                "type": "number",
                "minimum": 0,
                "maximum": LONGEST_BACKOFF,
            },
        },
    ),
    "aggregate": {
        "description": "true: all inputs make one job; {by: '{dir}'}: one job per value of a placeholder "
        "expression; {partition: REGEX}: one job per value of the regex's named groups.",
        "anyOf": [
            {"type": "boolean"},
            _mapping(
                "Give exactly one of `by` or `partition`.",
                {
                    "by": {"description": "A placeholder expression such as '{dir}'.", "type": "string"},
                    "partition": {"description": "A regex with named groups.", "type": "string"},
                },
                minProperties=1,
                maxProperties=1,
            ),
        ],
    },
    "preset": {"description": "Start from this preset of an included file.", "type": "string"},
    "with": {"description": "Values of the preset's ${param} placeholders.", "type": "object"},
}

RULE: Schema = {
    "description": "A rule: which inputs, through which steps, to which outputs.",
    "type": "object",
    "properties": RULE_PROPERTIES,
    "additionalProperties": False,
    "if": {"required": ["preset"]},
    "else": {"required": ["inputs", "output", "steps"]},
    "dependentRequired": {"with": ["preset"]},
}

SKELETON: Schema = _mapping(
    "A rule skeleton: any rule keys, whose strings may hold ${param} placeholders.",
    {
        **{key: {} for key in RULE_PROPERTIES if key not in ("preset", "with")},
        "params": {
            "description": "Default values of the preset's parameters.",
            "type": "object",
            "propertyNames": IDENTIFIER,
        },
    },
)

PRESET_FILE: Schema = _mapping(
    "An included file: presets only.",
    {
        "presets": {
            "description": "Rule skeletons by name.",
            "type": "object",
            "propertyNames": RULE_NAME,
            "additionalProperties": SKELETON,
        }
    },
    required=["presets"],
)


def structure_schema() -> Schema:
    """The schema of `batchit.yaml` with steps left open: what the loader checks before placeholders."""
    top = {
        "version": {"description": "The config format version: 1.", "type": "integer", "const": 1},
        "out": {
            "description": "Output root, relative to the project root (default _build).",
            "type": "string",
        },
        "jobs": {
            "description": "Default worker count: auto (the CPU count) or a whole number, without a decimal "
            "point.",
            "anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1, "maximum": MOST_WORKERS}],
        },
        "durability": {
            "description": "fast relies on atomic renames; fsync also syncs outputs and the state store.",
            "enum": ["fast", "fsync"],
        },
        "cache": _mapping("The content-addressed output cache.", {"max_size": _size("Cap (default 2GB).")}),
        "runs": _mapping("Run records.", {"keep": _positive("Run records kept (default 20).")}),
        "flags": {
            "description": "Feature flags read by `when:` conditions; override with --flag NAME=VALUE.",
            "type": "object",
            "propertyNames": IDENTIFIER,
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
        "alerts": _mapping(
            "Where a run's summary is POSTed.",
            {
                "webhook": {
                    "description": "http(s) URL to POST to.",
                    "type": "string",
                    "pattern": "^https?://[^/?#\\s]+",
                },
                "when": {"description": "failure (default) or always.", "enum": ["failure", "always"]},
            },
            required=["webhook"],
        ),
        "provenance": {
            "description": "Write a signed SLSA provenance per run (default true).",
            "type": "boolean",
        },
        "include": _strings("Preset files: a project path, or batchit:NAME for a bundled one."),
        "rules": {
            "description": "The rules, by name.",
            "type": "object",
            "minProperties": 1,
            "propertyNames": RULE_NAME,
            "additionalProperties": RULE,
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "batchit.yaml",
        **_mapping("The rules of a batchit project: inputs, steps and outputs.", top, required=["rules"]),
    }
