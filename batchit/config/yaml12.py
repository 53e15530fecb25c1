"""YAML 1.2 core-schema loading that remembers where every value was written (SPEC section 2).

PyYAML resolves scalars by YAML 1.1, where `on`, `yes` and `off` are booleans and `010` is octal;
this loader resets the resolvers to the 1.2 core schema, so only `true`/`false` are booleans. The
document is composed into nodes first, so every value's position can be recorded (and duplicate
keys caught) before the data is constructed: later errors, schema errors included, then point at
`batchit.yaml:LINE:COLUMN`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from batchit.errors import ConfigError

YamlPath = tuple[str | int, ...]
"""Where a value sits in a document: its mapping keys and sequence indices from the root."""

MAX_NODES = 1_000_000
"""Cap on nodes visited (aliases count each time they are used): an alias bomb fails, not hangs."""

MAX_DEPTH = 100
"""Cap on lists and mappings nested in each other: deeper, the parser and the checks after it would
exceed Python's recursion limit. No config needs more than a handful."""

_SURROGATE = re.compile(r"[\ud800-\udfff]")
"""What a `\\uD800`-style escape gives: half of a UTF-16 pair, no character, not writable as UTF-8."""

_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")}
"""The tags of what JSON can hold; `!!binary`, `!!set`, `!!timestamp` and the like are refused."""


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


class NestedTooDeep(yaml.composer.ComposerError):
    """Lists and mappings nested more than MAX_DEPTH levels."""


class Yaml12Loader(yaml.SafeLoader):
    """A safe loader with YAML 1.2 core-schema scalars: `on`/`yes`/`1_000` are strings, `0o17` is 15."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}  # noqa: RUF012 (PyYAML's own class-level table)
    depth = 0
    """How many collections the node being composed is in."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """PyYAML's composer, which recurses once per level, refusing to go deeper than MAX_DEPTH."""
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise NestedTooDeep(
                None, None, f"lists and mappings nested more than {MAX_DEPTH} levels deep", mark
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


Yaml12Loader.add_implicit_resolver(
    f"{_TAG}bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Yaml12Loader.add_implicit_resolver(f"{_TAG}null", re.compile(r"^(?:~|null|Null|NULL|)$"), [*"~nN", ""])
Yaml12Loader.add_implicit_resolver(
    f"{_TAG}int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
Yaml12Loader.add_implicit_resolver(
    f"{_TAG}float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _construct_int(loader: Yaml12Loader, node: yaml.ScalarNode) -> int:
    """A 1.2 core integer: decimal (`010` is ten), `0o` octal or `0x` hexadecimal."""
    text = str(loader.construct_scalar(node))
    try:
        if text[:2] in ("0x", "0o"):
            return int(text[2:], 16 if text[1] == "x" else 8)
        return int(text, 10)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not an integer", node.start_mark
        ) from None


Yaml12Loader.add_constructor(f"{_TAG}int", _construct_int)


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
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}", file=file) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not valid UTF-8 at byte {exc.start}", file=file, hint="save it as UTF-8"
        ) from None
    try:
        loader = Yaml12Loader(text)  # the reader checks every character here
    except yaml.reader.ReaderError as exc:
        raise _unprintable(exc, text, file) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(file, None, {(): Mark(file, 1, 1)}, raw)
        marks = _Walker(file, loader.construct_object).walk(node)
        return Document(file, loader.construct_document(node), marks, raw)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        hint = (
            "flatten it: no setting needs more than a few levels" if isinstance(exc, NestedTooDeep) else None
        )
        raise ConfigError(
            f"invalid YAML: {problem}",
            file=file,
            line=line,
            column=column,
            hint=hint or "fix the YAML syntax there",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def _unprintable(exc: yaml.reader.ReaderError, text: str, file: str) -> ConfigError:
    """The error for a character YAML does not allow anywhere (a control character such as NUL or
    BEL, even in a comment), at its line and column."""
    code = ord(exc.character) if isinstance(exc.character, str) else exc.character
    start = text.rfind("\n", 0, exc.position) + 1
    escape = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return ConfigError(
        f"invalid YAML: character U+{code:04X} is not allowed, not even in a comment",
        file=file,
        line=text.count("\n", 0, exc.position) + 1,
        column=exc.position - start + 1,
        hint=f'delete it; in a double-quoted string write it as the escape "{escape}"',
    )


class _Walker:
    """Records each node's position by path, and rejects what JSON cannot hold or a key written twice."""

    def __init__(self, file: str, construct: Callable[[yaml.Node], Any]) -> None:
        self.file = file
        self.construct = construct
        """The loader's constructor, to check a number as it will be read (`1e400` is infinite)."""
        self.marks: Marks = {}
        self.visited = 0
        self.active: set[int] = set()

    def mark(self, node: yaml.Node) -> Mark:
        return Mark(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: yaml.Node, message: str, hint: str) -> ConfigError:
        return error_at(self.mark(node), message, hint=hint)

    def walk(self, root: yaml.Node) -> Marks:
        self.marks[()] = self.mark(root)
        self.visit(root, ())
        return self.marks

    def visit(self, node: yaml.Node, path: YamlPath) -> None:
        """Check one node and everything under it; `path` is where it sits."""
        self.visited += 1
        if self.visited > MAX_NODES or id(node) in self.active:
            raise self.fail(
                node, "the document expands too far (recursive or repeated aliases)", "use fewer aliases"
            )
        if node.tag not in _PLAIN_TAGS:
            tag = node.tag.replace(_TAG, "!!")
            raise self.fail(node, f"unsupported tag {tag}", "use plain strings, numbers, lists and mappings")
        self.active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self.visit_mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.marks[(*path, index)] = self.mark(item)
                self.visit(item, (*path, index))
        elif node.tag == f"{_TAG}float" and not math.isfinite(self.construct(node)):
            raise self.fail(node, f"{node.value} is not a finite number", "write a finite number")
        elif node.tag == f"{_TAG}str":
            self.check_text(node)
        self.active.discard(id(node))

    def check_text(self, node: yaml.Node) -> None:
        """Refuse a lone surrogate (`"\\ud800"`): no file name, key or record can hold it as UTF-8."""
        found = _SURROGATE.search(node.value)
        if found:
            raise self.fail(
                node,
                f"\\u{ord(found.group()):04x} is half of a UTF-16 surrogate pair, not a character",
                "write the character itself, or as one escape: \\U0001F600, not \\ud83d\\ude00",
            )

    def visit_mapping(self, node: yaml.MappingNode, path: YamlPath) -> None:
        """Mark each entry at its key; keys must be strings, each written once."""
        seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == f"{_TAG}str"):
                raise self.fail(key_node, "mapping keys must be strings", 'quote the key, e.g. "1": ...')
            self.check_text(key_node)
            key, here = key_node.value, self.mark(key_node)
            if key in seen:
                raise error_at(
                    here,
                    f"duplicate key '{key}' (lines {seen[key].line} and {here.line})",
                    hint="remove one of them or merge them",
                )
            seen[key] = here
            self.marks[(*path, key)] = here
            self.visit(value_node, (*path, key))
