"""`batchit reconcile`: the outputs the sources call for now vs the last manifest vs the files in `out`.

Three sources of truth, three kinds of difference: an output that should be there and is not
(missing), a file no rule produces (orphan; batchit's own manifest copies excepted), and a file whose
content is not what the manifest recorded (modified). Outputs with identical content are listed as
information. Only files that can differ are hashed: the manifest's outputs, and files that share
their size with another (the only candidates for duplicated content).
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchit.errors import PermanentError
from batchit.hashing import hash_file
from batchit.model import RESERVED_OUTPUTS


@dataclass(frozen=True)
class Finding:
    """One output path and what is wrong with it."""

    path: str
    detail: str

    def as_json(self) -> dict[str, str]:
        """The finding as a JSON object."""
        return {"path": self.path, "detail": self.detail}


@dataclass
class Reconciliation:
    """What `reconcile` found; paths are relative to `out`."""

    manifest_run: str | None
    missing: list[Finding] = field(default_factory=list)
    orphans: list[Finding] = field(default_factory=list)
    modified: list[Finding] = field(default_factory=list)
    duplicates: list[tuple[str, list[str]]] = field(default_factory=list)
    """(blake3, paths) of content found at more than one output path: information only."""

    @property
    def exit_code(self) -> int:
        """1 when an output is missing, orphaned or modified; duplicates alone are fine (0)."""
        return 1 if self.missing or self.orphans or self.modified else 0

    def as_json(self) -> dict[str, Any]:
        """The reconciliation as a JSON object."""
        return {
            "ok": not self.exit_code,
            "manifest_run": self.manifest_run,
            "missing": [f.as_json() for f in self.missing],
            "orphans": [f.as_json() for f in self.orphans],
            "modified": [f.as_json() for f in self.modified],
            "duplicates": [{"blake3": digest, "paths": paths} for digest, paths in self.duplicates],
        }


def reconcile(
    out_dir: Path, expected: set[str], manifest: dict[str, Any] | None, workers: int = 0
) -> Reconciliation:
    """Compare `expected` (outputs the current jobs produce), the manifest's outputs and `out_dir`."""
    recorded = {str(e["path"]): e for e in manifest["outputs"]} if manifest else {}
    found = _files(out_dir)
    result = Reconciliation(str(manifest["run_id"]) if manifest else None)
    for path in sorted((expected | set(recorded)) - set(found)):
        if path in expected:
            listed = "listed in the last manifest" if path in recorded else "not built yet"
            result.missing.append(Finding(path, f"a rule produces it, but it is not in out ({listed})"))
        else:
            result.missing.append(Finding(path, "listed in the last manifest, but no rule produces it now"))
    for path in sorted(set(found) - expected):
        note = (
            "in the last manifest, but no rule produces it now" if path in recorded else "no rule produces it"
        )
        result.orphans.append(Finding(path, note))
    by_size: dict[int, list[str]] = defaultdict(list)
    for path, size in found.items():
        by_size[size].append(path)
    wanted = [p for p, size in found.items() if p in recorded or len(by_size[size]) > 1]
    threads = workers or min(32, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        hashes = dict(zip(wanted, pool.map(lambda p: _hash(out_dir / p), wanted), strict=True))
    for path in sorted(set(found) & set(recorded)):
        entry, digest = recorded[path], hashes[path]
        if digest != entry.get("blake3"):
            result.modified.append(
                Finding(path, f"its content differs from the manifest's ({_short(digest)})")
            )
    by_hash: dict[str, list[str]] = defaultdict(list)
    for path, digest in hashes.items():
        if digest is not None and len(by_size[found[path]]) > 1:
            by_hash[digest].append(path)
    result.duplicates = sorted((d, sorted(ps)) for d, ps in by_hash.items() if len(ps) > 1)
    return result


def _files(out_dir: Path) -> dict[str, int]:
    """Every file under `out_dir` but batchit's manifest copies: relative path -> size."""
    found: dict[str, int] = {}
    for directory, _, names in os.walk(out_dir):
        for name in names:
            full = Path(directory, name)
            rel = full.relative_to(out_dir).as_posix()
            if rel not in RESERVED_OUTPUTS:
                found[rel] = full.lstat().st_size
    return found


def _hash(path: Path) -> str | None:
    try:
        return hash_file(path)
    except (OSError, PermanentError):
        return None


def _short(digest: str | None) -> str:
    return "unreadable" if digest is None else f"blake3 {digest[:16]}..."
