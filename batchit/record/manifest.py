"""The run manifest (SPEC section 5): every current output with its hashes, the summary and failures.

The manifest is canonical JSON, so the same state gives the same bytes but for the run id, the times
and the summary. Output entries are serialised straight from the state store's rows, whose `inputs`
are already canonical JSON text, which keeps 100,000 outputs fast.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from batchit import __version__
from batchit.hashing import PLAIN_TEXT, canonical_json, json_text
from batchit.state.rows import Failure, ListedOutput

FORMAT = "batchit-manifest"
FORMAT_VERSION = 1
QUOTED = '"{}"'.format
"""Plain text as a JSON string."""


def new_run_id(now: datetime | None = None) -> str:
    """A run id sortable by start time to the millisecond: `20261129T150102123Z-3f9a1c`."""
    moment = now or datetime.now(UTC)
    return moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def iso_time(moment: datetime) -> str:
    """UTC time with milliseconds, ISO 8601."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RunInfo:
    """The parts of a manifest that describe the run rather than the outputs."""

    run_id: str
    started: datetime
    finished: datetime
    config_hash: str
    status: str
    summary: dict[str, int]
    audit_head: str | None = None


def render_manifest(
    info: RunInfo, outputs: list[ListedOutput], statuses: dict[str, str], failures: list[Failure]
) -> bytes:
    """The canonical manifest bytes; `statuses` maps output paths to what this run did to them."""
    status, quoted = statuses.get, text_quoter(outputs)
    entries = ",".join(
        f'{{"action_key":{quoted(action_key or "")},"blake3":"{blake3}","inputs":{inputs},'
        f'"path":{quoted(path)},"rule":{quoted(rule)},"sha256":"{sha256}","size":{size},'
        f'"status":"{status(path, "unchanged")}"}}'
        for path, rule, action_key, blake3, sha256, size, inputs in outputs
    )
    failure_list = [
        {
            "class": f.error_class,
            "input": f.input,
            "message": f.message,
            "quarantine": f.quarantine,
            "rule": f.rule,
        }
        for f in sorted(failures, key=lambda f: (f.rule, f.input))
    ]
    head: dict[str, Any] = {
        "audit_head": info.audit_head,
        "batchit_version": __version__,
        "config_hash": info.config_hash,
        "failures": failure_list,
        "finished": iso_time(info.finished),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run_id": info.run_id,
        "started": iso_time(info.started),
        "status": info.status,
        "summary": info.summary,
    }
    text = canonical_json(head)
    # "outputs" sorts between "format_version" and "run_id": splice it in at that place.
    cut = text.index(',"run_id":')
    return (text[:cut] + ',"outputs":[' + entries + "]" + text[cut:] + "\n").encode("utf-8")


def text_quoter(outputs: list[ListedOutput]) -> Callable[[str], str]:
    """How to write the outputs' paths, rules and action keys as JSON strings: between quotes as
    they are when none of them needs escaping (checked once for all, the usual case), else each
    through `json_text`."""
    texts = (
        "".join(map(itemgetter(0), outputs)),
        "".join(map(itemgetter(1), outputs)),
        "".join(filter(None, map(itemgetter(2), outputs))),
    )
    return QUOTED if all(PLAIN_TEXT.fullmatch(text) for text in texts) else json_text
