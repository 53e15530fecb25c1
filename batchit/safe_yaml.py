"""YAML 1.2 core-schema loading and dumping of JSON-like data, safe against hostile documents.

PyYAML resolves scalars by YAML 1.1, where `on`, `yes` and `off` are booleans and `010` is octal;
`Yaml12Loader` resets the resolvers to the 1.2 core schema, so only `true`/`false` are booleans. A
document is composed into nodes first and checked before anything is constructed: only what JSON
can hold (no `!!python/...` or other tag), every key a string written once, at most MAX_NODES nodes
with every alias counted each time it is used (an alias bomb fails at once instead of exploding a
later step) and at most MAX_DEPTH levels. Two callers share it: the config loader
(`batchit.config.yaml12`, which turns a `YamlProblem` into a ConfigError at `file:line:col`) and
`data.load` (a permanent error naming the input). `Yaml12Dumper` writes what the loader reads back
unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import yaml

YamlPath = tuple[str | int, ...]
"""Where a value sits in a document: its mapping keys and sequence indices from the root."""

Position = tuple[int, int]
"""A 1-based line and column."""

MAX_NODES = 1_000_000
"""Cap on nodes visited (aliases count each time they are used): an alias bomb fails, not hangs."""

MAX_DEPTH = 100
"""Cap on lists and mappings nested in each other: deeper, the parser and the checks after it would
exceed Python's recursion limit. No config needs more than a handful."""

_SURROGATE = re.compile(r"[\ud800-\udfff]")
"""What a `\\uD800`-style escape gives: half of a UTF-16 pair, no character, not writable as UTF-8."""

TAG = "tag:yaml.org,2002:"
PLAIN_TAGS = {f"{TAG}{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")}
"""The tags of what JSON can hold; `!!binary`, `!!set`, `!!timestamp` and the like are refused."""


class YamlProblem(ValueError):
    """A document that does not parse, or holds what JSON-like data may not, with a hint and a 1-based
    line and column (None for the few errors PyYAML gives no position)."""

    def __init__(self, message: str, hint: str, position: Position | None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.line: int | None = position[0] if position else None
        self.column: int | None = position[1] if position else None


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
    f"{TAG}bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Yaml12Loader.add_implicit_resolver(f"{TAG}null", re.compile(r"^(?:~|null|Null|NULL|)$"), [*"~nN", ""])
Yaml12Loader.add_implicit_resolver(
    f"{TAG}int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
Yaml12Loader.add_implicit_resolver(
    f"{TAG}float",
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


Yaml12Loader.add_constructor(f"{TAG}int", _construct_int)


def implicit_tag(text: str) -> str:
    """The tag YAML 1.2's core schema gives `text` written plain (unquoted): `yes` is a str, `0o17`
    an int."""
    for tag, pattern in Yaml12Loader.yaml_implicit_resolvers.get(text[:1], []):
        if pattern.match(text):
            return tag
    return f"{TAG}str"


class Yaml12Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting every string a YAML 1.2 reader would take for something else.

    PyYAML quotes by YAML 1.1 (`yes`, `010`), but writes `0o17` and `1e3` plain, which 1.2 reads
    as numbers: those are quoted too, so a dumped document loads back as the same data. It writes
    no anchors or aliases: data read with aliases shares objects, and equal data must give equal
    bytes wherever it came from."""

    def ignore_aliases(self, data: Any) -> bool:
        """Always: every value is written out in full."""
        return True

    def represent_str(self, data: str) -> yaml.ScalarNode:
        """The string's node, single-quoted when 1.2 would resolve it as plain text to another type."""
        node = super().represent_str(data)
        if node.style is None and implicit_tag(data) != f"{TAG}str":
            node.style = "'"
        if "\x85" in data:  # NEL, a line break to a reader: single-quoted or plain, it reads back as a space
            node.style = '"'  # double quotes write it as the escape \N
        return node


Yaml12Dumper.add_representer(str, Yaml12Dumper.represent_str)


def parse(text: str) -> tuple[Any, dict[YamlPath, Position]]:
    """The data of a one-document YAML text and the position of each value (for a mapping entry: its
    key's); an empty document is None.

    Raises `YamlProblem` both for what does not parse and for what parses but is not JSON-like data.
    """
    try:
        loader = Yaml12Loader(text)  # the reader checks every character here
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {(): (1, 1)}
            positions = _Walker(loader.construct_object).walk(node)
            return loader.construct_document(node), positions
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        raise _unprintable(exc, text) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        hint = "flatten it: nothing needs more than a few levels" if isinstance(exc, NestedTooDeep) else None
        if hint is None and "'\\t'" in problem:  # PyYAML's words for a tab where YAML takes spaces
            hint = "replace the tab with spaces, which YAML indents with (and puts after a key's colon)"
        position = (mark.line + 1, mark.column + 1) if mark else None
        raise YamlProblem(f"invalid YAML: {problem}", hint or "fix the YAML syntax there", position) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}", "fix the YAML syntax", None) from None


def _unprintable(exc: yaml.reader.ReaderError, text: str) -> YamlProblem:
    """The problem of a character YAML does not allow anywhere (a control character such as NUL or
    BEL, even in a comment), at its line and column."""
    code = ord(exc.character) if isinstance(exc.character, str) else exc.character
    start = text.rfind("\n", 0, exc.position) + 1
    escape = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return YamlProblem(
        f"invalid YAML: character U+{code:04X} is not allowed, not even in a comment",
        f'delete it; in a double-quoted string write it as the escape "{escape}"',
        (text.count("\n", 0, exc.position) + 1, exc.position - start + 1),
    )


def _position(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Walker:
    """Records each node's position by path, and rejects what JSON cannot hold or a key written twice."""

    def __init__(self, construct: Callable[[yaml.Node], Any]) -> None:
        self.construct = construct
        """The loader's constructor, to check a number as it will be read (`1e400` is infinite)."""
        self.positions: dict[YamlPath, Position] = {}
        self.visited = 0
        self.active: set[int] = set()

    def walk(self, root: yaml.Node) -> dict[YamlPath, Position]:
        self.positions[()] = _position(root)
        self.visit(root, ())
        return self.positions

    def visit(self, node: yaml.Node, path: YamlPath) -> None:
        """Check one node and everything under it; `path` is where it sits."""
        self.visited += 1
        if self.visited > MAX_NODES or id(node) in self.active:
            raise YamlProblem(
                "the document expands too far (recursive or repeated aliases)",
                "use fewer aliases",
                _position(node),
            )
        if node.tag not in PLAIN_TAGS:
            tag = node.tag.replace(TAG, "!!")
            raise YamlProblem(
                f"unsupported tag {tag}", "use plain strings, numbers, lists and mappings", _position(node)
            )
        self.active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self.visit_mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.positions[(*path, index)] = _position(item)
                self.visit(item, (*path, index))
        elif node.tag == f"{TAG}float" and not math.isfinite(self.construct(node)):
            raise YamlProblem(
                f"{node.value} is not a finite number", "write a finite number", _position(node)
            )
        elif node.tag == f"{TAG}str":
            self.check_text(node)
        self.active.discard(id(node))

    def check_text(self, node: yaml.Node) -> None:
        """Refuse a lone surrogate (`"\\ud800"`): no file name, key or record can hold it as UTF-8."""
        found = _SURROGATE.search(node.value)
        if found:
            raise YamlProblem(
                f"\\u{ord(found.group()):04x} is half of a UTF-16 surrogate pair, not a character",
                "write the character itself, or as one escape: \\U0001F600, not \\ud83d\\ude00",
                _position(node),
            )

    def visit_mapping(self, node: yaml.MappingNode, path: YamlPath) -> None:
        """Record each entry at its key; keys must be strings, each written once."""
        seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == f"{TAG}str"):
                raise YamlProblem(
                    "mapping keys must be strings", 'quote the key, e.g. "1": ...', _position(key_node)
                )
            self.check_text(key_node)
            key, here = key_node.value, _position(key_node)
            if key in seen:
                raise YamlProblem(
                    f"duplicate key '{key}' (lines {seen[key][0]} and {here[0]})",
                    "remove one of them or merge them",
                    here,
                )
            seen[key] = here
            self.positions[(*path, key)] = here
            self.visit(value_node, (*path, key))
