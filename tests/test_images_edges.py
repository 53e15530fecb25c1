"""Image inputs and steps at their edges, built through the real `batchit` command: wide grey (16-bit,
32-bit integer, float) reaches 8 bits scaled, never black; a watermark too large for its picture
is drawn smaller, whole, between its margins.

The inputs are drawn in the test, most as two flat halves, a dark one and a bright one, so a
resize keeps the value in the middle of each half and the test reads what 8-bit grey each became.
"""

from __future__ import annotations

import io
from typing import NamedTuple

from conftest import Project
from PIL import Image, ImageChops

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


def encoded(image: Image.Image, fmt: str) -> bytes:
    """`image` saved as `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def halves(mode: str, left: float, right: float, fmt: str) -> bytes:
    """A 64x16 image in `mode`, `left` in its left half and `right` in its right, saved as `fmt`."""
    image = Image.new(mode, (64, 16), left)
    image.paste(right, (32, 0, 64, 16))
    return encoded(image, fmt)


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


MARK_RULES = """\
version: 1
out: _build
rules:
  logo:
    inputs: ["images/*"]
    output: "logo/{stem}.png"
    steps:
      - image.load: {}
      - image.watermark: {image: logo.png, opacity: 1}
      - image.save: {format: png}
  text:
    inputs: ["images/*"]
    output: "text/{stem}.png"
    steps:
      - image.load: {}
      - image.watermark: {text: MMMMMMMM, size: 300, opacity: 1}
      - image.save: {format: png}
"""


def test_a_watermark_larger_than_its_picture_shows_whole_within_the_margin(project: Project) -> None:
    """Bottom-right, 16 px from the edges (the defaults), on a 200x100 picture: a 150x150 logo and a
    300 px text are drawn smaller, to fit the 184x84 the margins leave, not pushed past its top and
    left edges."""
    project.config(MARK_RULES)
    black, logo = Image.new("RGB", (200, 100)), Image.new("RGBA", (150, 150), "white")
    project.write({"images/a.png": encoded(black, "PNG"), "logo.png": encoded(logo, "PNG")})
    project.build()
    inked = {}
    for mark in ("logo", "text"):
        with Image.open(project.root / "_build" / mark / "a.png") as marked:
            inked[mark] = ImageChops.difference(marked.convert("RGB"), black).getbbox()
    assert inked["logo"] == (100, 0, 184, 84)
    box = inked["text"]
    assert box is not None and box[0] > 0 and box[2] <= 184 and box[3] <= 84, box
