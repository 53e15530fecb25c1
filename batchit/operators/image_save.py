"""Image operators that decide what leaves the pipeline: `image.strip_metadata` and `image.save`.

`image.save` writes only the metadata still on the picture (EXIF without its orientation, which was
applied, the ICC profile, XMP and a comment), never whatever else Pillow kept in `Image.info`, so
`image.strip_metadata` before it is a guarantee: no EXIF, GPS, XMP or comment reaches the output.
The ICC profile is written only when it describes the output's colour space (see PROFILE_SPACE).
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

# The encoders of every format image.save writes, registered up front: naming a format Pillow has not
# loaded yet makes Pillow import all of its ~40 plugins (~25 ms) on the first save of each process.
from PIL import AvifImagePlugin, Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401

from batchit.errors import PermanentError, RecipeError
from batchit.operators.base import JobContext
from batchit.operators.image import ImageOperator, Picture, decoding, picture_of

QUALITY = {
    "jpeg": {"low": 60, "medium": 75, "high": 88},
    "webp": {"low": 55, "medium": 75, "high": 88},
    "avif": {"low": 40, "medium": 55, "high": 70},
}
"""`quality: low|medium|high` per format: each codec's scale means something different (AVIF at 55
looks about like JPEG at 75)."""

PNG_COMPRESSION = {"low": 1, "medium": 6, "high": 9}
"""`quality: low|medium|high` for lossless PNG: zlib's effort (6 is Pillow's default), which trades
time for size and leaves every pixel as it is. A number has no meaning there and is refused."""

PILLOW_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "png": "PNG"}

JPEG_ROOM = {"exif": ("EXIF", 65533), "xmp": ("XMP", 65533 - 29), "comment": ("comment", 65533)}
"""The most bytes of each kind of metadata one JPEG marker segment holds (XMP's shares its segment
with a 29-byte namespace): Pillow refuses more with a bare ValueError. PNG, WebP and AVIF have room."""

LONGEST_SIDE = {"jpeg": 65500, "webp": 16383, "avif": 65536}
"""The longest side each encoder writes: libjpeg's JPEG_MAX_DIMENSION, WebP's 14-bit sizes, AV1's
16-bit frame sizes (PNG's is 2^31 - 1). Past it Pillow fails with the codec's words ("broken data
stream", "Invalid argument"), naming neither the size nor the limit."""

PROFILE_SPACE = {"L": b"GRAY", "RGB": b"RGB ", "RGBA": b"RGB "}
"""The colour space (bytes 16-20 of an ICC profile's header) each mode image.save writes needs. A
profile for another space (a CMYK photo's, now RGB pixels; a grey one on pixels turned RGB) would
make viewers misread every colour, so it is dropped: the output is then read as sRGB."""


def _format_is(*names: str) -> dict[str, Any]:
    """A JSON Schema condition: `format` is one of `names`."""
    return {"properties": {"format": {"enum": list(names)}}, "required": ["format"]}


class ImageStripMetadata(ImageOperator):
    """`image.strip_metadata`: drop EXIF (GPS included), XMP and comments; `keep: [icc]` keeps the profile.

    It works on the picture's metadata, not its pixels, so it costs nothing and can come anywhere
    between image.load and image.save.
    """

    name = "image.strip_metadata"
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Remove EXIF (with GPS), XMP and comments from the image written by image.save.",
        "properties": {
            "keep": {
                "type": "array",
                "items": {"enum": ["icc"]},
                "uniqueItems": True,
                "default": [],
                "description": "Metadata to keep: icc keeps the colour profile (recommended for wide-gamut "
                "photos). Default: drop everything.",
            },
        },
        "additionalProperties": False,
    }

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The same picture, with only the metadata named in `keep`."""
        picture = picture_of(value, self.name)
        kept = {"icc_profile"} if "icc" in params.get("keep", []) else set()
        picture.metadata = {key: data for key, data in picture.metadata.items() if key in kept}
        return picture


class ImageSave(ImageOperator):
    """`image.save`: encode to WebP, AVIF, JPEG or PNG and return the bytes.

    The bytes are decoded again before they are returned, so an output that would not open never
    reaches the atomic rename. AVIF needs a Pillow built with libavif; without it a job fails saying
    so, as a fault of the rule (no input is quarantined, so a Pillow with AVIF builds them all).
    Encoders run single-threaded, so the bytes are the same on every run.
    """

    name = "image.save"
    ends_with = None
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Encode the image; the result is the output's bytes.",
        "properties": {
            "format": {
                "enum": list(PILLOW_FORMAT),
                "description": "webp, avif (only where Pillow was built with libavif: otherwise each job "
                "fails, and no input is quarantined), jpeg or png.",
            },
            "quality": {
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": 100},
                    {"enum": ["low", "medium", "high"]},
                ],
                "default": "medium",
                "description": "1-100, or low|medium|high tuned per format (jpeg 60/75/88, webp 55/75/88, "
                "avif 40/55/70; png, which is lossless, takes only the names: compression effort "
                "1/6/9).",
            },
            "lossless": {
                "type": "boolean",
                "default": False,
                "description": "webp: lossless compression (quality then sets the effort). png is always "
                "lossless; jpeg and avif cannot be.",
            },
            "progressive": {
                "type": "boolean",
                "default": False,
                "description": "jpeg only: a progressive JPEG (renders coarse-to-fine while loading).",
            },
            "optimize": {
                "type": "boolean",
                "default": False,
                "description": "Spend more time for smaller files: optimal Huffman tables (jpeg), "
                "maximum compression (png, whatever its quality), method 6 (webp), a slower speed (avif).",
            },
        },
        "required": ["format"],
        "allOf": [
            {
                "if": _format_is("png"),
                "then": {"properties": {"quality": {"enum": list(PNG_COMPRESSION)}}},
                "description": "png is lossless: its quality is a compression effort, low, medium or high",
            },
            {
                "if": _format_is("jpeg", "avif"),
                "then": {"properties": {"lossless": {"const": False}}},
                "description": "jpeg and avif cannot be lossless: remove `lossless: true`, "
                "or save as webp or png",
            },
            {
                "if": {"not": _format_is("jpeg")},
                "then": {"properties": {"progressive": {"const": False}}},
                "description": "only jpeg is progressive: remove `progressive: true`",
            },
        ],
        "additionalProperties": False,
    }

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The encoded image's bytes, checked to decode to the same size."""
        picture = picture_of(value, self.name)
        kind: str = params["format"]
        if kind == "avif":
            from PIL import features

            if not features.check("avif"):
                raise RecipeError(
                    "this Pillow has no AVIF support (built without libavif)",
                    hint="install a Pillow wheel with AVIF support, or save as webp",
                )
        longest = LONGEST_SIDE.get(kind)
        if longest is not None and max(picture.size) > longest:
            width, height = picture.size
            raise RecipeError(
                f"{picture.source}: the image to save is {width}x{height}, and {PILLOW_FORMAT[kind]} "
                f"images are at most {longest} pixels a side",
                hint=f"put an image.resize to at most {longest} before image.save, or save as png",
            )
        if kind == "jpeg":
            _check_jpeg_room(picture)
        image = picture.pixels()
        data = encode(image, kind, params, picture.metadata)
        with decoding(f"the {kind} encoding of {picture.source}"), Image.open(io.BytesIO(data)) as check:
            check.load()
            if check.size != image.size:
                raise PermanentError(f"the encoded image is {check.size}, not {image.size}")
        return data


def _check_jpeg_room(picture: Picture) -> None:
    """Refuse metadata a JPEG cannot hold, naming it and the input: the recipe (a JPEG that keeps
    the metadata) must change, not the input, so the input is not quarantined."""
    for key, data in picture.metadata.items():
        name, room = JPEG_ROOM.get(key, ("", len(data)))
        if len(data) > room:
            raise RecipeError(
                f"{picture.source}: its {name} is {len(data):,} bytes, more than the {room:,} a JPEG "
                "can hold",
                hint="put image.strip_metadata before image.save, or save as png, webp or avif",
            )


def encode(image: Image.Image, kind: str, params: dict[str, Any], metadata: dict[str, bytes]) -> bytes:
    """`image` encoded as `kind` with the step's options and the given metadata."""
    options: dict[str, Any] = {}
    optimize = bool(params.get("optimize", False))
    if "exif" in metadata:
        options["exif"] = metadata["exif"]
    if kind == "png":
        options["optimize"] = optimize
        options["compress_level"] = PNG_COMPRESSION[params.get("quality", "medium")]
        text = PngImagePlugin.PngInfo()
        if "xmp" in metadata:
            text.add_itxt("XML:com.adobe.xmp", metadata["xmp"].decode("utf-8", errors="replace"))
        if "comment" in metadata:
            text.add_text("Comment", metadata["comment"].decode("utf-8", errors="replace"))
        options["pnginfo"] = text
    else:
        quality = params.get("quality", "medium")
        options["quality"] = QUALITY[kind][quality] if isinstance(quality, str) else quality
        if "xmp" in metadata:
            options["xmp"] = metadata["xmp"]
    if kind == "jpeg":
        image = _flatten(image)
        options.update(optimize=optimize, progressive=bool(params.get("progressive", False)))
        if "comment" in metadata:
            options["comment"] = metadata["comment"]
    elif kind == "webp":
        image = image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
        options.update(lossless=bool(params.get("lossless", False)), method=6 if optimize else 4)
    elif kind == "avif":
        image = image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
        options.update(speed=4 if optimize else 6, max_threads=1)
    profile = metadata.get("icc_profile")
    if profile is not None and profile[16:20] == PROFILE_SPACE.get(image.mode):
        options["icc_profile"] = profile
    image.info = {}  # nothing Pillow remembers from the input may slip into the output
    buffer = io.BytesIO()
    image.save(buffer, PILLOW_FORMAT[kind], **options)
    return buffer.getvalue()


def _flatten(image: Image.Image) -> Image.Image:
    """JPEG has no alpha: transparent pixels are composited onto white."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background
