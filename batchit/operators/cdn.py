"""`cdn.manifest`: the map from each source file to the outputs made from it, for a CDN upload or a page.

It is an aggregate over another rule's outputs (`inputs: {rule: thumbs}`, `aggregate: true`). The
engine tells it which job produced each input (`JobContext.sources`): that job's own input is the
source, and its matrix values (`width`, ...) describe the variant.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import quote

from batchit.errors import PermanentError
from batchit.hashing import hash_file
from batchit.operators.base import JSON_INDENT, InputFile, JobContext, Operator

FIXED_FIELDS = ("path", "blake3", "size", "url")


class CdnManifest(Operator):
    """`cdn.manifest`: JSON `{source: [{path, blake3, size, url?, <matrix values>}, ...]}`.

    `path` is relative to `out` (what a CDN serves), `blake3` and `size` describe the bytes, and the
    upstream job's matrix values (such as `width`) are added beside them. Sources and variants are
    sorted, so the same outputs give the same bytes. An input no other rule produced is its own source.
    The sources it reports are recorded as read, so moving one makes the manifest stale.
    """

    name = "cdn.manifest"
    version = "3"  # 2: `url` percent-encoded; 3: base_url is a folder (its slash added)
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Aggregate: a JSON map from each source path to its outputs and their matrix values.",
        "properties": {
            "base_url": {
                "type": "string",
                "description": "The URL of the folder `out` is served from, which makes each "
                "output's `url` (https://cdn.example.com or https://example.com/assets: a missing "
                'trailing slash is added; "" leaves `url` relative to out); without it no `url` is '
                "written.",
            },
            "indent": JSON_INDENT,
        },
        "additionalProperties": False,
    }
    path_aware = True

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The manifest's JSON text."""
        files = value if isinstance(value, list) else [value]
        if not all(isinstance(item, InputFile) for item in files):
            raise PermanentError(
                f"step {self.name} takes an aggregate's input files, not a transformed value"
            )
        prefix = f"{ctx.out}/"
        by_source: dict[str, list[dict[str, Any]]] = {}
        for item in files:
            origin = ctx.sources.get(item.path)
            source = origin.inputs[0] if origin is not None and len(origin.inputs) == 1 else item.path
            if origin is not None:
                ctx.note_read(source)
            matrix = dict(origin.matrix) if origin is not None else {}
            clash = sorted(set(matrix) & set(FIXED_FIELDS))
            if clash:
                raise PermanentError(
                    f"matrix key {clash[0]!r} of rule {origin.rule if origin else '?'} clashes with the "
                    f"manifest's own field of that name",
                    hint="rename the matrix key",
                )
            path = item.path[len(prefix) :] if item.path.startswith(prefix) else item.path
            entry: dict[str, Any] = {**matrix, "path": path, "blake3": hash_file(item.absolute)}
            entry["size"] = item.absolute.stat().st_size
            if "base_url" in params:
                entry["url"] = _folder(params["base_url"]) + quote(path)
            by_source.setdefault(source, []).append(entry)
        for variants in by_source.values():
            variants.sort(key=_variant_order)
        indent = params.get("indent", 2) or None
        separators = (",", ": ") if indent else (",", ":")
        document = dict(sorted(by_source.items()))
        return (
            json.dumps(document, indent=indent, sort_keys=True, ensure_ascii=False, separators=separators)
            + "\n"
        )


def _variant_order(entry: dict[str, Any]) -> tuple[Any, ...]:
    """Variants in order of their numeric matrix values (small to large), then by path."""
    numbers = tuple(
        v for k, v in sorted(entry.items()) if k not in FIXED_FIELDS and isinstance(v, int | float)
    )
    return (numbers, entry["path"])


def _folder(base_url: str) -> str:
    """`base_url` ending in a slash (but for "", a `url` relative to out): written without one
    (https://cdn.example.com), the output's path would be glued onto the host or folder name."""
    return base_url if not base_url or base_url.endswith("/") else base_url + "/"
