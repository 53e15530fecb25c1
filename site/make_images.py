"""Draw the demo site's photos: small, deterministic landscapes, so the repository needs no downloads.

    .venv/bin/python site/make_images.py     # rewrites site/images/ (the result is committed)

Each picture is smooth shapes and gradients, which JPEG compresses well, and the poster is a
four-colour palette PNG, so the six 1600-pixel images stay under 200 KB together. Two photos carry
what real camera files carry: one is stored sideways with EXIF orientation 6 (the gallery shows it
upright), one has GPS coordinates in its EXIF (the published variants do not).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SIZE = (1600, 1067)

SCENES = {
    "dawn": ((255, 183, 130), (92, 70, 140), (58, 44, 92)),
    "noon": ((130, 190, 255), (230, 244, 255), (60, 120, 70)),
    "dusk": ((250, 120, 90), (60, 40, 90), (30, 30, 50)),
    "winter": ((200, 215, 235), (250, 250, 255), (150, 165, 190)),
    "desert": ((120, 180, 240), (250, 225, 180), (205, 150, 90)),
}
"""Name -> (sky top, sky horizon, ground) colours."""


def landscape(
    top: tuple[int, int, int], horizon: tuple[int, int, int], ground: tuple[int, int, int]
) -> Image.Image:
    """A sky gradient, a sun and three ranges of hills, softened so JPEG keeps it small."""
    width, height = SIZE
    image = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        mix = y / height
        draw.line(
            [(0, y), (width, y)],
            fill=tuple(round(a + (b - a) * mix) for a, b in zip(top, horizon, strict=True)),
        )
    draw.ellipse((width * 0.66, height * 0.12, width * 0.78, height * 0.30), fill=(255, 236, 180))
    for depth in range(3):
        shade = tuple(round(c * (0.6 + 0.2 * depth)) for c in ground)
        base = height * (0.55 + 0.12 * depth)
        amplitude, period = 90 - 25 * depth, 260 + 90 * depth
        points = [(0, height)] + [
            (x, base - amplitude * (1 + math.sin(x / period + depth * 2.1)) * (1 + 0.3 * math.sin(x / 97)))
            for x in range(0, width + 20, 20)
        ]
        draw.polygon([*points, (width, height)], fill=shade)
    return image.filter(ImageFilter.GaussianBlur(3))


def main() -> None:
    """Write site/images/: five landscapes (one stored sideways, one with GPS tags) and a PNG poster."""
    out = HERE / "images"
    out.mkdir(exist_ok=True)
    for name, colours in SCENES.items():
        image = landscape(*colours)
        exif = Image.Exif()
        if name == "dusk":  # stored sideways, as a phone held upright writes it
            image = image.transpose(Image.Transpose.ROTATE_90)
            exif[0x0112] = 6
        if name == "noon":  # where it was taken: the published variants must not tell
            exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}
        image.save(out / f"{name}.jpg", quality=70, optimize=True, exif=exif.tobytes())
    poster = Image.new("P", SIZE)
    poster.putpalette([20, 30, 60, 240, 200, 60, 220, 80, 70, 250, 250, 245])
    draw = ImageDraw.Draw(poster)
    for index in range(8):
        draw.rectangle((100 + index * 180, 200, 220 + index * 180, 860), fill=1 + index % 3)
    poster.save(out / "poster.png", optimize=True)


if __name__ == "__main__":
    main()
