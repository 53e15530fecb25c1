"""JSON, YAML, TOML and CSV text to JSON-like data and back, for `data.load` and `data.dump`.

JSON-like data is what the data operators pass between them: dicts with string keys, lists, strings,
finite numbers, booleans and None. Every parser refuses what cannot be that (a YAML tag, a
non-finite number, a key written twice) with a permanent error naming the input and, where the
parser tells, the line and column: a malformed input is quarantined, never half read. Every writer
is deterministic (the same data gives the same bytes) and refuses, naming the value's path, what
its format cannot hold, rather than writing something that would not read back the same.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any

from batchit.errors import PermanentError, RecipeError
from batchit.operators.base import InputFile

FORMATS = ("json", "yaml", "toml", "csv")
"""The formats the data operators read and write."""

EXTENSIONS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".csv": "csv"}
"""What `format: auto` reads from a file name's (case-insensitive) extension."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_SURROGATE = re.compile(r"[\ud800-\udfff]")
"""What a lone `\\ud800`-style escape gives: half of a UTF-16 pair, no character, not writable as UTF-8."""

_HALF_PAIR = "holds half of a UTF-16 surrogate pair, not a character"

TOO_DEEP = "nested too deep to read"
"""Data nested past what a parser recurses through (Python's recursion limit)."""

CSV_FIELD_LIMIT = 2**31 - 1
"""The longest CSV field read: the csv module's own default (131,072 characters) would refuse a
valid file holding a long text as malformed; this is the largest limit every platform's C `long`
holds, far past any field that fits in memory."""

Path = tuple[str | int, ...]
"""Where a value sits in a document: mapping keys and list indices from the root."""


class _Unfit(ValueError):
    """A parsed value JSON-like data cannot hold (raised inside a parser's hook)."""


class _TooDeep(_Unfit):
    """Data nested past what the parser recurses through (Python's recursion limit)."""


def json_path(path: Path) -> str:
    """`path` written as a JSONPath, as messages show it: `$.items[2].price`, `$['a key']`."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(parts)


def require_data(value: Any, step: str) -> None:
    """Refuse a value that is still a file or bytes: the step works on what `data.load` returns (a
    string may be data: a YAML document can be one)."""
    files = isinstance(value, list) and any(isinstance(item, InputFile) for item in value)
    if files or isinstance(value, InputFile | bytes):
        kind = "input files" if files else type(value).__name__
        raise RecipeError(f"step {step} needs data, got {kind}", hint="put data.load before it")


def decoded_text(data: bytes, source: str) -> str:
    """UTF-8 text (a leading BOM dropped: spreadsheets write one); anything else is a permanent error."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PermanentError(
            f"{source} is not valid UTF-8: {exc.reason} at byte {exc.start}", hint="save it as UTF-8"
        ) from None


def format_by_extension(path: str) -> str | None:
    """The format a file name's extension says (`a.YML` is yaml), or None."""
    return EXTENSIONS.get(PurePosixPath(path).suffix.lower())


def parse(text: str, fmt: str, source: str) -> Any:
    """The JSON-like data `text` holds in format `fmt`; `source` names it in messages."""
    return _PARSERS[fmt](text, source)


def loads_json(text: str | bytes) -> Any:
    """The JSON-like data of JSON `text`. Raises ValueError for what is not JSON or not such data:
    `json.JSONDecodeError` (with a position) for malformed text, else a message naming the value:
    NaN and Infinity (not JSON, though Python reads them), a number no float holds (`1e400`), a key
    written twice, a lone surrogate escape (`"\\ud800"`, which no UTF-8 output can hold), nesting
    deeper than the parser recurses."""
    try:
        data = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite_float
        )
    except RecursionError:
        raise _TooDeep(TOO_DEEP) from None
    problem = first_misfit(data)
    if problem:
        raise _Unfit(problem)
    return data


def _parse_json(text: str, source: str) -> Any:
    """JSON, refusing what `loads_json` refuses, naming `source` (and the line and column it can)."""
    try:
        return loads_json(text)
    except json.JSONDecodeError as exc:
        raise PermanentError(
            f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}", hint="fix the JSON there"
        ) from None
    except _Unfit as exc:
        raise PermanentError(
            f"{source}: invalid JSON: {exc}",
            hint="flatten the data" if isinstance(exc, _TooDeep) else "fix the JSON",
        ) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key written twice (JSON parsers disagree on which one wins)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Unfit(f"duplicate key {key!r} in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _Unfit(f"{name} is not a JSON number")


def _parse_yaml(text: str, source: str) -> Any:
    """YAML through batchit's safe 1.2 loader: no tags, a budget on nodes, aliases and depth."""
    from batchit.safe_yaml import YamlProblem, parse  # PyYAML: ~20 ms, paid only by a job reading YAML

    try:
        return parse(text)[0]
    except YamlProblem as exc:
        where = f"{source}:{exc.line}:{exc.column}" if exc.line else source
        raise PermanentError(f"{where}: {exc.message}", hint=exc.hint) from None


def _parse_toml(text: str, source: str) -> Any:
    """TOML; its dates and times become ISO 8601 strings, as JSON-like data has no such type."""
    import tomllib

    try:
        return _iso_times(tomllib.loads(text, parse_float=_finite_float))
    except tomllib.TOMLDecodeError as exc:
        raise PermanentError(f"{source}: invalid TOML: {exc}", hint="fix the TOML there") from None
    except _Unfit as exc:
        raise PermanentError(f"{source}: invalid TOML: {exc}", hint="write a finite number") from None
    except RecursionError:
        raise PermanentError(f"{source}: invalid TOML: {TOO_DEEP}", hint="flatten the data") from None


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Unfit(f"{text} is not a finite number")
    return number


def _iso_times(value: Any) -> Any:
    """`value` with every date, time and date-time written as its ISO 8601 string."""
    if isinstance(value, dict):
        return {key: _iso_times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_iso_times(item) for item in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return value


def _parse_csv(text: str, source: str) -> Any:
    """CSV with a header row: one record (a dict of strings) per row. Blank lines hold nothing,
    before the header as between rows. A row with more or fewer fields than the header, or a header
    naming a column twice, is an error at its line."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:  # the module's setting, shared by the process
        csv.field_size_limit(CSV_FIELD_LIMIT)
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next((row for row in rows if row), None)
        if header is None:
            return []
        twice = sorted({name for name in header if header.count(name) > 1})
        if twice:
            raise PermanentError(
                f"{source}:{rows.line_num}: invalid CSV: the header names {twice} more than once"
            )
        return [_record(header, row, rows.line_num, source) for row in rows if row]
    except csv.Error as exc:
        raise PermanentError(
            f"{source}:{rows.line_num}: invalid CSV: {exc}", hint="fix the CSV there"
        ) from None


def _record(header: list[str], row: list[str], line: int, source: str) -> dict[str, str]:
    if len(row) != len(header):
        raise PermanentError(
            f"{source}:{line}: invalid CSV: {len(row)} fields where the header has {len(header)}",
            hint="fix the row (a field holding a comma must be quoted)",
        )
    return dict(zip(header, row, strict=True))


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "json": _parse_json,
    "yaml": _parse_yaml,
    "toml": _parse_toml,
    "csv": _parse_csv,
}


def dump(value: Any, fmt: str, step: str, *, indent: int, sort_keys: bool) -> str:
    """`value` written in format `fmt`, ending with a newline; what `fmt` cannot hold is an error
    naming the step and the value's path. `indent` (0: one line) applies to JSON."""
    problem = first_misfit(value, toml=fmt == "toml")
    if problem:
        raise PermanentError(f"step {step}: cannot write {fmt.upper()}: {problem}")
    try:
        return _dump(value, fmt, step, indent=indent, sort_keys=sort_keys)
    except RecursionError:  # YAML's and TOML's writers recurse once per level, or more
        raise PermanentError(
            f"step {step}: cannot write {fmt.upper()}: the data is nested too deep",
            hint="flatten the data",
        ) from None


def _dump(value: Any, fmt: str, step: str, *, indent: int, sort_keys: bool) -> str:
    """`dump`'s writing, once the data is known to fit the format."""
    if fmt == "json":
        if indent == 0:
            return json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":")) + "\n"
        return json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, indent=indent) + "\n"
    if fmt == "yaml":
        import yaml

        from batchit.safe_yaml import Yaml12Dumper

        return yaml.dump(value, Dumper=Yaml12Dumper, sort_keys=sort_keys, allow_unicode=True)
    if fmt == "toml":
        return _dump_toml(value, step, sort_keys)
    return _dump_csv(value, step, sort_keys)


def first_misfit(value: Any, *, toml: bool = False) -> str | None:
    """The first value of `value` that is not JSON-like (with `toml`: or not writable as TOML, a
    null or an integer beyond 64 bits), as a message naming its path; None when all of it is."""
    for path, item in _walk(value, ()):
        problem = _misfit(item, toml)
        if problem:
            return f"{json_path(path)} {problem}"
    return None


def _misfit(item: Any, toml: bool) -> str | None:
    """What is wrong with one value, its children aside, or None."""
    if toml and item is None:
        return "is null, which TOML cannot hold (leave the key out instead)"
    if toml and isinstance(item, int) and not -(2**63) <= item < 2**63:
        return f"is {item}, beyond TOML's 64-bit integers"
    if isinstance(item, float) and not math.isfinite(item):
        return f"is {item}, not a finite number"
    if not isinstance(item, dict | list | str | int | float | bool | type(None)):
        return f"is a {type(item).__name__}, not JSON-like data"
    if isinstance(item, str) and _SURROGATE.search(item):
        return _HALF_PAIR
    key = next((key for key in item if not isinstance(key, str)), None) if isinstance(item, dict) else None
    if key is not None:
        return f"has the key {key!r}, which is not a string"
    half = next((key for key in item if _SURROGATE.search(key)), None) if isinstance(item, dict) else None
    return None if half is None else f"has the key {half!r}, which {_HALF_PAIR}"


def _walk(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    """Every value inside `value` with its path, parents before children."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))


def _dump_toml(value: Any, step: str, sort_keys: bool) -> str:
    if not isinstance(value, dict):
        raise PermanentError(
            f"step {step}: cannot write TOML, whose top is a table (a mapping), "
            f"from a {type(value).__name__}",
            hint="dump JSON or YAML, or wrap the value in a mapping",
        )
    import tomli_w  # imported only by a job that writes TOML

    return tomli_w.dumps(_sorted(value) if sort_keys else value)


def _sorted(value: Any) -> Any:
    """`value` with every mapping's keys in sorted order."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _dump_csv(value: Any, step: str, sort_keys: bool) -> str:
    """A list of flat records as CSV: the header is every key in the order first seen (sorted with
    `sort_keys`), a missing field is empty, None is empty, booleans are `true`/`false`; rows end
    with `\\n`."""
    if not isinstance(value, list) or not all(isinstance(record, dict) for record in value):
        raise PermanentError(
            f"step {step}: cannot write CSV, which holds a list of records (mappings), from a "
            f"{type(value).__name__}" + (" of other values" if isinstance(value, list) else ""),
            hint="dump JSON or YAML instead",
        )
    header = list(dict.fromkeys(key for record in value for key in record))
    if sort_keys:
        header.sort()
    buffer = io.StringIO()
    plain = csv.writer(buffer, lineterminator="\n")
    # the writer quotes a field holding a character of its line terminator, not a lone CR, which a
    # reader takes for a line end: a row holding one is written with every field quoted
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    rows = [
        header,
        *([_cell(record.get(key), (i, key), step) for key in header] for i, record in enumerate(value)),
    ]
    for row in rows:
        (quoted if any("\r" in field for field in row) else plain).writerow(row)
    return buffer.getvalue()


def _cell(value: Any, path: Path, step: str) -> str:
    if isinstance(value, dict | list):
        raise PermanentError(
            f"step {step}: cannot write CSV: {json_path(path)} is a "
            f"{'mapping' if isinstance(value, dict) else 'list'}, and a CSV field holds one value",
            hint="flatten the records first, or dump JSON or YAML instead",
        )
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def unknown_format(path: str, role: str, step: str) -> str:
    """The message for `format: auto` meeting a file name with no known extension."""
    known = ", ".join(EXTENSIONS)
    return f"step {step}: cannot tell the format of {role} {path!r} from its extension (known: {known})"


def recipe_format(path: str, step: str) -> str:
    """The format of the output `path` for `format: auto`; any other extension is the recipe's fault."""
    fmt = format_by_extension(path)
    if fmt is None:
        raise RecipeError(
            unknown_format(path, "the output", step), hint="set the step's `format`, or rename the output"
        )
    return fmt
