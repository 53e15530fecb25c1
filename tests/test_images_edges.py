"""Image inputs and steps at their edges, built through the real `batchit` command: wide grey (16-bit,
32-bit integer, float) reaches 8 bits scaled, never black; a 16-bit colour key stays transparent; a
watermark too large for its picture is drawn smaller, whole, between its margins.

The inputs are drawn in the test, most as two flat halves, a dark one and a bright one, so a
resize keeps the value in the middle of each half and the test reads what 8-bit grey each became.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import NamedTuple

from conftest import Project
from PIL import Image, ImageChops
from test_images_build import RESIZE_RULE

HALVES_RULE = RESIZE_RULE.replace("webp", "png").replace("{width: 64}", "{width: 32}")
"""Each image resized to 32 px wide, saved as PNG (lossless, so the test reads the pixels made)."""


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


def png_rgb16(left: tuple[int, int, int], right: tuple[int, int, int], key: tuple[int, int, int]) -> bytes:
    """A 64x16 16-bit RGB PNG (which Pillow cannot write) of two halves, with a tRNS colour key."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + struct.pack(">3H", *left) * 32 + struct.pack(">3H", *right) * 32
    header = struct.pack(">IIBBBBB", 64, 16, 16, 2, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"tRNS", struct.pack(">3H", *key)),
            chunk(b"IDAT", zlib.compress(row * 16)),
            chunk(b"IEND", b""),
        )
    )


class Halves(NamedTuple):
    name: str
    image: bytes
    mode: str
    expected: tuple[object, object]
    """The built image's pixel in the middle of its left and of its right half."""


SKY, GRASS = (0x4000, 0x8000, 0xC000), (0x2000, 0xC000, 0x2000)
"""Two 16-bit colours: 8-bit (64, 128, 192) and (32, 192, 32)."""

UNUSUAL_PIXELS = [
    Halves("int32-holding-8-bit.tif", halves("I", 64, 192, "TIFF"), "L", (64, 192)),  # convert("I") saves it
    Halves("int32-holding-16-bit.tif", halves("I", 64 * 256, 192 * 256, "TIFF"), "L", (64, 192)),
    Halves("int32-beyond-16-bit.tif", halves("I", 2**20, 2**22, "TIFF"), "L", (63, 255)),
    Halves("float-0-to-1.tif", halves("F", 0.25, 1.0, "TIFF"), "L", (64, 255)),
    Halves("float-hdr-over-1.tif", halves("F", 2.0, 8.0, "TIFF"), "L", (64, 255)),
    Halves("float-nan-no-data.tif", halves("F", float("nan"), 0.5, "TIFF"), "L", (0, 128)),
    Halves("16-bit.png", halves("I;16", 64 * 256, 65535, "PNG"), "L", (64, 255)),
    Halves("16-bit-keyed.png", png_rgb16(SKY, GRASS, key=SKY), "RGBA", ((0, 0, 0, 0), (32, 192, 32, 255))),
]


def test_unusual_pixels_reach_8_bits_as_a_viewer_shows_them(project: Project) -> None:
    """Wide grey is scaled by the range its values are in, never black; a 16-bit colour key is
    transparent (Pillow decodes 16-bit RGB to 8 bits and kept the key in 16, matching nothing)."""
    project.config(HALVES_RULE)
    project.write({f"images/{case.name}": case.image for case in UNUSUAL_PIXELS})
    project.build()
    for case in UNUSUAL_PIXELS:
        with Image.open(project.root / "_build" / f"{case.name.rsplit('.', 1)[0]}.png") as built:
            assert built.mode == case.mode, case.name
            assert (built.getpixel((8, 4)), built.getpixel((24, 4))) == case.expected, case.name


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


def test_animated_error_refuses_an_animation_not_a_tiff_of_several_pages(project: Project) -> None:
    """A scanner's TIFF of two pages is no animation: `animated: error` builds its first page, and
    refuses the GIF of two frames beside it."""
    project.config(HALVES_RULE.replace("image.load: {}", "image.load: {animated: error}"))
    red, green = Image.new("RGB", (64, 16), "red"), Image.new("RGB", (64, 16), "green")
    pages, frames = io.BytesIO(), io.BytesIO()
    red.save(pages, "TIFF", save_all=True, append_images=[green])
    red.save(frames, "GIF", save_all=True, append_images=[green], duration=100)
    project.write({"images/scan.tif": pages.getvalue(), "images/clip.gif": frames.getvalue()})
    project.build(expect=1)
    with Image.open(project.root / "_build" / "scan.png") as built:
        assert built.getpixel((16, 4)) == (255, 0, 0)
    [failure] = project.manifest()["failures"]
    assert failure["input"] == "images/clip.gif"
    assert "images/clip.gif is animated (2 frames)" in str(failure["message"])
