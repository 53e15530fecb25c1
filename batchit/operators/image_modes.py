"""The working modes image steps compute in (L, RGB, RGBA), and how a decoded image reaches one:
wide grey (16-bit, 32-bit, float) scaled, colour keys made alpha, CMYK through its ICC profile."""

from __future__ import annotations

import functools
import io
from typing import Any, cast

from PIL import Image, ImageMath


def working_mode(image: Image.Image, profile: bytes | None = None, kind: str = "") -> Image.Image:
    """L, RGB or RGBA: CMYK and YCbCr become RGB, palettes RGB(A), wide grey 8-bit, LA RGBA.

    CMYK pixels mean a colour only through the printing conditions their ICC `profile` describes:
    with one, they are converted to sRGB through it (see `cmyk_to_srgb`); without one, by Pillow's
    plain formula, as browsers and most tools do.

    A colour key (PNG's tRNS: `transparency` in `info`, on a palette, grey or RGB image) becomes an
    alpha channel, RGBA: the working modes have no other way to keep it. Grey wider than 8 bits
    (16- and 32-bit integers, floats) is scaled to 8 bits by `wide_grey`; `kind` is the file's
    format, which tells how wide its integers are.
    """
    mode = image.mode
    keyed = "transparency" in image.info
    if mode in WIDE_GREY:
        grey = wide_grey(image, kind)
        if not keyed or mode == "F":
            return grey
        key = image.info["transparency"]  # a 16-bit grey value, which convert("LA") would ignore
        alpha = ImageMath.lambda_eval(lambda args: (args["im"] != key) * 255, im=image.convert("I"))
        return Image.merge("LA", (grey, alpha.convert("L"))).convert("RGBA")
    if mode in ("1", "L", "RGB", "P") and keyed:
        return image.convert("RGBA")
    if mode in ("L", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "CMYK" and profile:
        return cmyk_to_srgb(image, profile)
    return image.convert("RGB")


def match_key_to_pixels(image: Image.Image) -> None:
    """Give an opened, not yet decoded, 16-bit RGB PNG the colour key its decoded pixels can match.

    Pillow decodes 16-bit RGB to 8 bits a channel (the high byte) but keeps the tRNS key in 16 bits,
    which no decoded pixel then equals: the transparency was lost. The key's high bytes match each
    pixel whose 16-bit colour lies within 1/256 of it (a 16-bit key marks a flat background colour).
    """
    key = image.info.get("transparency")
    tiles = getattr(image, "tile", None)  # an opened file's: what its decoder will make of it
    rawmode = tiles[0].args if tiles else None
    if image.format == "PNG" and rawmode == "RGB;16B" and isinstance(key, tuple):
        image.info["transparency"] = tuple(value >> 8 for value in key)


WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
"""Grey modes with more than 8 bits a sample: 16-bit integers, 32-bit integers, 32-bit floats."""

SIXTEEN_BIT_INTEGERS = frozenset({"PPM"})
"""Formats whose `I` pixels are 16-bit whatever their values: Pillow scales a PGM's to 0..65535."""

LARGEST_FLOAT = 3.4e38
"""Just under the largest 32-bit float: a value beyond it is infinite."""


def wide_grey(image: Image.Image, kind: str = "") -> Image.Image:
    """8-bit grey of wide grey pixels, white at the top of the range the file holds them in.

    16-bit integers (I;16, a 16-bit PNG, TIFF or PGM) are divided by 256. A 32-bit integer image
    (TIFF's `I`) rarely fills 32 bits, and its values decide: up to 255 they are 8-bit grey (what
    Pillow writes for `convert("I")`), up to 65535 16-bit, beyond that 0..the largest is scaled to
    0..255. Floats are 0.0 (black) to 1.0 (white), as TIFF, PFM and ImageMagick take them; where a
    value is over 1.0 (counts, 0..255 data) 0..the largest finite value is. Negative values and NaN
    are black, infinities white (in a float image NaN usually marks a pixel without data).
    """
    if image.mode == "F":
        top = _largest_finite(image)
        scale = 255.0 if top <= 1.0 else 255.0 / top
        return image.point(lambda value: value * scale + 0.5).convert("L")
    integers = image.convert("I")
    top = 65535 if image.mode != "I" or kind in SIXTEEN_BIT_INTEGERS else _largest(integers)
    if top <= 255:
        return integers.convert("L")
    factor = 1 / 256 if top <= 65535 else 255 / top
    return integers.point(lambda value: value * factor).convert("L")


def _largest_finite(image: Image.Image) -> float:
    """The largest value of a float image but NaN and infinities (getextrema gives NaN for any NaN)."""
    finite = ImageMath.lambda_eval(
        lambda args: (args["im"] < LARGEST_FLOAT) * (args["im"] > -LARGEST_FLOAT) * 255, im=image
    )
    values = Image.new("F", image.size, 0.0)
    values.paste(image, mask=finite.convert("L"))
    return _largest(values)


def _largest(image: Image.Image) -> float:
    """The largest value of a one-band image."""
    return cast(tuple[float, float], image.getextrema())[1]


def cmyk_to_srgb(image: Image.Image, profile: bytes) -> Image.Image:
    """CMYK pixels in sRGB through their ICC profile (relative colorimetric with black point
    compensation, what image editors use for photographs). A profile LittleCMS cannot read, or a
    Pillow built without it, falls back to the plain formula: the pixels are still fine."""
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without LittleCMS
        return image.convert("RGB")
    try:
        transform = _cmyk_transform(profile)
    except (ImageCms.PyCMSError, OSError):  # OSError: LittleCMS could not read the profile at all
        return image.convert("RGB")
    converted = ImageCms.applyTransform(image, transform)
    return converted if converted is not None else image.convert("RGB")


@functools.lru_cache(maxsize=8)
def _cmyk_transform(profile: bytes) -> Any:
    """The LittleCMS transform from `profile`'s CMYK to sRGB; a batch of photos shares a few profiles."""
    from PIL import ImageCms

    return ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"),
        "CMYK",
        "RGB",
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
    )
