"""`image.watermark`: composite a text or a logo onto a picture.

The mark is drawn on a transparent layer of its own size and alpha-composited at its place, so the
pixels outside its box are left exactly as they were. The logo and the font are project files
(`file_params`): editing either rebuilds every watermarked output.
"""

from __future__ import annotations

from typing import Any, ClassVar

from PIL import Image, ImageColor, ImageDraw, ImageFont

from batchit.errors import JobError, RecipeError
from batchit.operators.base import LARGEST_COUNT, InputFile, JobContext
from batchit.operators.image import ImageLoad, ImageOperator, picture_of, place
from batchit.operators.image_names import any_case

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")

COLOUR_PATTERN = "^({})$".format(
    "|".join(
        [
            "#([0-9A-Fa-f]{3,4}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})",
            rf"({any_case('rgb')}[Aa]?|{any_case('hs')}[LlVvBb])\([^)]*\)",
            *(any_case(name) for name in sorted(ImageColor.colormap)),
        ]
    )
)
"""The colours Pillow reads (`ImageColor.getrgb`): its CSS names in any case, #rgb[a], #rrggbb[aa],
rgb()/rgba()/hsl()/hsv()/hsb(); checked at config load, so a typo is not found job by job."""


class ImageWatermark(ImageOperator):
    """`image.watermark`: put a `text` (bundled or configured font) or an `image` at a `position`.

    `opacity` scales the mark's own alpha (0 invisible, 1 opaque); `margin` is the distance in pixels
    from the picked edges (ignored for `center`). A text's default size is 1/20 of the picture's
    height (at least 12 px); a logo keeps its size unless `scale` sets its width as a fraction of the
    picture's width. A mark that would not show whole between its margins and the picture's far
    edges is drawn smaller, to fit there. Use `when:` to skip small variants (`when: "width > 320"`).
    """

    name = "image.watermark"
    version = "3"  # 2: the logo read as image.load reads an input, a large text fit; 3: fit in margins
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Composite a text or a logo onto the image.",
        "properties": {
            "text": {"type": "string", "minLength": 1, "description": "The text to draw."},
            "image": {
                "type": "string",
                "minLength": 1,
                "description": "Project-relative path of a logo (PNG with transparency works best); "
                "its content is part of the job's key.",
            },
            "font": {
                "type": "string",
                "minLength": 1,
                "description": "Project-relative TrueType/OpenType font for `text` (default: Pillow's "
                "bundled font); its content is part of the job's key.",
            },
            "size": {
                "type": "integer",
                "minimum": 1,
                "description": "Text height in pixels; a text wider or taller than the picture less "
                "its margins is drawn smaller, to fit there.",
            },
            "color": {
                "type": "string",
                "pattern": COLOUR_PATTERN,
                "default": "white",
                "description": "Text colour: a CSS colour name (white, navy, ...), #rrggbb, #rrggbbaa, "
                "rgb(r, g, b) or hsl(h, s%, l%).",
            },
            "position": {
                "enum": list(POSITIONS),
                "default": "bottom-right",
                "description": "Where the mark goes.",
            },
            "opacity": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "default": 0.5,
                "description": "0 (invisible) to 1 (opaque), multiplied with the mark's own alpha.",
            },
            "margin": {
                "type": "integer",
                "minimum": 0,
                "maximum": LARGEST_COUNT,
                "default": 16,
                "description": "Distance in pixels between the mark and the edges it sits at.",
            },
            "scale": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1,
                "description": "A logo's width as a fraction of the picture's width (default: its own "
                "size); a logo larger than the picture less its margins is drawn smaller, to fit there.",
            },
        },
        "oneOf": [{"required": ["text"]}, {"required": ["image"]}],
        "additionalProperties": False,
    }
    file_params = ("image", "font")

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The picture with the mark composited onto it."""
        picture = picture_of(value, self.name)
        base = picture.pixels()
        position, margin = params.get("position", "bottom-right"), params.get("margin", 16)
        room = room_for_mark(base.size, position, margin)
        if "image" in params:
            mark = self._logo(ctx, params, base.width, room)
        else:
            mark = self._text(ctx, params, params.get("size") or max(12, base.height // 20), room)
        opacity: float = params.get("opacity", 0.5)
        mark.putalpha(mark.getchannel("A").point(lambda alpha: alpha * opacity))
        corner = place(base.size, mark.size, position, margin)
        layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
        layer.paste(mark, corner)
        painted = Image.alpha_composite(base.convert("RGBA"), layer)
        return picture.replace(painted if base.mode == "RGBA" else painted.convert(base.mode))

    def _logo(
        self, ctx: JobContext, params: dict[str, Any], width: int, room: tuple[int, int]
    ) -> Image.Image:
        """The logo, read as an input is, at `scale` of the picture's `width`, and no larger than `room`."""
        logo = InputFile(params["image"], ctx.project_path(params["image"]))
        try:  # read as image.load reads an input: upright, 16-bit grey scaled, CMYK through its profile
            mark: Image.Image = ImageLoad().run(logo, ctx).pixels().convert("RGBA")
        except (JobError, OSError) as exc:  # image.load's messages name the file; an OSError's may not
            named = f"{exc}" if isinstance(exc, JobError) else f"{params['image']}: {exc}"
            raise RecipeError(
                f"cannot read the watermark image: {named}",
                hint="point image: at a PNG or JPEG file in the project that Pillow can open",
            ) from exc
        scale = params.get("scale")
        if scale is not None:
            target = max(1, round(width * scale))
            height = max(1, round(mark.height * target / mark.width))
            mark = mark.resize((target, height), Image.Resampling.LANCZOS)
        fit = min(room[0] / mark.width, room[1] / mark.height)
        if fit < 1:
            smaller = (max(1, int(mark.width * fit)), max(1, int(mark.height * fit)))
            mark = mark.resize(smaller, Image.Resampling.LANCZOS)
        return mark

    def _text(self, ctx: JobContext, params: dict[str, Any], size: int, room: tuple[int, int]) -> Image.Image:
        """The text drawn at `size` on a transparent mark of its own size, at most about `room`: a
        text that would not fit is drawn smaller, to fit (drawn at its given size, it could take
        gigabytes only to be cut off)."""
        font = self._font(ctx, params, size)
        left, top, right, bottom = font.getbbox(params["text"])
        fit = min(room[0] / max(1, right - left), room[1] / max(1, bottom - top))
        if fit < 1 and size > 1:
            font = self._font(ctx, params, max(1, int(size * fit)))
            left, top, right, bottom = font.getbbox(params["text"])
        mark = Image.new("RGBA", (max(1, int(right - left)), max(1, int(bottom - top))), (0, 0, 0, 0))
        try:
            ImageDraw.Draw(mark).text(
                (-left, -top), params["text"], font=font, fill=params.get("color", "white")
            )
        except ValueError as exc:
            raise RecipeError(
                f"bad color {params.get('color')!r}: {exc}", hint="write a CSS colour name or #rrggbb"
            ) from exc
        return mark

    def _font(
        self, ctx: JobContext, params: dict[str, Any], size: int
    ) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        """The configured font, or Pillow's bundled one, at `size` pixels."""
        try:
            if "font" in params:
                return ImageFont.truetype(str(ctx.project_path(params["font"])), size)
            return ImageFont.load_default(size=size)
        except OSError as exc:
            raise RecipeError(
                f"cannot load font {params.get('font', '(bundled)')}: {exc}",
                hint="point font: at a TrueType or OpenType file in the project",
            ) from exc


def room_for_mark(size: tuple[int, int], position: str, margin: int) -> tuple[int, int]:
    """The largest mark that shows whole at `position`: the picture's size less the margin on each
    axis the mark is placed against an edge (a `center` mark has no margin)."""
    across = margin if "left" in position or "right" in position else 0
    down = margin if "top" in position or "bottom" in position else 0
    return max(1, size[0] - across), max(1, size[1] - down)
