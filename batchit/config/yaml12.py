"""YAML 1.2 core-schema loading that remembers where every value was written (SPEC section 2).

The loading itself (1.2 core scalars, only what JSON can hold, caps on nodes, aliases and depth) is
`batchit.safe_yaml`'s, shared with `data.load`; this module adds the config's side: every value's
position in a named file, so later errors, schema errors included, point at
`batchit.yaml:LINE:COLUMN`, and every problem as a ConfigError there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from batchit.errors import ConfigError
from batchit.safe_yaml import MAX_DEPTH as MAX_DEPTH  # re-exported: the config's tests read it here
from batchit.safe_yaml import Yaml12Loader as Yaml12Loader
from batchit.safe_yaml import YamlPath as YamlPath
from batchit.safe_yaml import YamlProblem, parse


@dataclass(frozen=True)
class Mark:
    """A 1-based position in a named file."""

    file: str
    line: int
    column: int
    via: str | None = None
    """What put a value here when it is written elsewhere (a preset's `${param}`), for messages."""


Marks = dict[YamlPath, Mark]
"""Positions of the values of a document (for a mapping entry: where its key is written)."""


def error_at(
    mark: Mark | None, message: str, *, rule: str | None = None, hint: str | None = None
) -> ConfigError:
    """A ConfigError pointing at `mark` (or at no position when there is none)."""
    if mark is None:
        return ConfigError(message, rule=rule, hint=hint)
    if mark.via:
        message = f"{message} (from {mark.via})"
    return ConfigError(message, file=mark.file, line=mark.line, column=mark.column, rule=rule, hint=hint)


def nearest(marks: Mapping[YamlPath, Mark], path: Sequence[str | int]) -> Mark | None:
    """The mark of `path`, or of its nearest ancestor that has one."""
    key = tuple(path)
    while key and key not in marks:
        key = key[:-1]
    return marks.get(key)


def marks_under(marks: Mapping[YamlPath, Mark], key: str) -> dict[str, Marks]:
    """The marks of each entry of the top-level mapping `key`, relative to that entry."""
    grouped: dict[str, Marks] = {}
    for path, mark in marks.items():
        if len(path) >= 2 and path[0] == key and isinstance(path[1], str):
            grouped.setdefault(path[1], {})[path[2:]] = mark
    return grouped


def parse_scalar(text: str) -> Any:
    """A plain YAML 1.2 core scalar: how `--flag NAME=VALUE` values are read, like values in the file.

    `true`/`false` are booleans, `null`, `~` and the empty string are None, `12`, `0o17` and `0x1f`
    are ints, `1.5`, `1e3` and `.inf` are floats; anything else (`on`, `yes`, `1_000`) is the string.
    """
    loader = Yaml12Loader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        return loader.construct_object(yaml.ScalarNode(tag, text))
    finally:
        loader.dispose()


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: its data, the position of every value, and its bytes (for the config hash)."""

    file: str
    """The path as shown in messages."""
    data: Any
    marks: Marks
    raw: bytes


def read_document(path: Path, file: str, *, missing_hint: str | None = None) -> Document:
    """Read and parse one YAML file; every problem (unreadable, not UTF-8, bad YAML) is a ConfigError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"not found in {path.parent}", file=file, hint=missing_hint) from None
    except IsADirectoryError:
        hint = f"name the config file itself, such as -f {file.rstrip('/')}/batchit.yaml"
        raise ConfigError("a folder, not a file", file=file, hint=hint) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}", file=file) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8-sig")  # valid: the first bad byte is at exc.start
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        message = f"not valid UTF-8 at byte {exc.start}"
        raise ConfigError(message, file=file, line=line, column=column, hint="save it as UTF-8") from None
    try:
        data, positions = parse(text)
    except YamlProblem as exc:
        raise ConfigError(exc.message, file=file, line=exc.line, column=exc.column, hint=exc.hint) from None
    marks = {path: Mark(file, line, column) for path, (line, column) in positions.items()}
    return Document(file, data, marks, raw)
