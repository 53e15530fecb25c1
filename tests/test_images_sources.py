"""Image inputs as cameras, phones and editors write them, through the image operators (SPEC section 11).

Each test draws an input the way a real source writes it (an XMP orientation beside EXIF's, a PNG
colour key, a CMYK profile, damaged EXIF, a phone's MPO, 16-bit grey PGM) and checks what
`image.load` ... `image.save` make of it. The operators run as a worker runs them, as in
test_images.py, whose helpers these tests share.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import pytest
from PIL import ExifTags, Image, ImageCms, ImageDraw, ImageOps, PngImagePlugin
from test_images import ctx, decoded, pipeline, write_image

from batchit.operators.base import InputFile
from batchit.operators.image import ImageLoad, Picture
from batchit.operators.image_names import FORMATS
from batchit.operators.image_resize import ImageResize
from batchit.operators.image_save import ImageSave, ImageStripMetadata

RDF = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" %s</rdf:Description></rdf:RDF></x:xmpmeta>'
)
"""An XMP packet whose description holds `%s` (an attribute or an element, and the closing `>`)."""


@pytest.mark.parametrize(
    "description",
    [b'tiff:Orientation="6">', b"><tiff:Orientation>6</tiff:Orientation>"],
    ids=["attribute", "element"],
)
def test_the_xmp_orientation_goes_with_the_exif_one_once_applied(root: Path, description: bytes) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    image = Image.new("RGB", (40, 20), "red")
    source = write_image(root, "in.jpg", image, "JPEG", exif=exif.tobytes(), xmp=RDF % description)
    out = decoded(pipeline(root, source, (ImageSave(), {"format": "jpeg"})))
    assert out.size == (20, 40)
    assert out.getexif().get(0x0112) is None  # Pillow reads XMP's when EXIF has none: it is gone too
    assert b"Orientation" not in out.info["xmp"] and b"rdf:Description" in out.info["xmp"]


def keyed_png(mode: str, key: int | tuple[int, int, int]) -> Image.Image:
    """A `mode` image of the key colour with a disc of another value in the middle."""
    image = Image.new(mode, (40, 40), key)
    ImageDraw.Draw(image).ellipse((10, 10, 30, 30), fill=(200, 0, 0) if mode == "RGB" else 200)
    return image


@pytest.mark.parametrize(("mode", "key"), [("RGB", (0, 0, 0)), ("L", 0), ("I;16", 0), ("I;16", 4000)])
def test_a_png_colour_key_becomes_transparency(root: Path, mode: str, key: int | tuple[int, ...]) -> None:
    source = write_image(root, "in.png", keyed_png(mode, key), "PNG", transparency=key)
    out = decoded(pipeline(root, source, (ImageSave(), {"format": "webp", "lossless": True})))
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert out.getpixel((20, 20))[3] == 255  # type: ignore[index]


def profile(space: bytes) -> bytes:
    """An ICC profile that says it describes `space` (sRGB's, with the colour-space field changed)."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return srgb[:16] + space + srgb[20:]


class ProfileCase(NamedTuple):
    image: Image.Image
    fmt: str
    space: bytes
    save_as: str
    kept: bool


PROFILE_CASES = {
    "cmyk-jpeg-to-webp": ProfileCase(
        Image.new("CMYK", (8, 8), (0, 255, 0, 0)), "JPEG", b"CMYK", "webp", False
    ),
    "cmyk-jpeg-to-jpeg": ProfileCase(
        Image.new("CMYK", (8, 8), (0, 255, 0, 0)), "JPEG", b"CMYK", "jpeg", False
    ),
    "grey-png-to-webp": ProfileCase(Image.new("L", (8, 8), 90), "PNG", b"GRAY", "webp", False),
    "grey-png-to-png": ProfileCase(Image.new("L", (8, 8), 90), "PNG", b"GRAY", "png", True),
    "rgb-png-to-avif": ProfileCase(Image.new("RGB", (8, 8), "red"), "PNG", b"RGB ", "avif", True),
}


@pytest.mark.parametrize("case", PROFILE_CASES.values(), ids=PROFILE_CASES.keys())
def test_a_colour_profile_is_kept_only_for_its_own_colour_space(root: Path, case: ProfileCase) -> None:
    icc = profile(case.space)
    source = write_image(root, f"in.{case.fmt.lower()}", case.image, case.fmt, icc_profile=icc)
    out = decoded(pipeline(root, source, (ImageSave(), {"format": case.save_as})))
    assert (out.info.get("icc_profile") == icc) is case.kept


def s15_fixed16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def one_colour_cmyk_profile(lab: tuple[int, int, int]) -> bytes:
    """A minimal ICC v2 CMYK printer profile whose A2B0 table maps every ink mix to one Lab colour
    (lut8 encoding: L 0-255 for 0-100, a and b 128 for 0), so a conversion through it is unmistakable."""
    white = s15_fixed16(0.9642) + s15_fixed16(1.0) + s15_fixed16(0.8249)  # D50
    identity = b"".join(s15_fixed16(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut = b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + identity
    lut += bytes(range(256)) * 4 + bytes(lab) * 2**4 + bytes(range(256)) * 3  # in curves, grid, out curves
    tags = [(b"wtpt", b"XYZ " + bytes(4) + white), (b"A2B0", lut + bytes(-len(lut) % 4))]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = struct.pack(">I", offset + len(data)) + bytes(4) + bytes([2, 0x10, 0, 0]) + b"prtrCMYKLab "
    header += bytes(12) + b"acsp" + bytes(28) + white
    return header + bytes(128 - len(header)) + table + data


@pytest.mark.parametrize(
    ("icc", "expected"),
    [
        (one_colour_cmyk_profile((128, 128, 128)), (119, 119, 119)),  # L* 50 grey, through the profile
        (None, (0, 255, 255)),  # no profile: Pillow's plain formula, as browsers do
        (b"not an ICC profile", (0, 255, 255)),  # unreadable: the same, and the photo is built
    ],
    ids=["profile", "none", "broken"],
)
def test_cmyk_pixels_become_srgb_through_their_embedded_profile(
    root: Path, icc: bytes | None, expected: tuple[int, int, int]
) -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    options = {"icc_profile": icc} if icc else {}
    source = write_image(root, "in.tif", cyan, "TIFF", **options)  # lossless: exact pixels
    out = decoded(pipeline(root, source, (ImageSave(), {"format": "png"})))
    assert out.mode == "RGB"
    pixel = out.getpixel((8, 8))
    assert isinstance(pixel, tuple)
    assert all(abs(got - want) <= 2 for got, want in zip(pixel, expected, strict=True)), pixel
    assert "icc_profile" not in out.info  # a CMYK profile does not describe the RGB output


def damaged_gps_exif() -> bytes:
    """EXIF whose GPS IFD writes GPSVersionID as ASCII "2.2" instead of 4 bytes (Pillow reads it, and
    cannot write it back)."""
    tiff = (
        b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x8825, 4, 1, 26) + struct.pack("<I", 0)
    )
    tiff += struct.pack("<H", 1) + struct.pack("<HHI", 0, 2, 4) + b"2.2\x00" + struct.pack("<I", 0)
    return b"Exif\x00\x00" + tiff


def text_orientation() -> bytes:
    """EXIF whose Orientation is the text "x" (an ASCII tag, where a SHORT belongs)."""
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHI", 0x0112, 2, 2) + b"x\x00\x00\x00"
    return b"Exif\x00\x00" + tiff + struct.pack("<I", 0)


@pytest.mark.parametrize("exif", [damaged_gps_exif(), text_orientation()], ids=["gps-tag", "orientation"])
def test_a_photo_with_damaged_exif_is_built_without_it(root: Path, exif: bytes) -> None:
    source = write_image(root, "in.jpg", Image.new("RGB", (64, 48), "olive"), "JPEG", exif=exif)
    out = decoded(pipeline(root, source, (ImageSave(), {"format": "jpeg"})))
    assert out.size == (64, 48)
    assert out.getexif().get(0x0112) is None


@pytest.mark.parametrize(("fmt", "key"), [("png", "Comment"), ("jpeg", "comment")])
def test_a_pngs_comment_is_kept_as_a_jpegs_is(root: Path, fmt: str, key: str) -> None:
    """PNG keeps a comment as a text chunk named Comment (as image.save writes it), not in `comment`."""
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "shot for the spring issue")
    source = write_image(root, "in.png", Image.new("RGB", (8, 8), "olive"), "PNG", pnginfo=text)
    out = decoded(pipeline(root, source, (ImageSave(), {"format": fmt})))
    assert out.info[key] in ("shot for the spring issue", b"shot for the spring issue")
    stripped = decoded(pipeline(root, source, (ImageStripMetadata(), {}), (ImageSave(), {"format": fmt})))
    assert key not in stripped.info


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiffs_orientation_is_applied_once_before_a_resize(root: Path, orientation: int) -> None:
    """Pillow gives a TIFF turned a quarter (5-8) its upright size before decoding it, which
    image.load, swapping it again, took for the stored size: the resize then failed."""
    image = Image.new("RGB", (200, 100), "green")
    image.paste("red", (0, 0, 50, 50))
    image.save(root / "scan.tif", tiffinfo={ExifTags.Base.Orientation: orientation})
    with Image.open(root / "scan.tif") as opened:
        upright = ImageOps.exif_transpose(opened)
    source = InputFile("scan.tif", root / "scan.tif")
    out = decoded(pipeline(root, source, (ImageResize(), {"width": 40}), (ImageSave(), {"format": "png"})))
    assert out.size == (40, 40 * upright.height // upright.width)
    assert out.resize(upright.size, Image.Resampling.NEAREST).getpixel((10, 10)) == upright.getpixel((10, 10))


def phone_photo(root: Path) -> InputFile:
    """A JPEG with an MPF second image, as phones (an Ultra HDR gain map) and cameras write them."""
    image = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    image.save(root / "in.jpg", "MPO", save_all=True, append_images=[image.resize((160, 120))])
    return InputFile("in.jpg", root / "in.jpg")


def test_a_phone_mpo_is_a_jpeg_still_image_decoded_at_a_reduced_scale(root: Path) -> None:
    picture = ImageLoad().run(phone_photo(root), ctx(root), formats=["JPEG"], animated="error")
    resized = ImageResize().run(picture, ctx(root), width=320)
    assert isinstance(resized, Picture)
    assert (resized.draft_scale, resized.size) == (2, (320, 240))


def test_16_bit_pgm_grey_is_scaled_to_8_bits_not_clipped(root: Path) -> None:
    (root / "ramp.pgm").write_bytes(b"P5\n4 1\n65535\n" + struct.pack(">4H", 0, 256 * 64, 256 * 128, 65535))
    pixels = pipeline(root, InputFile("ramp.pgm", root / "ramp.pgm")).pixels()
    assert [pixels.getpixel((x, 0)) for x in range(4)] == [0, 64, 128, 255]


def test_every_format_pillow_opens_may_be_named_in_formats() -> None:
    Image.init()
    assert set(Image.ID) <= set(FORMATS)
