"""in-toto Statements about a run: the one the manifest's signature covers, and SLSA provenance.

Both are in-toto Statement v1 documents (canonical JSON) that `signing.sign_envelope` wraps in DSSE.
The manifest statement names the manifest by its sha256 alone, so the signature stays small however
many outputs the manifest lists. Provenance names every output (in-toto has no `blake3` digest name,
so subjects carry `sha256`), serialised by concatenation from the stored rows, like the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchit import __version__
from batchit.hashing import canonical_json
from batchit.record.manifest import RunInfo, iso_time, text_quoter
from batchit.state.rows import ListedOutput

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
MANIFEST_PREDICATE = "https://batchit.dev/manifest/v1"
"""What the manifest signature's statement asserts: this manifest is run RUN_ID's record."""
SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://batchit.dev/build/v1"
BUILDER_ID = "https://batchit.dev/builder/local"
MANIFEST_SUBJECT = "manifest.json"
"""The manifest's name in its signature's Statement: the file name of a run's manifest."""
PROVENANCE = "provenance.intoto.json"
"""The file beside a run's manifest that holds its signed provenance."""


@dataclass(frozen=True)
class BuildRequest:
    """What the user asked the build for: the SLSA buildDefinition's external parameters."""

    config_file: str
    """The config file as named in messages (relative to the project root when inside it)."""
    config_hash: str
    """BLAKE3 of the config file and every included preset, in load order."""
    out: str
    rules: tuple[str, ...]
    """The rules named on the command line; empty for a full build."""
    flags: dict[str, Any]


def manifest_statement(
    manifest_sha256: str, run_id: str, key_id: str, audit_head: str | None, *, provenance: bool
) -> bytes:
    """The Statement the manifest's signature covers: one subject, `manifest.json` and its sha256.

    Its predicate also says whether the run wrote provenance, so `verify` knows from a signed
    document, not from the unsigned `run.json`, whether a missing provenance file was removed.
    """
    statement = {
        "_type": STATEMENT_TYPE,
        "predicate": {"audit_head": audit_head, "key_id": key_id, "provenance": provenance, "run_id": run_id},
        "predicateType": MANIFEST_PREDICATE,
        "subject": [{"digest": {"sha256": manifest_sha256}, "name": MANIFEST_SUBJECT}],
    }
    return canonical_json(statement).encode("utf-8")


def provenance_statement(
    info: RunInfo, request: BuildRequest, root: Path, outputs: list[ListedOutput]
) -> bytes:
    """A SLSA Provenance v1 Statement whose subjects are the outputs (paths relative to `out`)."""
    config_path = root / request.config_file
    try:
        config_digest = {"sha256": hashlib.sha256(config_path.read_bytes()).hexdigest()}
    except OSError:
        config_digest = {}
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "config": request.config_file,
                "flags": request.flags,
                "out": request.out,
                "rules": list(request.rules) or ["*"],
            },
            "internalParameters": {"config_hash": request.config_hash},
            "resolvedDependencies": [
                {
                    "annotations": {"blake3_with_presets": request.config_hash},
                    "digest": config_digest,
                    "name": request.config_file,
                }
            ],
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"batchit": __version__}},
            "metadata": {
                "finishedOn": iso_time(info.finished),
                "invocationId": info.run_id,
                "startedOn": iso_time(info.started),
            },
        },
    }
    quoted = text_quoter(outputs)
    subjects = ",".join(
        f'{{"digest":{{"sha256":"{output.sha256}"}},"name":{quoted(output.path)}}}' for output in outputs
    )
    return (
        f'{{"_type":"{STATEMENT_TYPE}","predicate":{canonical_json(predicate)},'
        f'"predicateType":"{SLSA_PREDICATE}","subject":[{subjects}]}}'
    ).encode()
