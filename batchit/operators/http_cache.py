"""`http.enrich`'s response cache: the raw answers of earlier requests, under `.batchit/http/`.

An entry is one file, `.batchit/http/<2 hex>/<64 hex>`, written atomically: a line of JSON (when it
was fetched, the method, the URL, the status and the answer's Content-Type), then the answer's body
as the server sent it. It is named by the BLAKE3 of the method, the URL and the header names with
their values as written in the config, before `${env:NAME}` is read: a secret never enters the name
or the file, and a new token leaves the entry valid. Only answers that were used (a 2xx holding
JSON the step could merge) are kept. An entry younger than the step's `cache_ttl` (any age without
one) answers instead of the service; a damaged one counts as missing. Nothing batchit does removes
the folder (neither `clean` nor `gc`): delete it to fetch everything again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from batchit.fsutil import atomic_write_bytes, cache_entry
from batchit.hashing import blake3_hex, canonical_json
from batchit.model import STATE_DIR

CACHE_FOLDER = "http"
"""The response cache's folder under `.batchit`."""


@dataclass(frozen=True)
class Answer:
    """A response as the cache keeps it."""

    status: int
    content_type: str
    body: bytes
    fetched: float
    """When it was fetched, in seconds since the epoch (a copied checkout keeps the age)."""


def cache_key(method: str, url: str, header_templates: Mapping[str, str]) -> str:
    """The entry name of a request: its method, URL, and header names with unexpanded values."""
    headers = sorted((name.lower(), template) for name, template in header_templates.items())
    return blake3_hex(canonical_json([method, url, headers]).encode("utf-8"))


def entry_path(root: Path, key: str) -> Path:
    """Where the entry of `key` lives in the project at `root`."""
    return cache_entry(root / STATE_DIR / CACHE_FOLDER, key)


def read_entry(path: Path, ttl: float | None, now: float | None = None) -> Answer | None:
    """The answer kept at `path` while it is fresh (younger than `ttl` seconds; None: always);
    None when there is none, it is too old, it says it was fetched later than now (the clock was
    set back: its age is unknown), or it cannot be read."""
    try:
        data = path.read_bytes()
        head, _, body = data.partition(b"\n")
        meta = json.loads(head)
        answer = Answer(int(meta["status"]), str(meta["content_type"]), body, float(meta["fetched"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    age = (time.time() if now is None else now) - answer.fetched
    return answer if ttl is None or 0 <= age < ttl else None  # fetched "in the future": a clock moved


def write_entry(path: Path, method: str, url: str, answer: Answer) -> None:
    """Keep `answer` at `path`, atomically (a reader sees the old entry or the new one, whole)."""
    meta = {
        "fetched": answer.fetched,
        "method": method,
        "url": url,
        "status": answer.status,
        "content_type": answer.content_type,
    }
    head = canonical_json(meta).encode("utf-8")
    atomic_write_bytes(path, head + b"\n" + answer.body)
