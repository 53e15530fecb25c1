"""Operators on whole files, blind to their content: `file.copy`."""

from __future__ import annotations

from typing import Any, ClassVar

from batchit.operators.base import InputFile, InputKind, JobContext, Operator, as_bytes


class FileCopy(Operator):
    """`file.copy`: the input's bytes, unchanged.

    An `InputFile` is passed on as is, so the writer streams the copy instead of holding a large file
    in memory; a value from an earlier step is passed on as bytes. It never looks at paths, so a
    renamed input with the same content keeps its action key and is restored from the cache.
    """

    name = "file.copy"
    version = "1"
    cheap = True
    takes: ClassVar[frozenset[InputKind]] = frozenset({"file"})
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Copy the input's bytes unchanged. Takes no parameters.",
        "properties": {},
        "additionalProperties": False,
    }

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The input file itself (for the writer to copy), or the previous step's value as bytes."""
        return value if isinstance(value, InputFile) else as_bytes(value, self.name)
