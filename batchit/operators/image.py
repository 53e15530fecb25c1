"""Image operators on Pillow: what they share (`Picture`, the decoding guard) and `image.load`.

An image travels between image steps as a `Picture`: a Pillow image that `image.load` opens without
decoding, with the metadata it carried and its EXIF orientation. The first step that needs pixels
decodes it; `image.resize` first asks a JPEG decoder for a reduced scale (`draft`, DCT scaling) when
the target size allows it, so a 1600x1200 photo resized to 320 px is decoded at 800x600 and never
at full size. The modes decoded pixels are worked on in live in `image_modes.py`, geometry in
`image_resize.py`, painting in `image_paint.py`, metadata and encoding in `image_save.py`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import struct
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image, UnidentifiedImageError

from batchit.errors import PermanentError, RecipeError
from batchit.operators.base import InputFile, InputKind, JobContext, Operator
from batchit.operators.image_modes import match_key_to_pixels, working_mode
from batchit.operators.image_names import ANIMATIONS, JPEG_LIKE, format_accepted, formats_schema

CODECS = {
    "libjpeg": "jpg",
    "libwebp": "webp",
    "libavif": "avif",
    "zlib": "zlib",
    "freetype2": "freetype2",
    "lcms2": "littlecms2",
}
"""Pillow features whose versions shape decoded pixels or encoded bytes, by the label in the key."""

ORIENTATION = 0x0112
TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transposition that shows the image upright (as ImageOps.exif_transpose)."""

XMP_ORIENTATION = re.compile(
    rb"\s*tiff:Orientation\s*=\s*(\"[^\"]*\"|'[^']*')|<tiff:Orientation\s*>[^<]*</tiff:Orientation\s*>"
)
"""XMP's copy of the orientation, as an attribute or an element (Lightroom, Photoshop and phones
write it beside EXIF's; Pillow reads it when EXIF has none)."""

LAYOUT_TAGS = frozenset(
    {*range(254, 260), *range(262, 267), *range(273, 282), *range(284, 294), 317, *range(320, 326), 330}
    | {332, *range(338, 342), 347, *range(512, 522), 530, 700, 33723, 34377, 34675}
)
"""TIFF tags that say how a file stores its pixels (its size, BitsPerSample, Compression, Photometric,
strips, tiles, ColorMap, ExtraSamples, SampleFormat, old-style JPEG tables) or hold what image.load
keeps apart or drops (XMP 700, IPTC 33723, Photoshop 34377, ICC 34675). To Pillow a TIFF's own tags
are its EXIF: written into an output they would describe the source file (CMYK, where its strips
lie: 8 bytes a row, over the 64 KB a JPEG's EXIF may hold for a tall scan), so they are dropped."""

BAD_METADATA = (
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    OverflowError,
    SyntaxError,
    EOFError,
    struct.error,
)
"""What Pillow raises on EXIF it cannot read or write back (a tag of the wrong type, a broken pointer)."""


class ImageOperator(Operator):
    """Base of the image operators: Pillow's version and its codecs' versions enter the key."""

    libraries = ("pillow",)
    takes: ClassVar[frozenset[InputKind]] = frozenset()  # a picture image.load makes
    ends_with: ClassVar[str | None] = "image.save"  # which alone makes bytes of the picture

    def library_versions(self) -> dict[str, str]:
        """Pillow's version plus libjpeg, libwebp, libavif, zlib and FreeType as Pillow reports them."""
        return dict(pillow_versions())


@functools.cache
def pillow_versions() -> dict[str, str]:
    """Pillow's and its codecs' versions, looked up once per process (each lookup imports a codec
    module, and every image operator of every rule asks)."""
    from PIL import __version__, features

    versions = {"pillow": __version__}
    for label, feature in CODECS.items():
        versions[label] = features.version(feature) or "missing"
    return versions


@dataclass(eq=False)
class Picture:
    """An image between image steps: opened, maybe not yet decoded, with its metadata kept apart.

    `size` is always the upright size in the picture's own pixels. Until `pixels()` is called the
    Pillow image holds only the file's header, and `draft()` may still lower the decoding scale.
    """

    image: Image.Image
    source: str
    """The input path, for messages."""
    format: str
    size: tuple[int, int]
    orientation: int = 1
    metadata: dict[str, bytes] = field(default_factory=dict)
    """`exif` (without the orientation, which is applied), `icc_profile`, `xmp`, `comment`."""
    allow_draft: bool = True
    decoded: bool = False
    draft_scale: int = 1
    """1, 2, 4 or 8: the JPEG decoder produced 1/draft_scale of each dimension (kept afterwards, so
    a test or a log can tell how the picture was decoded)."""

    def draft(self, needed: tuple[int, int]) -> None:
        """Let the JPEG decoder produce a smaller image, no smaller than `needed` (upright pixels)."""
        if self.decoded or not self.allow_draft or self.format not in JPEG_LIKE or min(needed) < 1:
            return
        raw = (needed[1], needed[0]) if self.orientation in (5, 6, 7, 8) else needed
        before = self.image.size
        with decoding(self.source):
            drafted = self.image.draft(None, raw)
        if drafted is not None:  # box = the whole image in decoded pixels: (0, 0, width / s, height / s)
            self.draft_scale = max(1, round(before[0] / drafted[1][2]))

    def pixels(self) -> Image.Image:
        """The decoded, upright image in a working mode (L, RGB or RGBA); decodes on first use.

        The file is closed once decoded: Pillow closes a single-frame file itself, and keeps a
        multi-frame one (or a stream it was given) open for seeking, so that frame is copied out.
        """
        if not self.decoded:
            opened = self.image
            try:
                with decoding(self.source):
                    opened.load()
            except BaseException:
                opened.close()
                raise
            image = opened
            if self.orientation in TRANSPOSES:
                image = image.transpose(TRANSPOSES[self.orientation])
            image = working_mode(image, self.metadata.get("icc_profile"), self.format)
            if getattr(opened, "fp", None) is not None or getattr(opened, "_fp", None) is not None:
                image = opened.copy() if image is opened else image
                opened.close()
            self.image, self.decoded = image, True
        return self.image

    def replace(self, image: Image.Image) -> Picture:
        """This picture with new pixels (the result of a transformation)."""
        self.image, self.size, self.decoded = image, image.size, True
        return self


BOMB_HINT = (
    f"shrink the image below Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels, which always applies "
    "(max_pixels can only lower it)"
)


@functools.cache
def _refuse_bomb_warnings() -> None:
    """Make Pillow's decompression-bomb warning an error in this process, once (SPEC section 8).

    `warnings.catch_warnings` would confine that to one block, but it swaps the process-wide filter
    list: image jobs on two worker threads restored each other's lists, so one could decode a bomb
    with the filter gone. The filter is added once and stays; `image.load` also compares the
    header's size with Pillow's limit itself, so a filter that user code removes lets no bomb through.
    Two threads adding it at once add it once: `filterwarnings` replaces an equal filter.
    """
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


@contextmanager
def decoding(source: str) -> Iterator[None]:
    """Turn Pillow's complaints about an input into permanent errors that name it.

    Pillow's decompression-bomb warning is an error (the global `Image.MAX_IMAGE_PIXELS` is never
    changed); a truncated or undecodable file is a permanent error. An OSError with an errno is a
    real I/O failure and passes through for the worker to classify.
    """
    _refuse_bomb_warnings()
    try:
        yield
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        message = f"{source}: refused as a possible decompression bomb: {exc}"
        raise PermanentError(message, hint=BOMB_HINT) from exc
    except UnidentifiedImageError as exc:
        raise PermanentError(f"{source} is not an image Pillow can read") from exc
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise PermanentError(f"{source}: cannot decode the image: {exc}") from exc
    except (SyntaxError, ValueError, EOFError) as exc:
        raise PermanentError(f"{source}: cannot decode the image: {exc}") from exc


def picture_of(value: Any, step: str) -> Picture:
    """The value as a Picture, or an error of the rule saying `image.load` must come first: only
    image.load makes a Picture, whatever the input, so no input is to blame."""
    if isinstance(value, Picture):
        return value
    raise RecipeError(
        f"step {step} needs an image, got {type(value).__name__}",
        hint="put image.load before the other image steps",
    )


class ImageLoad(ImageOperator):
    """`image.load`: open an image without decoding it; check its format and size from the header.

    EXIF orientation is applied when the pixels are decoded, so later steps see the image upright.
    An animated GIF, PNG, WebP or AVIF gives its first frame (`animated: first`, the default) or is
    refused (`animated: error`); a TIFF's pages or a PSD's layers are no animation: the first page,
    the composite, is the image. Pillow's decompression-bomb limit always applies; `max_pixels` is a tighter
    one of your own, checked before a single pixel is decoded.
    """

    name = "image.load"
    takes: ClassVar[frozenset[InputKind]] = frozenset({"file"})
    version = "4"  # 2: CMYK via its ICC profile; 3: a TIFF's tags, a PNG's comment; 4: wide grey, 16-bit keys
    validate_section = "image"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Open an image lazily (decoded by the first step that needs pixels), upright.",
        "properties": {
            "max_pixels": {
                "type": "integer",
                "minimum": 1,
                "description": "Refuse an image whose width x height is larger (checked before decoding).",
            },
            "formats": formats_schema("Accepted formats; others are refused."),
            "draft": {
                "type": "boolean",
                "default": True,
                "description": "Let a later image.resize decode a JPEG at a reduced scale (never below "
                "twice the target size). false decodes every pixel.",
            },
            "animated": {
                "enum": ["first", "error"],
                "default": "first",
                "description": "An animated GIF, PNG, WebP or AVIF: keep its first frame, or refuse it "
                "(a TIFF of several pages always gives its first).",
            },
        },
        "additionalProperties": False,
    }

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """A Picture of the input (a file or the bytes of an earlier step), not yet decoded."""
        if isinstance(value, Picture):
            return value
        opened: Path | io.BytesIO
        if isinstance(value, InputFile):
            source, opened = value.path, value.absolute
        elif isinstance(value, bytes):
            source, opened = f"the image from {ctx.input}", io.BytesIO(value)
        else:
            raise PermanentError(f"step {self.name} needs an image file or bytes, got {type(value).__name__}")
        image = open_image(opened, source)
        try:
            picture = self._checked(image, source, params)
        except BaseException:
            image.close()
            raise
        picture.allow_draft = params.get("draft", True)
        return picture

    def _checked(self, image: Image.Image, source: str, params: dict[str, Any]) -> Picture:
        check_header(image, source, params)
        kind = image.format or ""
        if kind in ANIMATIONS and params.get("animated", "first") == "error":
            frames = int(getattr(image, "n_frames", 1))
            if frames > 1:
                raise PermanentError(f"{source} is animated ({frames} frames)", hint="use animated: first")
        match_key_to_pixels(image)
        orientation, exif = _orientation_and_exif(image, source)
        width, height = _stored_size(image)
        upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        kind = "JPEG" if kind in JPEG_LIKE else kind  # an MPO's first image is a plain JPEG
        return Picture(image, source, kind, upright, orientation, _metadata(image, exif))


def _stored_size(image: Image.Image) -> tuple[int, int]:
    """The size of the pixels as the file stores them, before its orientation is applied.

    Pillow reports a TIFF turned a quarter (orientation 5-8) at its upright size, meaning to turn
    it as it decodes; image.load takes the orientation out of its EXIF and turns it itself, so
    the picture's upright size comes from the stored one, as for every other format.
    """
    tags = getattr(image, "tag_v2", None)
    if image.format == "TIFF" and tags is not None and 256 in tags and 257 in tags:
        return int(tags[256]), int(tags[257])  # ImageWidth, ImageLength
    return image.size


def check_header(image: Image.Image, source: str, limits: Mapping[str, Any], origin: str = "") -> None:
    """Refuse an opened, not decoded, image whose format or pixel count `limits` or Pillow forbid.

    `limits` holds `formats` and `max_pixels` (an image.load step's, or a rule's `validate.image`,
    named by `origin` in the message).
    """
    kind = image.format or ""
    formats = [f.upper() for f in limits.get("formats", [])]
    if not format_accepted(kind, formats):
        raise PermanentError(f"{source} is {kind or 'of unknown format'}, not one of {formats}{origin}")
    width, height = image.size
    limit = limits.get("max_pixels")
    if limit is not None and width * height > limit:
        raise PermanentError(f"{source} has {width}x{height} = {width * height} pixels, over {limit}{origin}")
    pillows = Image.MAX_IMAGE_PIXELS
    if pillows is not None and width * height > pillows:  # the warning filter may have been removed
        raise PermanentError(
            f"{source}: refused as a possible decompression bomb: {width}x{height} = "
            f"{width * height} pixels, over Pillow's limit of {pillows}",
            hint=BOMB_HINT,
        )


def check_image_file(path: Path, source: str, limits: Mapping[str, Any]) -> None:
    """A rule's `validate.image` on an input file: its header only is read, nothing is decoded."""
    with decoding(source), open_image(path, source) as image:
        check_header(image, source, limits, origin=" (validate.image)")


EMPTY_HINT = "an interrupted copy, upload or download leaves an empty file: copy the image again"


def open_image(opened: Path | io.BytesIO, source: str) -> Image.Image:
    """Pillow's image of `opened`, only its header read. A file Pillow cannot identify is a
    permanent error; an empty one says so, as an empty file is no image in any format."""
    with decoding(source):
        try:
            return Image.open(opened)
        except UnidentifiedImageError:
            size = opened.stat().st_size if isinstance(opened, Path) else len(opened.getbuffer())
            if size == 0:
                raise PermanentError(f"{source} is empty (0 bytes), not an image", hint=EMPTY_HINT) from None
            raise


def _orientation_and_exif(image: Image.Image, source: str) -> tuple[int, Image.Exif]:
    """The EXIF orientation (1 when missing or unreadable) and the rest of the EXIF, but LAYOUT_TAGS.

    EXIF Pillow cannot read is dropped rather than failing a photo whose pixels are fine. (A PNG's
    EXIF may follow its pixels: Pillow decodes them to find it, and a truncated file fails here.)
    """
    with decoding(source):
        try:
            exif = image.getexif()
            value = exif.pop(ORIENTATION, 1)
            for tag in LAYOUT_TAGS.intersection(exif):
                del exif[tag]
        except BAD_METADATA:
            return 1, Image.Exif()
    try:
        return int(value or 1), exif
    except (TypeError, ValueError):  # "x", a tuple: a writer's bug, so the image is shown as stored
        return 1, exif


def _metadata(image: Image.Image, exif: Image.Exif) -> dict[str, bytes]:
    """The metadata an image carries that image.save can write again: EXIF, ICC, XMP, comment.

    EXIF that Pillow cannot write back (a tag of the wrong type) is dropped, as the orientation is,
    both from EXIF and from XMP: the pixels are upright now, and an orientation left in either
    would make viewers turn them again.
    """
    found: dict[str, bytes] = {}
    if len(exif):
        with contextlib.suppress(*BAD_METADATA):
            found["exif"] = exif.tobytes()
    for key, names in (("icc_profile", ("icc_profile",)), ("xmp", ("xmp", "XML:com.adobe.xmp"))):
        for name in names:
            if image.info.get(name):
                item = image.info[name]
                found[key] = item.encode("utf-8") if isinstance(item, str) else bytes(item)
                break
    if "xmp" in found:
        found["xmp"] = XMP_ORIENTATION.sub(b"", found["xmp"])
    comment = image.info.get("comment") or (image.info.get("Comment") if image.format == "PNG" else None)
    if comment:  # PNG keeps it as a text chunk named Comment (image.save writes it back so)
        found["comment"] = comment.encode("utf-8") if isinstance(comment, str) else bytes(comment)
    return found


def place(outer: tuple[int, int], inner: tuple[int, int], where: str, margin: int) -> tuple[int, int]:
    """Top-left corner of an `inner` box put at `where` (a gravity or position name) inside `outer`."""
    spare_w, spare_h = outer[0] - inner[0], outer[1] - inner[1]
    x = margin if "left" in where else spare_w - margin if "right" in where else spare_w // 2
    y = margin if "top" in where else spare_h - margin if "bottom" in where else spare_h // 2
    return x, y
