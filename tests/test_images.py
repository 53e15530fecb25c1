"""The image operators, called directly on images drawn in the test (SPEC section 11).

Each test draws its input with Pillow, runs the operators the way a worker does (an `InputFile`
through `image.load`, then the other steps) and checks the decoded result: sizes, orientation,
pixels, metadata. Build-level behaviour (guards, failures, the preset) is in test_images_build.py.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from PIL import ExifTags, Image, ImageChops, ImageDraw

from batchit.errors import PermanentError, RecipeError
from batchit.operators.base import InputFile, JobContext
from batchit.operators.image import ImageLoad, Picture
from batchit.operators.image_paint import ImageWatermark
from batchit.operators.image_resize import ImageCrop, ImageResize
from batchit.operators.image_save import ImageSave, ImageStripMetadata

GPS = ExifTags.IFD.GPSInfo


def ctx(root: Path) -> JobContext:
    """The job context of a one-input image job."""
    return JobContext(input="in.jpg", output="out.png", rule="images", key="cd" * 32, root=root)


def write_image(root: Path, name: str, image: Image.Image, fmt: str, **options: Any) -> InputFile:
    """Save `image` into the project and return it as a pipeline's first value."""
    path = root / name
    image.save(path, fmt, **options)
    return InputFile(name, path)


def pipeline(root: Path, value: Any, *steps: tuple[Any, dict[str, Any]]) -> Any:
    """Run `image.load` and then each (operator, params) step on `value`."""
    job = ctx(root)
    value = ImageLoad().run(value, job)
    for operator, params in steps:
        value = operator.run(value, job, **params)
    return value


def decoded(data: bytes) -> Image.Image:
    """The image an encoded output decodes to."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class FitCase(NamedTuple):
    source: tuple[int, int]
    params: dict[str, Any]
    expected: tuple[int, int]


FIT_CASES = {
    "contain-width": FitCase((400, 200), {"width": 100}, (100, 50)),
    "contain-height": FitCase((400, 200), {"height": 50}, (100, 50)),
    "contain-box": FitCase((400, 200), {"width": 100, "height": 100}, (100, 50)),
    "cover-box": FitCase((400, 200), {"width": 100, "height": 100, "fit": "cover"}, (100, 100)),
    "fill-box": FitCase((400, 200), {"width": 100, "height": 100, "fit": "fill"}, (100, 100)),
    "contain-no-upscale": FitCase((80, 40), {"width": 100}, (80, 40)),
    "contain-upscale": FitCase((80, 40), {"width": 160, "upscale": True}, (160, 80)),
    "cover-no-upscale": FitCase((80, 40), {"width": 100, "height": 100, "fit": "cover"}, (40, 40)),
    "fill-no-upscale": FitCase((80, 40), {"width": 100, "height": 30, "fit": "fill"}, (80, 30)),
    # sizes whose crop, in floating point, came out a hair wider than the image (a negative offset)
    "cover-exact-side": FitCase((156, 52), {"width": 90, "height": 30, "fit": "cover"}, (90, 30)),
    "cover-upscale-exact-side": FitCase(
        (92, 31), {"width": 150, "height": 100, "fit": "cover", "upscale": True}, (150, 100)
    ),
}


@pytest.mark.parametrize("case", FIT_CASES.values(), ids=FIT_CASES.keys())
def test_resize_gives_the_size_each_fit_promises(root: Path, case: FitCase) -> None:
    source = write_image(root, "in.png", Image.new("RGB", case.source, "teal"), "PNG")
    data = pipeline(root, source, (ImageResize(), case.params), (ImageSave(), {"format": "png"}))
    assert decoded(data).size == case.expected


def test_an_upscale_past_pillows_pixel_limit_is_a_fault_of_the_rule_not_a_hang(root: Path) -> None:
    source = write_image(root, "in.png", Image.new("RGB", (400, 300), "teal"), "PNG")
    params = {"width": 100_000, "upscale": True}  # 100000x75000: 22 GB of pixels
    with pytest.raises(RecipeError, match="would grow to 100000x75000"):
        pipeline(root, source, (ImageResize(), params), (ImageSave(), {"format": "png"}))


def test_cover_crops_the_overflow_evenly_from_both_sides(root: Path) -> None:
    image = Image.new("RGB", (300, 100), "white")
    ImageDraw.Draw(image).rectangle((0, 0, 99, 99), fill="red")  # left third red
    source = write_image(root, "in.png", image, "PNG")
    params = {"width": 100, "height": 100, "fit": "cover"}
    out = decoded(pipeline(root, source, (ImageResize(), params), (ImageSave(), {"format": "png"})))
    assert out.getpixel((50, 50)) == (255, 255, 255)  # the middle third is what remains


def draft_source(root: Path) -> InputFile:
    """A 1600x1200 JPEG photo-sized input."""
    image = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    return write_image(root, "in.jpg", image, "JPEG", quality=90)


def test_resize_decodes_a_jpeg_at_a_reduced_scale_when_the_width_allows(root: Path) -> None:
    picture = ImageResize().run(ImageLoad().run(draft_source(root), ctx(root)), ctx(root), width=320)
    assert isinstance(picture, Picture)
    assert picture.draft_scale == 2  # 1600 / 2 = 800 >= 2 x 320: decoded at 800x600, not 1600x1200
    assert picture.size == (320, 240)


def test_draft_false_decodes_every_pixel_and_gives_the_same_size(root: Path) -> None:
    source = draft_source(root)
    drafted = pipeline(root, source, (ImageResize(), {"width": 320}), (ImageSave(), {"format": "png"}))
    picture = ImageLoad().run(source, ctx(root), draft=False)
    full = ImageResize().run(picture, ctx(root), width=320)
    assert full.draft_scale == 1
    assert full.size == decoded(drafted).size == (320, 240)


def test_no_draft_when_the_target_needs_the_full_resolution(root: Path) -> None:
    picture = ImageResize().run(ImageLoad().run(draft_source(root), ctx(root)), ctx(root), width=1280)
    assert picture.draft_scale == 1


@pytest.mark.parametrize("orientation", [2, 3, 7, 8])
def test_a_drafted_jpeg_that_its_orientation_flips_lines_up_with_a_full_decode(
    root: Path, orientation: int
) -> None:
    grid = Image.new("RGB", (1601, 1203))  # not a multiple of the 8x8 blocks: the last ones are partial
    draw = ImageDraw.Draw(grid)
    for x in range(0, 1601, 50):
        draw.line([(x, 0), (x, 1203)], fill="white", width=3)
    for y in range(0, 1203, 50):
        draw.line([(0, y), (1601, y)], fill="red", width=3)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    source = write_image(root, "grid.jpg", grid, "JPEG", quality=95, exif=exif.tobytes())
    drafted = ImageResize().run(ImageLoad().run(source, ctx(root)), ctx(root), width=200)
    full = ImageResize().run(ImageLoad().run(source, ctx(root), draft=False), ctx(root), width=200)
    assert drafted.draft_scale > 1
    worst = ImageChops.difference(drafted.pixels(), full.pixels()).convert("L").getextrema()[1]
    assert worst <= 40, "shifted by the partial block's missing part (up to 103 before)"


def sideways(orientation: int) -> Image.Image:
    """A 40x20 image stored sideways: red on its top half (which is the left or right when shown)."""
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 40, 10))
    return image


@pytest.mark.parametrize(
    ("orientation", "red_at"),
    [(6, (15, 20)), (8, (5, 20))],
    ids=["orientation-6-rotated-cw", "orientation-8-rotated-ccw"],
)
def test_exif_orientation_is_applied(root: Path, orientation: int, red_at: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = write_image(root, "in.jpg", sideways(orientation), "JPEG", quality=95, exif=exif.tobytes())
    out = decoded(pipeline(root, source, (ImageSave(), {"format": "png"})))
    assert out.size == (20, 40)  # upright: the stored 40x20 turned a quarter
    red, _, blue = out.getpixel(red_at)  # type: ignore[misc]
    assert red > 200 and blue < 60
    assert out.getexif().get(0x0112) is None  # applied, so not written again


def photo_with_gps(root: Path) -> InputFile:
    exif = Image.Exif()
    exif[GPS] = {1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 53.0, 0.0)}
    exif[0x010F] = "batchit camera"  # Make
    return write_image(root, "in.jpg", Image.new("RGB", (64, 48), "olive"), "JPEG", exif=exif.tobytes())


def test_gps_is_gone_after_strip_metadata(root: Path) -> None:
    steps = ((ImageStripMetadata(), {}), (ImageSave(), {"format": "jpeg"}))
    out = decoded(pipeline(root, photo_with_gps(root), *steps))
    assert not out.getexif().get_ifd(GPS)
    assert not out.getexif()


def test_metadata_is_kept_without_strip_metadata(root: Path) -> None:
    out = decoded(pipeline(root, photo_with_gps(root), (ImageSave(), {"format": "jpeg"})))
    assert out.getexif().get_ifd(GPS)[1] == "N"


def test_strip_metadata_keeps_the_colour_profile_when_asked(root: Path) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = write_image(root, "in.png", Image.new("RGB", (8, 8), "red"), "PNG", icc_profile=icc)
    kept = decoded(
        pipeline(root, source, (ImageStripMetadata(), {"keep": ["icc"]}), (ImageSave(), {"format": "webp"}))
    )
    dropped = decoded(pipeline(root, source, (ImageStripMetadata(), {}), (ImageSave(), {"format": "webp"})))
    assert kept.info.get("icc_profile") == icc
    assert not dropped.info.get("icc_profile")


def test_watermark_changes_pixels_only_inside_its_box(root: Path) -> None:
    base = write_image(root, "in.png", Image.new("RGB", (200, 100), (40, 40, 40)), "PNG")
    Image.new("RGBA", (20, 10), (255, 255, 255, 255)).save(root / "logo.png")
    params = {"image": "logo.png", "position": "bottom-right", "margin": 5, "opacity": 0.5}
    out = decoded(pipeline(root, base, (ImageWatermark(), params), (ImageSave(), {"format": "png"})))
    changed = ImageChops.difference(out.convert("RGB"), Image.new("RGB", (200, 100), (40, 40, 40))).getbbox()
    assert changed == (175, 85, 195, 95)  # 200 - 5 - 20 .. 200 - 5, and 100 - 5 - 10 .. 100 - 5
    assert out.getpixel((185, 90)) == (148, 148, 148)  # halfway from 40 to 255


def test_a_logo_is_read_as_an_input_is_upright_and_in_8_bits(root: Path) -> None:
    """A 16-bit grey logo (mid-grey) is not clipped to white; a JPEG logo a phone stored sideways
    (EXIF orientation 6) is pasted upright: 10 wide and 20 tall, not 20 x 10."""
    base = write_image(root, "in.png", Image.new("RGB", (100, 60), "black"), "PNG")
    Image.new("I;16", (10, 10), 32768).save(root / "grey.png")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    Image.new("RGB", (20, 10), "white").save(root / "phone.jpg", exif=exif)
    params = {"position": "top-left", "margin": 0, "opacity": 1.0}
    save = (ImageSave(), {"format": "png"})
    grey = decoded(pipeline(root, base, (ImageWatermark(), {**params, "image": "grey.png"}), save))
    assert abs(grey.getpixel((5, 5))[0] - 128) <= 1  # type: ignore[index]
    phone = decoded(pipeline(root, base, (ImageWatermark(), {**params, "image": "phone.jpg"}), save))
    assert ImageChops.difference(phone, Image.new("RGB", (100, 60), "black")).getbbox() == (0, 0, 10, 20)


def test_text_watermark_draws_in_its_corner_with_the_bundled_font(root: Path) -> None:
    base = write_image(root, "in.png", Image.new("RGB", (300, 200), "black"), "PNG")
    params = {"text": "batchit", "position": "top-left", "margin": 10, "opacity": 1.0, "size": 20}
    out = decoded(pipeline(root, base, (ImageWatermark(), params), (ImageSave(), {"format": "png"})))
    box = ImageChops.difference(out.convert("RGB"), Image.new("RGB", (300, 200), "black")).getbbox()
    assert box is not None
    left, top, right, bottom = box
    assert left >= 10 and top >= 10 and right <= 150 and bottom <= 40


class CropCase(NamedTuple):
    params: dict[str, Any]
    expected_size: tuple[int, int]
    expected_colour: tuple[int, int, int]


CROP_CASES = {
    "box": CropCase({"box": [0, 0, 50, 40]}, (50, 40), (255, 0, 0)),
    "gravity-right": CropCase({"width": 50, "gravity": "right"}, (50, 100), (0, 0, 255)),
    "gravity-center": CropCase({"width": 20, "height": 20}, (20, 20), (0, 0, 255)),
    "larger-than-image": CropCase({"width": 500, "height": 500}, (200, 100), (255, 0, 0)),
}


@pytest.mark.parametrize("case", CROP_CASES.values(), ids=CROP_CASES.keys())
def test_crop_keeps_the_region_asked_for(root: Path, case: CropCase) -> None:
    image = Image.new("RGB", (200, 100), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 60, 100))
    source = write_image(root, "in.png", image, "PNG")
    out = decoded(pipeline(root, source, (ImageCrop(), case.params), (ImageSave(), {"format": "png"})))
    assert out.size == case.expected_size
    assert out.getpixel((0, 0)) == case.expected_colour


@pytest.mark.parametrize(
    ("box", "fault"),
    [([10, 10, 10, 20], RecipeError), ([20, 10, 10, 20], RecipeError), ([300, 0, 400, 50], PermanentError)],
    ids=["no-width", "right-of-left", "outside-this-image"],
)
def test_a_crop_box_empty_on_any_image_is_the_rules_fault_one_outside_this_image_the_inputs(
    root: Path, box: list[int], fault: type[Exception]
) -> None:
    source = write_image(root, "in.png", Image.new("RGB", (200, 100), "teal"), "PNG")
    with pytest.raises(PermanentError) as caught:  # RecipeError is a PermanentError that quarantines nothing
        pipeline(root, source, (ImageCrop(), {"box": box}), (ImageSave(), {"format": "png"}))
    assert type(caught.value) is fault


class ModeCase(NamedTuple):
    image: Image.Image
    fmt: str
    mode: str


MODE_CASES = {
    "cmyk-jpeg": ModeCase(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", "RGB"),
    "palette": ModeCase(Image.new("P", (16, 16), 3), "PNG", "RGB"),
    "16-bit-grey": ModeCase(Image.new("I;16", (16, 16), 65535), "PNG", "L"),
    "grey-alpha": ModeCase(Image.new("LA", (16, 16), (128, 100)), "PNG", "RGBA"),
}


@pytest.mark.parametrize("case", MODE_CASES.values(), ids=MODE_CASES.keys())
def test_unusual_modes_are_converted_to_a_working_mode(root: Path, case: ModeCase) -> None:
    source = write_image(root, f"in.{case.fmt.lower()}", case.image, case.fmt)
    picture = pipeline(root, source, (ImageResize(), {"width": 8}))
    assert picture.pixels().mode == case.mode


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(root: Path) -> None:
    source = write_image(root, "in.png", Image.new("I;16", (4, 4), 32768), "PNG")
    assert pipeline(root, source).pixels().getpixel((0, 0)) == 128


def animated_gif(root: Path) -> InputFile:
    frames = []
    for index in range(3):
        frame = Image.new("RGB", (30, 30), "white")
        ImageDraw.Draw(frame).rectangle((index * 10, 0, index * 10 + 9, 29), fill="black")
        frames.append(frame)
    frames[0].save(root / "in.gif", save_all=True, append_images=frames[1:], duration=100)
    return InputFile("in.gif", root / "in.gif")


def test_an_animated_gif_gives_its_first_frame(root: Path) -> None:
    out = decoded(pipeline(root, animated_gif(root), (ImageSave(), {"format": "png"})))
    assert out.convert("L").getpixel((5, 5)) == 0 and out.convert("L").getpixel((15, 5)) == 255


def test_an_animated_image_is_refused_when_asked(root: Path) -> None:
    with pytest.raises(PermanentError, match="animated"):
        ImageLoad().run(animated_gif(root), ctx(root), animated="error")


@pytest.mark.parametrize("fmt", ["webp", "avif", "jpeg", "png"])
def test_save_writes_each_format_and_checks_it_decodes(root: Path, fmt: str) -> None:
    source = write_image(root, "in.png", Image.new("RGBA", (40, 30), (10, 200, 30, 128)), "PNG")
    params: dict[str, Any] = {"format": fmt} if fmt == "png" else {"format": fmt, "quality": "high"}
    out = decoded(pipeline(root, source, (ImageSave(), params)))
    assert (out.format, out.size) == ({"jpeg": "JPEG"}.get(fmt, fmt.upper()), (40, 30))


def test_avif_without_libavif_is_the_rules_fault_not_the_inputs(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Pillow built without libavif fails every avif job: a RecipeError, so no input is
    quarantined (and kept so once a Pillow with AVIF is installed)."""
    from PIL import features

    monkeypatch.setattr(features, "check", lambda feature: feature != "avif")
    source = write_image(root, "in.png", Image.new("RGB", (8, 8), "teal"), "PNG")
    with pytest.raises(RecipeError, match="no AVIF support"):
        pipeline(root, source, (ImageSave(), {"format": "avif"}))


def test_quality_presets_are_ordered_by_size(root: Path) -> None:
    image = Image.linear_gradient("L").resize((256, 256)).convert("RGB").rotate(30)
    source = write_image(root, "in.png", image, "PNG")
    sizes = [
        len(pipeline(root, source, (ImageSave(), {"format": "webp", "quality": level})))
        for level in ("low", "medium", "high")
    ]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_png_quality_names_trade_effort_for_size_and_keep_every_pixel(root: Path) -> None:
    image = Image.linear_gradient("L").resize((256, 256)).convert("RGB").rotate(30)
    source = write_image(root, "in.png", image, "PNG")
    saved = {
        level: pipeline(root, source, (ImageSave(), {"format": "png", "quality": level}))
        for level in ("low", "medium", "high")
    }
    assert len(saved["low"]) > len(saved["medium"]) >= len(saved["high"])
    pixels = {level: decoded(data).tobytes() for level, data in saved.items()}
    assert pixels["low"] == pixels["medium"] == pixels["high"] == image.tobytes()


def test_the_key_holds_pillow_and_codec_versions() -> None:
    versions = ImageResize().library_versions()
    assert {"pillow", "libjpeg", "libwebp", "libavif", "zlib"} <= set(versions)
    assert versions["pillow"] == Image.__version__


def test_max_pixels_refuses_before_decoding(root: Path) -> None:
    source = write_image(root, "in.png", Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(PermanentError, match="10000 pixels, over 9999"):
        ImageLoad().run(source, ctx(root), max_pixels=9999)


def test_formats_refuses_other_formats(root: Path) -> None:
    source = write_image(root, "in.png", Image.new("RGB", (10, 10)), "PNG")
    with pytest.raises(PermanentError, match="is PNG, not one of"):
        ImageLoad().run(source, ctx(root), formats=["jpeg"])


def test_an_image_step_without_image_load_says_what_is_missing(root: Path) -> None:
    with pytest.raises(PermanentError, match=r"put image\.load before"):
        ImageResize().run(b"bytes", ctx(root), width=10)
