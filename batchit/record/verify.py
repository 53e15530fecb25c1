"""`batchit verify`: check a manifest's signature, its run's provenance, then re-hash every output.

The signature is a DSSE envelope over an in-toto Statement naming the manifest's sha256, so the
manifest's bytes are checked first. A run's `manifest.json` has its run's provenance beside it (the
copy in `out` has none: only the manifest and its signature are copied there): its envelope must
verify with a trusted key, and its Statement must be this run's SLSA provenance naming exactly the
manifest's outputs with the manifest's sha256 digests. That compares the two documents only: the
files' bytes are checked against the manifest once, by BLAKE3, which the signed manifest ties to
the sha256 it lists. The outputs it lists are re-hashed either way, so that one run of `verify`
reports everything that is wrong; with a signature problem, though, the result fails whatever they
hold, since nothing vouches for that list. Outputs are hashed in a thread pool (BLAKE3 releases the
GIL while it hashes), a size check first so a file of the wrong length is reported without reading it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from batchit.errors import PermanentError
from batchit.fsutil import is_relative_clean, kind_of, not_a_file
from batchit.hashing import hash_file
from batchit.model import MANIFEST_COPY
from batchit.record.provenance import (
    MANIFEST_PREDICATE,
    MANIFEST_SUBJECT,
    PROVENANCE,
    SLSA_PREDICATE,
    STATEMENT_TYPE,
)
from batchit.record.rundata import RUN_FILE
from batchit.record.runs import read_json_object
from batchit.record.signing import BadSignature, TrustedKey, open_envelope


@dataclass(frozen=True)
class Problem:
    """One thing that did not verify: `kind` is signature, manifest, provenance, missing or modified."""

    kind: str
    detail: str
    path: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The problem as a JSON object."""
        return {"kind": self.kind, "path": self.path, "detail": self.detail}


@dataclass
class Verification:
    """What `verify` found about one manifest."""

    manifest: Path
    base: Path
    """The folder the manifest's output paths resolve against."""
    run_id: str | None = None
    key_id: str | None = None
    """The trusted key whose signature verified, if one did."""
    outputs: int = 0
    provenance: Path | None = None
    """The run's provenance, when one belongs to the manifest (checked, or missing)."""
    signed_provenance: bool | None = None
    """Whether the manifest's signed Statement says the run wrote provenance (None: it does not
    say, as the records of older batchit versions do not)."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when the signature and every output hold, else 1 (SPEC section 4)."""
        return 1 if self.problems else 0

    def as_json(self) -> dict[str, Any]:
        """The verification as a JSON object."""
        return {
            "ok": not self.problems,
            "manifest": str(self.manifest),
            "base": str(self.base),
            "run_id": self.run_id,
            "key_id": self.key_id,
            "outputs": self.outputs,
            "provenance": None if self.provenance is None else str(self.provenance),
            "problems": [p.as_json() for p in self.problems],
        }


def verify_manifest(manifest: Path, base: Path, trusted: list[TrustedKey], workers: int = 0) -> Verification:
    """Check `manifest` (and `manifest.sig` beside it) against `trusted` keys and the files under `base`."""
    result = Verification(manifest, base)
    data = manifest.read_bytes()
    _check_signature(result, data, Path(f"{manifest}.sig"), trusted)
    try:
        document = json.loads(data)
        entries = document["outputs"]
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise TypeError("its outputs are not a list of objects")
        result.run_id = document.get("run_id")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # nested past Python's limit too
        result.problems.append(Problem("manifest", f"{manifest} is not a batchit manifest ({exc})"))
        return result
    result.outputs = len(entries)
    result.provenance = provenance_of(manifest)
    if result.provenance is not None:
        _check_provenance(result, result.provenance, entries, trusted)
    threads = workers or min(32, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for problem in pool.map(lambda entry: _check_output(base, entry), entries):
            if problem is not None:
                result.problems.append(problem)
    return result


def _not_a_file(result: Verification, path: Path, kind: str) -> bool:
    """True, with a `kind` problem added, when something else than a file stands at `path`: reading
    a FIFO would block forever."""
    found = not_a_file(path)
    if found is not None:
        result.problems.append(Problem(kind, f"{path} is {found}, not a {kind} file"))
    return found is not None


def _check_signature(result: Verification, data: bytes, signature: Path, trusted: list[TrustedKey]) -> None:
    if _not_a_file(result, signature, "signature"):
        return
    try:
        envelope = signature.read_bytes()
    except FileNotFoundError:
        result.problems.append(Problem("signature", f"no signature: {signature} is missing"))
        return
    try:
        payload, result.key_id = open_envelope(envelope, trusted)
    except BadSignature as exc:
        result.problems.append(Problem("signature", f"{signature}: {exc}"))
        return
    digest = hashlib.sha256(data).hexdigest()
    try:
        statement = json.loads(payload)
        subjects = statement["subject"]
        signed = subjects[0]["digest"]["sha256"]
        kind, predicate, name = statement["_type"], statement["predicateType"], subjects[0]["name"]
        claims = statement.get("predicate")
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        result.problems.append(
            Problem("signature", f"the signed payload is not an in-toto Statement ({exc})")
        )
        return
    # The same key signs the provenance, whose subjects are the outputs: only a manifest's own
    # Statement (its predicate type, one subject) vouches for a manifest.
    if (
        kind != STATEMENT_TYPE
        or predicate != MANIFEST_PREDICATE
        or len(subjects) != 1
        or name != MANIFEST_SUBJECT
    ):
        result.problems.append(
            Problem("signature", f"the signed Statement ({predicate}) is not a manifest's signature")
        )
        return
    if isinstance(claims, dict) and isinstance(claims.get("provenance"), bool):
        result.signed_provenance = claims["provenance"]
    if signed != digest:
        result.problems.append(
            Problem(
                "manifest",
                f"the manifest was modified after it was signed: its sha256 is {digest}, "
                f"the signature covers {signed}",
                result.manifest.name,
            )
        )


def provenance_of(manifest: Path) -> Path | None:
    """The provenance that belongs to `manifest`, None when none does.

    A run writes `provenance.intoto.json` beside its `manifest.json`; the copy of the manifest in
    `out` (`batchit-manifest.json`) has none beside it, since a run copies only the manifest and its
    signature there (SPEC section 5), so a copied `out` verifies alone as before.
    """
    if manifest.name == MANIFEST_COPY:
        return None
    return manifest.with_name(PROVENANCE)


def _check_provenance(
    result: Verification, path: Path, entries: list[dict[str, Any]], trusted: list[TrustedKey]
) -> None:
    """Add a problem for each way the provenance at `path` fails to vouch for the manifest's outputs."""
    if _not_a_file(result, path, "provenance"):
        return
    try:
        envelope = path.read_bytes()
    except FileNotFoundError:
        if result.signed_provenance:
            result.problems.append(
                Problem(
                    "provenance", f"{path} is missing, though the manifest's signature says the run wrote one"
                )
            )
        elif result.signed_provenance is None and _run_wrote_provenance(path.parent):
            result.problems.append(
                Problem("provenance", f"{path} is missing, though the run's {RUN_FILE} says it wrote one")
            )
        else:
            result.provenance = None  # `provenance: false`, or no run record: nothing belongs here
        return
    except OSError as exc:
        result.problems.append(Problem("provenance", f"{path} cannot be read: {exc.strerror or exc}"))
        return
    try:
        payload, _ = open_envelope(envelope, trusted)
    except BadSignature as exc:
        result.problems.append(Problem("provenance", f"{path}: {exc}"))
        return
    try:
        invocation, subjects = _provenance_claims(payload)
    except ValueError as exc:
        result.problems.append(Problem("provenance", f"{path}: {exc}"))
        return
    if invocation != result.run_id:
        result.problems.append(
            Problem("provenance", f"{path} is run {invocation}'s provenance, not run {result.run_id}'s")
        )
    result.problems.extend(_subject_problems(subjects, entries))


def _provenance_claims(payload: bytes) -> tuple[Any, list[tuple[str, str]]]:
    """The run id and the (name, sha256) subjects a signed SLSA provenance Statement states;
    ValueError says why the payload is not one."""
    try:
        statement = json.loads(payload)
        kind, predicate = statement["_type"], statement["predicateType"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # nested past Python's limit too
        raise ValueError(f"the signed payload is not an in-toto Statement ({exc})") from exc
    if kind != STATEMENT_TYPE or predicate != SLSA_PREDICATE:
        raise ValueError(f"the signed Statement ({predicate}) is not SLSA provenance")
    try:
        invocation = statement["predicate"]["runDetails"]["metadata"]["invocationId"]
        subjects = [(subject["name"], subject["digest"]["sha256"]) for subject in statement["subject"]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the signed SLSA provenance lacks its run id or its subjects ({exc})") from exc
    if not all(isinstance(name, str) and isinstance(digest, str) for name, digest in subjects):
        raise ValueError("the signed SLSA provenance has a subject whose name or sha256 is no string")
    return invocation, subjects


def _subject_problems(subjects: list[tuple[str, str]], entries: list[dict[str, Any]]) -> list[Problem]:
    """The differences between the provenance's subjects and the manifest's outputs: each must name
    the other's paths once, with the same sha256."""
    # A run writes both from one list of outputs, in one order: the usual case is compared at C speed.
    with contextlib.suppress(KeyError):
        if subjects == list(map(itemgetter("path", "sha256"), entries)):
            return []
    listed = {str(entry.get("path", "")): entry.get("sha256") for entry in entries}
    named: set[str] = set()
    problems = []
    for name, digest in subjects:
        if name in named:
            problems.append(Problem("provenance", "the provenance names this output twice", name))
        elif name not in listed:
            problems.append(Problem("provenance", "the provenance names it; the manifest does not", name))
        elif digest != listed[name]:
            problems.append(
                Problem(
                    "provenance",
                    f"the provenance's sha256 is {digest[:16]}..., the manifest says {listed[name]}",
                    name,
                )
            )
        named.add(name)
    for path in listed:  # in the manifest's order, each path once
        if path not in named:
            problems.append(Problem("provenance", "the manifest lists it; the provenance does not", path))
    return problems


def _run_wrote_provenance(run_dir: Path) -> bool:
    """Whether the run recorded in `run_dir` says it wrote provenance (its `run.json`, for the
    records of batchit versions whose manifest signature does not say); False when there is no
    readable run record."""
    document = read_json_object(run_dir / RUN_FILE)
    return document is not None and document.get("provenance") is True


def _check_output(base: Path, entry: dict[str, Any]) -> Problem | None:
    path = str(entry.get("path", ""))
    if "\0" in path:
        return Problem("manifest", f"output path {path!r} holds a NUL byte, which no file name can", path)
    if not is_relative_clean(path):
        return Problem("manifest", f"output path {path!r} leaves the output folder", path)
    target = base / path
    try:
        info = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):  # NotADirectory: a file stands where a folder was
        return Problem("missing", "missing", path)
    except OSError as exc:  # a permission, a symlink loop, a name too long: a finding, not a crash
        return Problem("modified", f"cannot be read: {exc.strerror or exc}", path)
    kind = kind_of(info.st_mode)
    if kind is not None:
        return Problem("modified", f"{kind} stands there, not the file", path)
    size = info.st_size
    if size != entry.get("size"):
        return Problem("modified", f"modified: {size} bytes, the manifest says {entry.get('size')}", path)
    try:
        digest = hash_file(target, size)
    except (OSError, PermanentError) as exc:  # unreadable, or changed while read: a finding, not a crash
        return Problem("modified", f"cannot be read: {exc}", path)
    if digest != entry.get("blake3"):
        return Problem(
            "modified", f"modified: blake3 {digest[:16]}..., the manifest says {entry.get('blake3')}", path
        )
    return None
