"""The config's JSON Schema checks, skipped when a build recorded that they passed for it as it is.

Importing jsonschema takes ~60 ms, longer than the rest of a no-op build of a small project. So a
build records, in `.batchit/validated.json`, a BLAKE3 digest of everything the schema checks depend
on: the config file's bytes, each included file's bytes, batchit's version and schemas, and each
operator's import target, version and parameter schema. A load whose digest matches the record
skips the schema checks (every other check still runs); any difference, or a record that is
missing or unreadable, means they run as before. Only a build writes the record, after the config
has loaded and the plan has succeeded, so a config that fails is never recorded, and `plan` or a
config error changes nothing in `.batchit`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchit import __version__
from batchit.config.structure import PRESET_FILE, RULE, structure_schema
from batchit.config.yaml12 import Marks, YamlPath
from batchit.errors import ConfigError
from batchit.fsutil import atomic_write_text
from batchit.hashing import blake3_hex, canonical_json
from batchit.model import CheckedConfig
from batchit.operators.base import Operator

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

RECORD_FILE = "validated.json"
"""In `.batchit/`: per config file, the digest of the last version a build used and what it covers."""


class SchemaChecks:
    """One load's JSON Schema checks: each schema's validator built once, or no checks at all."""

    def __init__(self, *, vouched: bool) -> None:
        self.vouched = vouched
        """True when an earlier build's record covers this config as it is: every check passes."""
        self._validators: dict[int, tuple[Mapping[str, Any], Validator]] = {}
        self._problems: dict[int, tuple[Mapping[str, Any], str | None]] = {}

    def check(
        self,
        instance: Any,
        schema: Mapping[str, Any],
        marks: Marks,
        *,
        prefix: YamlPath = (),
        rule: str | None = None,
        skip: Callable[[ValidationError], bool] | None = None,
    ) -> None:
        """Raise a located ConfigError for the most useful way `instance` fails `schema`, if any.

        The arguments are those of `schema_errors.check`, which this calls unless the config is
        vouched for; jsonschema is imported then, and only then.
        """
        if self.vouched:
            return
        from batchit.config import schema_errors  # imports jsonschema: see the module docstring

        if id(schema) not in self._validators:
            self._validators[id(schema)] = (schema, schema_errors.validator(schema))
        against = self._validators[id(schema)][1]
        schema_errors.check(instance, against, marks, prefix=prefix, rule=rule, skip=skip)

    def schema_problem(self, schema: Mapping[str, Any]) -> str | None:
        """Why `schema` (an operator's parameter schema) is no valid JSON Schema, or None; None as
        well when the config is vouched for: the record covers each operator's schema."""
        if self.vouched:
            return None
        from batchit.config import schema_errors  # imports jsonschema: see the module docstring

        if id(schema) not in self._problems:
            self._problems[id(schema)] = (schema, schema_errors.schema_problem(schema))
        return self._problems[id(schema)][1]


def checked_config(
    file: str,
    raw: bytes,
    includes: Sequence[tuple[str, bytes]],
    operators: Mapping[str, tuple[str, type[Operator]]],
) -> CheckedConfig:
    """The record of a config that passed its schema checks.

    `raw` is the config file's bytes, `includes` its `include:` entries with their files' bytes,
    and `operators` maps each operator its steps use to its import target and class.
    """
    document = {
        "batchit": __version__,
        "schemas": [structure_schema(), PRESET_FILE, RULE],
        "config": blake3_hex(raw),
        "includes": [[spec, blake3_hex(data)] for spec, data in includes],
        "operators": {
            name: [target, cls.version, cls.params_schema] for name, (target, cls) in operators.items()
        },
    }
    digest = blake3_hex(canonical_json(document).encode("utf-8"))
    return CheckedConfig(file, digest, tuple(spec for spec, _ in includes), tuple(sorted(operators)))


def vouched_for(
    state_dir: Path,
    file: str,
    raw: bytes,
    read_include: Callable[[str], bytes],
    operator: Callable[[str], tuple[str, type[Operator]]],
) -> bool:
    """True when a build recorded that the config `file`, with bytes `raw`, passed as it is now.

    `read_include` returns an included file's bytes and `operator` an operator's import target and
    class; either raising ConfigError or OSError (a file or an operator gone) means no.
    """
    earlier = _read_records(state_dir).get(file)
    if earlier is None:
        return False
    try:
        includes = [(spec, read_include(spec)) for spec in earlier.includes]
        operators = {name: operator(name) for name in earlier.operators}
    except (ConfigError, OSError):
        return False
    return checked_config(file, raw, includes, operators).digest == earlier.digest


def record_checked(state_dir: Path, checked: CheckedConfig) -> None:
    """Remember that `checked.file` passed its schema checks, beside the other config files' records.

    Call it only when `state_dir` exists and the config was used for a build. A record that cannot
    be written costs only the checks next time, so a failure to write is ignored.
    """
    records = _read_records(state_dir)
    records[checked.file] = checked
    document = {
        file: {"digest": r.digest, "includes": list(r.includes), "operators": list(r.operators)}
        for file, r in sorted(records.items())
    }
    with contextlib.suppress(OSError):
        atomic_write_text(state_dir / RECORD_FILE, json.dumps(document, indent=1, sort_keys=True) + "\n")


def _read_records(state_dir: Path) -> dict[str, CheckedConfig]:
    """The recorded configs by file; a missing, unreadable or malformed record counts as none."""
    try:
        document = json.loads((state_dir / RECORD_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    records = {}
    for file, entry in document.items():
        if not isinstance(entry, dict):
            continue
        digest, includes, operators = (entry.get(key) for key in ("digest", "includes", "operators"))
        includes, operators = _strings(includes), _strings(operators)
        if isinstance(digest, str) and includes is not None and operators is not None:
            records[file] = CheckedConfig(file, digest, includes, operators)
    return records


def _strings(value: object) -> tuple[str, ...] | None:
    """A JSON list of strings as a tuple; None for anything else."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None
