"""`data.mask`: named fields of the data redacted or replaced by a keyed hash (SPEC sections 8 and 11).

A field is a dotted path (`user.email`); a `*` segment matches every key of a mapping or every item
of a list at its level (`users.*.email`, `*.password`), and a number matches that item of a list
(`rows.0.name`). A key holding a dot, a star or a backslash is written with a backslash before it
(`headers.content\\.type`, `\\*`). A path that leads nowhere masks nothing: a record without the
field is fine.
`mode: hash` keys BLAKE3 with `BATCHIT_MASK_KEY` from the environment, so a value cannot be found
by hashing guesses without the key, while equal values still hash equal (records stay joinable).
Only an identifier derived from the key (a hash of it) enters the action key: changing the key
rebuilds every job that masks, and the key itself is never written anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from blake3 import blake3

from batchit.hashing import blake3_hex, canonical_json
from batchit.operators.base import InputKind, JobContext, Operator
from batchit.operators.data_formats import require_data

REDACTED = "***"
"""What `mode: redact` writes in place of a field's value, whatever that value was."""

HASH_DIGITS = 32
"""Hex digits kept of a field's hash: 128 bits, collision-free for any realistic data set, half
the width of a full digest in every record."""

MASK_KEY_VARIABLE = "BATCHIT_MASK_KEY"
"""The environment variable holding the secret `mode: hash` is keyed with."""

_KEY_CONTEXT = "batchit 2024 data.mask field hash key"
"""BLAKE3 key-derivation context: turns a secret of any length into the 32-byte key, for this use only."""

Pattern = tuple[str | None, ...]
"""A field path's segments: a key (or a list index, as text), None for `*` (any)."""


def mask_key() -> bytes | None:
    """The 32-byte hash key derived from BATCHIT_MASK_KEY, or None when the variable is unset or empty."""
    secret = os.environ.get(MASK_KEY_VARIABLE)
    if not secret:
        return None
    return blake3(secret.encode("utf-8"), derive_key_context=_KEY_CONTEXT).digest()


def field_hash(value: Any, key: bytes | None) -> str:
    """The hash a masked field gets: BLAKE3 (keyed with `key` when there is one) of the value's
    canonical JSON, so `"a"` and `["a"]` differ and a mapping's key order does not count."""
    data = canonical_json(value).encode("utf-8")
    digest = blake3(data, key=key) if key is not None else blake3(data)
    return str(digest.hexdigest())[:HASH_DIGITS]


def masked(value: Any, patterns: Sequence[Pattern], replace: Callable[[Any], Any]) -> Any:
    """A copy of `value` with every field matched by one of `patterns` replaced by `replace(field)`.

    All patterns are matched in one walk, and a field matched whole is replaced whole: masking
    `user` and `user.email` hashes the original `user`, whatever order the patterns are listed in.
    """
    if any(not pattern for pattern in patterns):
        return replace(value)
    if isinstance(value, dict):
        return {key: _masked_below(item, key, patterns, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked_below(item, str(index), patterns, replace) for index, item in enumerate(value)]
    return value


def _masked_below(value: Any, name: str, patterns: Sequence[Pattern], replace: Callable[[Any], Any]) -> Any:
    """`value` (the entry `name` of a mapping or list) masked by the rest of each pattern matching it."""
    rest = [pattern[1:] for pattern in patterns if pattern[0] is None or pattern[0] == name]
    return masked(value, rest, replace) if rest else value


_SEGMENT = r"(?:[^.\\]|\\[.*\\])+"
"""One segment of a field path: a backslash only before a dot, a star or a backslash."""

_CHECKED_SEGMENT = rf"(?!\*\*(?:\.|$))(?!(?:[^.\\]|\\[.*\\])*\[\d+\](?:\.|$)){_SEGMENT}"
"""A segment, refused when it is a bare `**` or ends in a bare `[n]` (an escaped dot is no end)."""

FIELD_PATH = rf"^{_CHECKED_SEGMENT}(?:\.{_CHECKED_SEGMENT})*$"
"""A dotted field path: no empty segment, no stray backslash, and none of the forms other tools
use that would mask nothing here (a `**` segment, an `items[0]` index), so a mistaken pattern is
refused, not ignored."""


def field_pattern(field: str) -> Pattern:
    """The segments of a field path (FIELD_PATH): split at the dots no backslash escapes, with the
    escapes undone; a bare `*` segment is None, the wildcard, and an escaped one the key `*`."""
    segments = re.findall(_SEGMENT, field)
    return tuple(None if segment == "*" else re.sub(r"\\(.)", r"\1", segment) for segment in segments)


class DataMask(Operator):
    """`data.mask`: the data with the named fields replaced by `***` (`redact`) or a keyed hash (`hash`).

    Without BATCHIT_MASK_KEY the hash is unkeyed BLAKE3: still deterministic, but anyone can hash a
    guessed value (an email address) and compare, so set the key where the output leaves your hands.
    """

    name = "data.mask"
    takes: ClassVar[frozenset[InputKind]] = frozenset()
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Redact or hash named fields of the data.",
        "properties": {
            "fields": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "pattern": FIELD_PATH},
                "description": "Dotted paths of the fields: user.email; * matches every key or list "
                "item at its level (users.*.email, *.password); a number matches that list item "
                "(users.0.password). There is no ** or [0]. A backslash escapes a dot, star or "
                "backslash in a key (headers.content\\.type).",
            },
            "mode": {
                "enum": ["redact", "hash"],
                "default": "redact",
                "description": f"redact: the value becomes {REDACTED!r}; hash: the first {HASH_DIGITS} "
                f"hex digits of BLAKE3 of its canonical JSON, keyed with ${MASK_KEY_VARIABLE}.",
            },
        },
        "required": ["fields"],
        "additionalProperties": False,
    }
    libraries = ("blake3",)
    ends_with = "data.dump"  # its value is data, which only data.dump writes as text

    def library_versions(self) -> dict[str, str]:
        """BLAKE3's version, and an identifier of the hash key (a hash of it; "unset" without one)."""
        versions = super().library_versions()
        key = mask_key()
        versions[MASK_KEY_VARIABLE] = "unset" if key is None else blake3_hex(key)[:16]
        return versions

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """A masked copy of the data; the value passed in is left as it was."""
        require_data(value, self.name)
        patterns = [field_pattern(field) for field in params["fields"]]
        if params.get("mode", "redact") == "hash":
            key = mask_key()
            return masked(value, patterns, lambda field: field_hash(field, key))
        return masked(value, patterns, lambda field: REDACTED)
