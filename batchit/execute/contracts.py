"""Pre-flight checks on inputs (`validate:`) and contracts on outputs (`expect:`), SPEC sections 2 and 6.

Both raise PermanentError: retrying cannot make a too-large input smaller, and an output that breaks
its contract is never renamed into place, so the previous output stays.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchit.errors import PermanentError
from batchit.hashing import blake3_hex


def check_input(validate: dict[str, Any] | None, paths: Sequence[Path], root: Path) -> None:
    """Apply a rule's `validate:` limits and checksums before anything decodes the input (an image's
    header is read for `validate.image`, never its pixels)."""
    if not validate:
        return
    listed = _checksums(root / validate["checksums"]) if "checksums" in validate else None
    for path in paths:
        if listed is not None:
            _check_listed(path, listed, root / validate["checksums"])
        size = path.stat().st_size
        if "max_size" in validate and size > validate["max_size"]:
            raise PermanentError(
                f"{path.name} is {size} bytes, over validate.max_size {validate['max_size']}"
            )
        if "min_size" in validate and size < validate["min_size"]:
            raise PermanentError(
                f"{path.name} is {size} bytes, under validate.min_size {validate['min_size']}"
            )
        allowed = validate.get("extensions")
        if allowed and path.suffix.lstrip(".").lower() not in {e.lstrip(".").lower() for e in allowed}:
            raise PermanentError(f"{path.name}: extension not in validate.extensions {allowed}")
        if "image" in validate:
            _check_input_image(validate["image"], path, root)


def _check_input_image(limits: dict[str, Any], path: Path, root: Path) -> None:
    """`validate.image` (formats, max_pixels) from the input's header, whatever the rule's steps are:
    a rule with no image.load, or one a `when:` switches off, is guarded all the same. A step's
    own looser limits cannot undo it; its tighter ones still apply when it runs."""
    from batchit.operators.image import check_image_file  # Pillow, only for rules that check images

    try:
        source = path.relative_to(root).as_posix()
    except ValueError:
        source = str(path)
    check_image_file(path, source, limits)


def _checksums(listing: Path) -> dict[str, str]:
    """A SHA256SUMS or b3sum file as {absolute path: hex digest}; paths are relative to its folder."""
    stat = listing.stat()
    return _parse_checksums(str(listing), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _parse_checksums(listing: str, size: int, mtime_ns: int) -> dict[str, str]:
    base = Path(listing).parent
    found: dict[str, str] = {}
    for line in Path(listing).read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition(" ")
        if digest and name:
            found[str((base / name.strip().lstrip("*")).resolve())] = digest.lower()
    return found


def _check_listed(path: Path, listed: dict[str, str], listing: Path) -> None:
    """The input's SHA-256 or BLAKE3 must equal its line in the checksums file (both formats are read)."""
    expected = listed.get(str(path.resolve()))
    if expected is None:
        raise PermanentError(f"{path.name} is not listed in {listing.name} (validate.checksums)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected and blake3_hex(data) != expected:
        raise PermanentError(f"{path.name} does not match its checksum in {listing.name}")


def check_contracts(expect: dict[str, Any] | None, path: Path, size: int, root: Path) -> None:
    """Check a finished (not yet renamed) output against the rule's `expect:` contracts."""
    if not expect:
        return
    if "max_size" in expect and size > expect["max_size"]:
        raise PermanentError(f"output is {size} bytes, over expect.max_size {expect['max_size']}")
    if "min_size" in expect and size < expect["min_size"]:
        raise PermanentError(f"output is {size} bytes, under expect.min_size {expect['min_size']}")
    if "contains" in expect or "not_contains" in expect:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for needle in _strings(expect.get("contains")):
            if needle not in text:
                raise PermanentError(f"output does not contain {needle!r} (expect.contains)")
        for needle in _strings(expect.get("not_contains")):
            if needle in text:
                raise PermanentError(f"output contains {needle!r} (expect.not_contains)")
    if "image" in expect:
        _check_image(expect["image"], path)
    if "schema" in expect:
        _check_schema(root / expect["schema"], path)


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _check_image(rules: dict[str, Any], path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height, kind = image.width, image.height, image.format or ""
    except (UnidentifiedImageError, OSError) as exc:
        raise PermanentError(f"output is not a readable image: {exc}") from exc
    if "max_width" in rules and width > rules["max_width"]:
        raise PermanentError(f"output is {width} px wide, over expect.image.max_width {rules['max_width']}")
    if "max_height" in rules and height > rules["max_height"]:
        raise PermanentError(
            f"output is {height} px high, over expect.image.max_height {rules['max_height']}"
        )
    formats = [f.upper() for f in rules.get("formats", [])]
    if formats and kind.upper() not in formats:
        raise PermanentError(f"output format {kind} is not one of expect.image.formats {formats}")


def _check_schema(schema_path: Path, path: Path) -> None:
    import jsonschema

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    try:
        document = json.loads(path.read_bytes())
    except ValueError as exc:
        raise PermanentError(f"output is not JSON, so expect.schema cannot hold: {exc}") from exc
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise PermanentError(f"output breaks expect.schema at {where}: {error.message}")
