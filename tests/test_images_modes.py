"""Images in the modes scanners, scientific cameras and image libraries write, built through the real
`batchit` command: wide grey (16-bit, 32-bit integer, float) reaches 8 bits scaled, never black.

Each input is drawn in the test as two flat halves, a dark one and a bright one, so a resize keeps
the value in the middle of each half and the test reads what 8-bit grey each became.
"""

from __future__ import annotations

import io
from typing import NamedTuple

from conftest import Project
from PIL import Image

HALVES_RULE = """\
version: 1
out: _build
rules:
  thumbs:
    inputs: ["images/*"]
    output: "{stem}.png"
    steps:
      - image.load: {}
      - image.resize: {width: 32}
      - image.save: {format: png}
"""


def halves(mode: str, left: float, right: float, fmt: str) -> bytes:
    """A 64x16 image in `mode`, `left` in its left half and `right` in its right, saved as `fmt`."""
    image = Image.new(mode, (64, 16), left)
    image.paste(right, (32, 0, 64, 16))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


class Grey(NamedTuple):
    name: str
    image: bytes
    expected: tuple[int, int]
    """The 8-bit grey of the left and the right half."""


WIDE_GREYS = [
    Grey("int32-holding-8-bit.tif", halves("I", 64, 192, "TIFF"), (64, 192)),  # what convert("I") saves
    Grey("int32-holding-16-bit.tif", halves("I", 64 * 256, 192 * 256, "TIFF"), (64, 192)),
    Grey("int32-beyond-16-bit.tif", halves("I", 2**20, 2**22, "TIFF"), (63, 255)),
    Grey("float-0-to-1.tif", halves("F", 0.25, 1.0, "TIFF"), (64, 255)),
    Grey("float-hdr-over-1.tif", halves("F", 2.0, 8.0, "TIFF"), (64, 255)),
    Grey("float-nan-no-data.tif", halves("F", float("nan"), 0.5, "TIFF"), (0, 128)),
    Grey("16-bit.png", halves("I;16", 64 * 256, 65535, "PNG"), (64, 255)),
]


def test_wide_grey_is_scaled_to_8_bits_by_the_range_its_values_are_in(project: Project) -> None:
    project.config(HALVES_RULE)
    project.write({f"images/{grey.name}": grey.image for grey in WIDE_GREYS})
    project.build()
    for grey in WIDE_GREYS:
        with Image.open(project.root / "_build" / f"{grey.name.rsplit('.', 1)[0]}.png") as built:
            assert built.mode == "L", grey.name
            assert (built.getpixel((8, 4)), built.getpixel((24, 4))) == grey.expected, grey.name
