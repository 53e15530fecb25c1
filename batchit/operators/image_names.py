"""Image format names a config may write, checked when it loads, without importing Pillow.

`formats:` lists (`image.load`, `validate.image`, `expect.image`) name formats as Pillow does. A name
Pillow never reports (`JPG`, `TIF`) would refuse every input at run time, so the schemas accept only
the names below, in any case, and the config load says so with the file and line instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMATS = (
    "AVIF", "BLP", "BMP", "BUFR", "CUR", "DCX", "DDS", "DIB", "EPS", "FITS", "FLI", "FTEX", "GBR", "GIF",
    "GRIB", "HDF5", "ICNS", "ICO", "IM", "IMT", "IPTC", "JPEG", "JPEG2000", "MCIDAS", "MPEG", "MPO",
    "MSP", "PCD", "PCX", "PIXAR", "PNG", "PPM", "PSD", "QOI", "SGI", "SPIDER", "SUN", "TGA", "TIFF",
    "WEBP", "WMF", "XBM", "XPM", "XVTHUMB",
)  # fmt: skip
"""What Pillow names the formats it opens (`Image.ID`), plus MPO: a JPEG with a second image (a
phone's gain map, a camera's preview), which Pillow opens as JPEG but reports as MPO."""

JPEG_LIKE = frozenset({"JPEG", "MPO"})
"""Formats that are JPEG files: `formats: [JPEG]` accepts both, and both decode at a reduced scale."""

ANIMATIONS = frozenset({"GIF", "PNG", "WEBP", "AVIF", "FLI"})
"""Formats whose frames are an animation (APNG's in PNG, AVIF's image sequences): `animated` applies to
them. Other files of several frames hold pages (TIFF), layers after their composite (PSD) or a
second image (MPO), and their first frame is the image, whatever `animated` says."""


def any_case(word: str) -> str:
    """A regular expression matching `word` in any case, written with character classes only, so
    editors (ECMAScript regexes, no inline flags) read the published schema the same way."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def formats_schema(description: str) -> dict[str, Any]:
    """The JSON Schema of a `formats:` list: Pillow format names, in any case."""
    names = "|".join(any_case(name) for name in FORMATS)
    known = (
        "Pillow's format names, in any case: JPEG (not JPG), PNG, WEBP, GIF, AVIF, TIFF (not TIF), BMP, "
        "...; JPEG covers the MPO variant phones write."
    )
    return {
        "description": f"{description} {known}",
        "type": "array",
        "items": {"type": "string", "pattern": f"^({names})$", "description": known},
        "uniqueItems": True,
    }


def format_accepted(kind: str, formats: Iterable[str]) -> bool:
    """True when a file Pillow reports as `kind` is one of `formats` (none listed: any is)."""
    wanted = {name.upper() for name in formats}
    if not wanted:
        return True
    kind = kind.upper()
    return kind in wanted or (kind in JPEG_LIKE and bool(wanted & JPEG_LIKE))
