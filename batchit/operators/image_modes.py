"""The working modes image steps compute in (L, RGB, RGBA), and how a decoded image reaches one:
16-bit grey scaled, colour keys made alpha, CMYK through its ICC profile."""

from __future__ import annotations

import functools
import io
from typing import Any

from PIL import Image, ImageMath


def working_mode(image: Image.Image, profile: bytes | None = None) -> Image.Image:
    """L, RGB or RGBA: CMYK and YCbCr become RGB, palettes RGB(A), 16-bit grey 8-bit, LA RGBA.

    CMYK pixels mean a colour only through the printing conditions their ICC `profile` describes:
    with one, they are converted to sRGB through it (see `cmyk_to_srgb`); without one, by Pillow's
    plain formula, as browsers and most tools do.

    A colour key (PNG's tRNS: `transparency` in `info`, on a palette, grey or RGB image) becomes an
    alpha channel, RGBA: the working modes have no other way to keep it. Integer grey (I;16, and I
    as 16-bit PGM and PNG open) holds 16-bit values, scaled to 8 bits (clipping would turn every
    value over 255 white).
    """
    mode = image.mode
    keyed = "transparency" in image.info
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
        if not keyed:
            return grey
        key = image.info["transparency"]  # a 16-bit grey value, which convert("LA") would ignore
        alpha = ImageMath.lambda_eval(lambda args: (args["im"] != key) * 255, im=image.convert("I"))
        return Image.merge("LA", (grey, alpha.convert("L"))).convert("RGBA")
    if mode in ("1", "L", "RGB", "P") and keyed:
        return image.convert("RGBA")
    if mode in ("L", "RGB", "RGBA"):
        return image
    if mode in ("1", "F"):
        return image.convert("L")
    if mode == "P":
        return image.convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "CMYK" and profile:
        return cmyk_to_srgb(image, profile)
    return image.convert("RGB")


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
