"""Writing a run's record at scale: manifest, signature, provenance, report data and report.

Run: `.venv/bin/python bench/records.py [--outputs 100000] [--repeat 3]`

Builds N synthetic output rows (as the state store holds them) and N job rows in memory, then times
each step `Recorder.write` performs for them, in process: rendering the canonical manifest, hashing
and signing it (DSSE over a one-subject Statement), rendering and signing SLSA provenance, folding
the jobs into the report's data (`run.json`), and rendering `report.html`. Prints a Markdown table of
the median seconds and the sizes written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from batchit.hashing import blake3_hex
from batchit.record.manifest import RunInfo, render_manifest
from batchit.record.provenance import BuildRequest, manifest_statement, provenance_statement
from batchit.record.report import render_report
from batchit.record.rundata import JobRow, run_document
from batchit.record.signing import SigningKey, key_id, sign_envelope
from batchit.state.rows import ListedOutput


def synthetic(count: int) -> tuple[list[ListedOutput], dict[str, str], list[JobRow]]:
    """`count` outputs as the state store returns them, their statuses, and the run's job rows."""
    outputs = []
    rows = []
    for i in range(count):
        path = f"img/{i // 1000:03d}/photo-{i:06d}-640.webp"
        source = f"images/{i // 1000:03d}/photo-{i:06d}.jpg"
        digest = blake3_hex(path.encode())
        inputs = json.dumps([{"blake3": digest, "path": source}], separators=(",", ":"))
        outputs.append(ListedOutput(path, "thumbs", digest, digest, digest, 20_000 + i, inputs))
        steps = (("image.load", 0.004), ("image.resize", 0.003), ("image.save", 0.006), ("write", 0.001))
        rows.append(
            JobRow(f"job{i}", "thumbs", path, source, "built", ("new output",), 0.014, steps, size=20_000)
        )
    return outputs, {o.path: "built" for o in outputs}, rows


def timed(step: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The median wall time of `step` over `repeat` runs, and its last result."""
    times = []
    result: Any = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = step()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    """Time each step of writing a record for a synthetic run and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    outputs, statuses, rows = synthetic(args.outputs)
    now = datetime.now(UTC)
    summary = {"built": args.outputs, "up_to_date": 0, "restored": 0, "failed": 0}
    info = RunInfo("20261129T150102123Z-3f9a1c", now - timedelta(seconds=600), now, "c" * 64, "ok", summary)
    private = Ed25519PrivateKey.generate()
    key = SigningKey(private, key_id(private.public_key()), "bench")
    request = BuildRequest("batchit.yaml", "c" * 64, "_build", (), {"watermark": True})
    results: list[tuple[str, float, int]] = []

    seconds, manifest = timed(lambda: render_manifest(info, outputs, statuses, []), args.repeat)
    results.append(("render manifest.json", seconds, len(manifest)))

    def sign_manifest() -> bytes:
        digest = hashlib.sha256(manifest).hexdigest()
        return sign_envelope(key, manifest_statement(digest, info.run_id, key.key_id, None, provenance=True))

    seconds, signature = timed(sign_manifest, args.repeat)
    results.append(("sha256 + sign manifest.json.sig", seconds, len(signature)))

    def provenance() -> bytes:
        return sign_envelope(key, provenance_statement(info, request, Path(), outputs))

    seconds, signed = timed(provenance, args.repeat)
    results.append(("render + sign provenance.intoto.json", seconds, len(signed)))
    seconds, document = timed(
        lambda: run_document(info, rows, (key.key_id, False), "_build", []), args.repeat
    )
    run_json = json.dumps({**document, "provenance": True}, sort_keys=True).encode()
    results.append(("report data (run.json)", seconds, len(run_json)))
    seconds, html = timed(lambda: render_report({**document, "provenance": True}, []), args.repeat)
    results.append(("render report.html", seconds, len(html.encode())))

    print(f"{args.outputs:,} outputs, median of {args.repeat}\n")
    print("| step | seconds | bytes written |")
    print("| --- | ---: | ---: |")
    for name, value, size in results:
        print(f"| {name} | {value:.3f} | {size:,} |")
    print(f"| **total** | **{sum(r[1] for r in results):.3f}** | {sum(r[2] for r in results):,} |")


if __name__ == "__main__":
    main()
