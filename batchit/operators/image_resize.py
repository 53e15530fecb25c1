"""Image operators that change the picture's geometry: `image.resize` and `image.crop`.

`image.resize` is where lazy decoding pays: before the first pixel is decoded it tells a JPEG
decoder the smallest scale that still gives at least twice the target size (`Picture.draft`), so a
1600x1200 photo becomes a 320 px thumbnail from an 800x600 decode, then resamples with LANCZOS.
"""

from __future__ import annotations

from typing import Any, ClassVar

from PIL import Image

from batchit.errors import PermanentError, RecipeError
from batchit.operators.base import JobContext
from batchit.operators.image import ImageOperator, picture_of, place

DRAFT_GAP = 2
"""A drafted JPEG is decoded at no less than twice the target size, as Pillow's `thumbnail()` does:
the final LANCZOS pass then looks the same as one from the full-size pixels."""
REDUCING_GAP = 3.0
"""`Image.resize(reducing_gap=...)`: shrink by an integer factor first when the reduction is large;
Pillow documents 3.0 as indistinguishable from a plain resample in most cases."""


class ImageResize(ImageOperator):
    """`image.resize`: fit the image to `width` and/or `height` with LANCZOS resampling.

    `fit: contain` (default) keeps the aspect ratio inside the box; `cover` fills the box and crops
    the overflow, centred; `fill` stretches to exactly the box. Without `upscale: true` nothing is
    enlarged: `contain` keeps a smaller image's size, `cover` gives the largest centred crop with the
    box's shape, `fill` makes each side at most the box's.
    """

    name = "image.resize"
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Resize with LANCZOS; a JPEG is decoded at a reduced scale when that suffices.",
        "properties": {
            "width": {"type": "integer", "minimum": 1, "description": "Target width in pixels."},
            "height": {"type": "integer", "minimum": 1, "description": "Target height in pixels."},
            "fit": {
                "enum": ["contain", "cover", "fill"],
                "default": "contain",
                "description": "contain: inside the box, aspect kept; cover: fill the box, crop the "
                "overflow (centred); fill: exactly the box, aspect not kept. cover and fill need both "
                "width and height.",
            },
            "upscale": {
                "type": "boolean",
                "default": False,
                "description": "Enlarge images smaller than the target (default: never enlarge).",
            },
        },
        "anyOf": [{"required": ["width"]}, {"required": ["height"]}],
        "if": {"properties": {"fit": {"enum": ["cover", "fill"]}}, "required": ["fit"]},
        "then": {"required": ["width", "height"]},
        "additionalProperties": False,
    }

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The picture resized (or unchanged when it already fits and may not be enlarged)."""
        picture = picture_of(value, self.name)
        width, height = picture.size
        target, box = geometry(width, height, params)
        if target == (width, height) and box == (0, 0, width, height):
            return picture
        limit = Image.MAX_IMAGE_PIXELS
        if limit and target[0] * target[1] > limit:  # only `upscale` can get here
            raise RecipeError(
                f"step {self.name}: {width}x{height} would grow to {target[0]}x{target[1]}, over the "
                f"{limit:,} pixels Pillow allows an image",
                hint="ask for a smaller width or height, or leave `upscale` off",
            )
        scaled = (round(width * target[0] / (box[2] - box[0])), round(height * target[1] / (box[3] - box[1])))
        fresh = not picture.decoded
        picture.draft((scaled[0] * DRAFT_GAP, scaled[1] * DRAFT_GAP))
        image = picture.pixels()
        scale = picture.draft_scale if fresh else 1
        dx, dy = _padding_shift(picture.orientation, image.size, (width, height), scale)
        source_box = (box[0] / scale + dx, box[1] / scale + dy, box[2] / scale + dx, box[3] / scale + dy)
        resized = image.resize(target, Image.Resampling.LANCZOS, box=source_box, reducing_gap=REDUCING_GAP)
        return picture.replace(resized)


FLIPPED_AXES = {
    2: (True, False),
    3: (True, True),
    4: (False, True),
    6: (True, False),
    7: (True, True),
    8: (False, True),
}
"""EXIF orientation -> whether the upright image's x and y axes run against the stored image's."""


def _padding_shift(
    orientation: int, drafted: tuple[int, int], full: tuple[int, int], scale: int
) -> tuple[float, float]:
    """Where upright source coordinates land in a drafted, transposed image, beyond dividing by
    `scale`. The decoder rounds each stored side up (its last pixel covers a partial block), and
    that part pixel sits on the right and bottom of the stored image: where the orientation flips
    an axis, it ends up first, and every source coordinate on that axis moves by its missing part."""
    if scale == 1:
        return 0.0, 0.0
    flip_x, flip_y = FLIPPED_AXES.get(orientation, (False, False))
    return (
        drafted[0] - full[0] / scale if flip_x else 0.0,
        drafted[1] - full[1] / scale if flip_y else 0.0,
    )


def geometry(
    width: int, height: int, params: dict[str, Any]
) -> tuple[tuple[int, int], tuple[float, float, float, float]]:
    """The output size and the region of the (upright) source it shows, for `image.resize` params."""
    want_w: int = params.get("width", 0)
    want_h: int = params.get("height", 0)
    fit, upscale = params.get("fit", "contain"), params.get("upscale", False)
    full = (0.0, 0.0, float(width), float(height))
    if fit == "fill":  # the schema requires both width and height for fill and cover
        target = (want_w, want_h) if upscale else (min(want_w, width), min(want_h, height))
        return target, full
    ratios = [r for r in (want_w / width if want_w else None, want_h / height if want_h else None) if r]
    if fit != "cover":
        scale = min(ratios) if upscale else min(*ratios, 1.0)
        return (max(1, round(width * scale)), max(1, round(height * scale))), full
    scale, out_w, out_h = max(ratios), want_w, want_h
    if scale > 1 and not upscale:  # the largest crop with the box's shape, at full resolution
        shrink = min(width / want_w, height / want_h)
        scale, out_w, out_h = 1.0, max(1, round(want_w * shrink)), max(1, round(want_h * shrink))
    # the crop fills one side exactly; rounding may overshoot it by 1e-15, which Pillow refuses
    crop_w, crop_h = min(out_w / scale, float(width)), min(out_h / scale, float(height))
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return (out_w, out_h), (left, top, left + crop_w, top + crop_h)


GRAVITIES = (
    "center",
    "top",
    "bottom",
    "left",
    "right",
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
)


class ImageCrop(ImageOperator):
    """`image.crop`: cut out a `box` [left, top, right, bottom], or `width` x `height` at a `gravity`.

    A region larger than the image is clamped to the image (nothing is padded), so a 300x200 crop of
    a 200x200 image gives 200x200.
    """

    name = "image.crop"
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Crop to a box, or to width x height placed by gravity.",
        "properties": {
            "box": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": 4,
                "maxItems": 4,
                "description": "[left, top, right, bottom] in pixels of the upright image.",
            },
            "width": {"type": "integer", "minimum": 1, "description": "Width of the region to keep."},
            "height": {"type": "integer", "minimum": 1, "description": "Height of the region to keep."},
            "gravity": {
                "enum": list(GRAVITIES),
                "default": "center",
                "description": "Where the width x height region sits in the image.",
            },
        },
        "oneOf": [{"required": ["box"]}, {"anyOf": [{"required": ["width"]}, {"required": ["height"]}]}],
        "additionalProperties": False,
    }

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The picture cut to the region."""
        picture = picture_of(value, self.name)
        width, height = picture.size
        if "box" in params:
            left, top, right, bottom = params["box"]
            if left >= right or top >= bottom:  # empty whatever the image: the rule is at fault
                raise RecipeError(
                    f"step {self.name}: crop box {params['box']} is empty: it is [left, top, right, "
                    "bottom], and right must exceed left, bottom top",
                    hint="correct the box",
                )
            right, bottom = min(right, width), min(bottom, height)
            if left >= right or top >= bottom:
                raise PermanentError(
                    f"{picture.source}: crop box {params['box']} is empty on {width}x{height}"
                )
        else:
            keep_w, keep_h = min(params.get("width", width), width), min(params.get("height", height), height)
            left, top = place((width, height), (keep_w, keep_h), params.get("gravity", "center"), 0)
            right, bottom = left + keep_w, top + keep_h
        return picture.replace(picture.pixels().crop((left, top, right, bottom)))
