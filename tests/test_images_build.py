"""Image builds through the real `batchit` command: guards, permanent errors, the bundled preset.

The inputs are drawn in the test; a bomb is a few hundred bytes of PNG that only declare a huge size,
a truncated JPEG is half of a real one.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import subprocess
import sys
import zlib

import pytest
from conftest import Project
from PIL import ExifTags, Image, ImageChops

RESIZE_RULE = """\
version: 1
out: _build
rules:
  thumbs:
    inputs: ["images/*"]
    output: "{stem}.webp"
    steps:
      - image.load: {}
      - image.resize: {width: 64}
      - image.save: {format: webp}
"""


def jpeg(size: tuple[int, int] = (320, 240), colour: str = "navy", **options: object) -> bytes:
    """A real JPEG of one colour, with a gradient so it has some content to cut in half."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste(colour, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A valid little PNG whose header claims `width` x `height` pixels (it holds one row of zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def failures_by_input(project: Project) -> dict[str, dict[str, object]]:
    """The latest manifest's failures, by input path."""
    return {str(f["input"]): f for f in project.manifest()["failures"]}


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("bomb.png", png_declaring(100_000, 100_000), "decompression bomb"),
        ("almost.png", png_declaring(10_000, 9_000), "decompression bomb"),
        ("cut.jpg", jpeg()[:1500], "cannot decode"),
        ("empty.jpg", b"", "images/empty.jpg is empty (0 bytes), not an image"),
    ],
    ids=["over-twice-pillows-limit", "over-pillows-limit-a-warning-made-an-error", "truncated-jpeg", "empty"],
)
def test_a_bad_image_is_a_permanent_failure_and_the_rest_is_built(
    project: Project, name: str, data: bytes, message: str
) -> None:
    project.config(RESIZE_RULE)
    project.write({"images/good.jpg": jpeg(), f"images/{name}": data})
    result = project.build(expect=1)
    assert "Warning" not in result.stderr, result.stderr
    assert (project.root / "_build" / "good.webp").is_file()
    failure = failures_by_input(project)[f"images/{name}"]
    assert failure["class"] == "PermanentError"
    assert message in str(failure["message"])
    assert [o["path"] for o in project.manifest()["outputs"]] == ["good.webp"]


CLEARS_WARNING_FILTERS = """\
import warnings
from pathlib import Path

def clear(value, ctx):
    warnings.resetwarnings()  # user code in the same process may drop every warning filter
    return Path("held/almost.png").read_bytes()
"""


def test_a_bomb_is_refused_even_after_user_code_cleared_the_warning_filters(project: Project) -> None:
    project.config(
        RESIZE_RULE
        + """\
  clear:
    inputs: {rule: thumbs}
    aggregate: true
    output: almost.png
    steps:
      - python: {function: "clearing:clear", version: "1"}
  again:
    inputs: {rule: clear}
    output: "again/{stem}.webp"
    steps:
      - image.load: {}
      - image.resize: {width: 64}
      - image.save: {format: webp}
"""
    )
    project.write({"clearing.py": CLEARS_WARNING_FILTERS, "images/good.jpg": jpeg()})
    project.write({"held/almost.png": png_declaring(10_000, 9_000)})
    project.build("-j", "1", expect=1)  # a few jobs: one worker thread of the coordinator runs them all
    [failure] = project.manifest()["failures"]
    assert (failure["rule"], failure["class"]) == ("again", "PermanentError")
    assert "decompression bomb" in str(failure["message"])


def test_inputs_in_formats_image_save_does_not_write_still_build(project: Project) -> None:
    """image.save registers only its own encoders with Pillow; other formats must still open."""
    project.config(RESIZE_RULE)
    picture = Image.open(io.BytesIO(jpeg()))
    files: dict[str, str | bytes] = {}
    for name, kind in (("scan.tif", "TIFF"), ("icon.bmp", "BMP"), ("old.ppm", "PPM")):
        buffer = io.BytesIO()
        picture.save(buffer, kind)
        files[f"images/{name}"] = buffer.getvalue()
    project.write(files)
    project.build()
    for stem in ("scan", "icon", "old"):
        with Image.open(project.root / "_build" / f"{stem}.webp") as built:
            assert (built.format, built.width) == ("WEBP", 64)


def test_a_tiffs_own_layout_tags_are_not_written_as_the_outputs_exif(project: Project) -> None:
    """A TIFF's tags are its EXIF to Pillow: where its strips lie (here 8 bytes for each of 10,000
    rows, more than a JPEG's EXIF can hold), its size and colour space. They describe the scan,
    not the output, and the photo's own tags (Make) are what is kept."""
    project.config(RESIZE_RULE.replace("{format: webp}", "{format: jpeg}").replace(".webp", ".jpg"))
    buffer = io.BytesIO()
    Image.new("CMYK", (20, 10_000), "white").save(buffer, "TIFF", tiffinfo={278: 1, 271: "scanner"})
    project.write({"images/scan.tif": buffer.getvalue()})
    project.build()
    built = project.root / "_build" / "scan.jpg"
    with Image.open(built) as image:
        exif = image.getexif()
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (20, 10_000))
    assert exif.get(ExifTags.Base.Make) == "scanner"
    layout = (ExifTags.Base.StripOffsets, ExifTags.Base.ImageWidth, ExifTags.Base.PhotometricInterpretation)
    assert not set(exif) & set(layout), dict(exif)
    assert built.stat().st_size < 50_000


def test_max_pixels_refuses_an_image_before_decoding_it(project: Project) -> None:
    project.config(RESIZE_RULE.replace("image.load: {}", "image.load: {max_pixels: 10000}"))
    project.write({"images/small.jpg": jpeg((80, 80)), "images/large.jpg": jpeg((200, 200))})
    project.build(expect=1)
    assert "40000 pixels, over 10000" in str(failures_by_input(project)["images/large.jpg"]["message"])
    assert (project.root / "_build" / "small.webp").is_file()


@pytest.mark.parametrize(
    ("options", "fix"),
    [
        ("format: png, quality: 80", "png is lossless: its quality is a compression effort, low, medium"),
        ("format: avif, lossless: true", "jpeg and avif cannot be lossless: remove `lossless: true`"),
        ("format: webp, progressive: true", "only jpeg is progressive: remove `progressive: true`"),
    ],
    ids=["png-quality", "avif-lossless", "webp-progressive"],
)
def test_an_option_the_format_cannot_take_is_a_config_error_saying_why(
    project: Project, options: str, fix: str
) -> None:
    project.config(RESIZE_RULE.replace("{format: webp}", "{" + options + "}"))
    project.write({"images/a.jpg": jpeg()})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "rule 'thumbs': step 3 (image.save) parameter" in result.stderr, result.describe()
    assert f"fix: {fix}" in result.stderr, result.describe()


def test_the_image_preset_saves_png_when_asked(project: Project) -> None:
    """The preset always passes its `quality` (a name): png takes it as compression effort."""
    project.config(PRESET.replace("watermark_from: 1280}", "watermark_from: 1280, format: png}"))
    project.write({"images/a.jpg": jpeg((1600, 1200), "teal")})
    project.build()
    [small] = (project.root / "_build/img").glob("a-320-*.png")
    with Image.open(small) as image:
        assert (image.format, image.size) == ("PNG", (320, 240))


def photo_with_gps() -> bytes:
    """A black 1600x1200 photo that says where it was taken."""
    exif = Image.Exif()
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (52.0, 22.0, 0.0)}
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 1200), "black").save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


PRESET = """\
version: 1
out: _build
include: [batchit:images]
rules:
  photos:
    preset: responsive_images
    with: {src: ["images/*.jpg"], widths: [320, 1280], watermark: "WM", watermark_from: 1280}
  cdn:
    preset: cdn_manifest
    with: {of: photos, base_url: "https://cdn.example/"}
"""


@pytest.fixture
def preset_build(project: Project) -> Project:
    """A project built once with the bundled image presets (two photos, two widths)."""
    project.config(PRESET)
    project.write({"images/a.jpg": photo_with_gps(), "images/b.jpg": jpeg((1600, 1200), "maroon")})
    project.build()
    return project


def test_the_image_preset_names_variants_by_width_and_key(preset_build: Project) -> None:
    names = sorted(p.name for p in (preset_build.root / "_build" / "img").iterdir())
    assert [n.rsplit("-", 1)[0] for n in names] == ["a-1280", "a-320", "b-1280", "b-320"]
    assert all(len(n.rsplit("-", 1)[1]) == len("12345678.webp") for n in names)


def test_the_cdn_manifest_maps_each_source_to_its_variants(preset_build: Project) -> None:
    out = preset_build.root / "_build"
    manifest = json.loads((out / "cdn-manifest.json").read_text("utf-8"))
    assert sorted(manifest) == ["images/a.jpg", "images/b.jpg"]
    variants = manifest["images/a.jpg"]
    assert [v["width"] for v in variants] == [320, 1280]
    for variant in variants:
        path = out / variant["path"]
        assert variant["size"] == path.stat().st_size
        assert variant["url"] == f"https://cdn.example/{variant['path']}"
        assert len(variant["blake3"]) == 64


def test_the_preset_watermarks_only_the_large_variants_and_strips_gps(preset_build: Project) -> None:
    images = {p.name.rsplit("-", 1)[0]: p for p in (preset_build.root / "_build" / "img").iterdir()}
    for name, marked in (("a-320", False), ("a-1280", True)):
        with Image.open(images[name]) as image:
            corner = image.convert("L").crop(
                (image.width * 3 // 4, image.height * 3 // 4, image.width, image.height)
            )
            assert (corner.getextrema()[1] > 100) is marked, name  # white text on black, or none
            assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)


def test_a_second_build_of_the_preset_does_nothing(preset_build: Project) -> None:
    preset_build.build()
    summary = preset_build.manifest()["summary"]
    assert (summary["built"], summary["up_to_date"]) == (0, 5)


def test_moving_a_source_rebuilds_the_cdn_manifest(preset_build: Project) -> None:
    (preset_build.root / "images" / "b.jpg").rename(preset_build.root / "images" / "c.jpg")
    preset_build.build()
    manifest = json.loads((preset_build.root / "_build" / "cdn-manifest.json").read_text("utf-8"))
    assert sorted(manifest) == ["images/a.jpg", "images/c.jpg"]


def test_the_preset_refuses_input_formats_it_was_not_given(project: Project) -> None:
    project.config(PRESET.replace('src: ["images/*.jpg"]', 'src: ["images/*"], formats: [JPEG]'))
    project.write({"images/a.jpg": jpeg((1600, 1200)), "images/b.png": png_declaring(100, 100)})
    project.build(expect=1)
    assert "is PNG, not one of ['JPEG']" in str(failures_by_input(project)["images/b.png"]["message"])


def test_an_image_cdn_manifest_is_stable_across_builds(preset_build: Project) -> None:
    before = (preset_build.root / "_build" / "cdn-manifest.json").read_bytes()
    preset_build.build("--force")
    assert (preset_build.root / "_build" / "cdn-manifest.json").read_bytes() == before


def test_a_broken_photo_is_quarantined_once_however_many_widths_it_has(project: Project) -> None:
    project.config(PRESET.replace("widths: [320, 1280]", "widths: [32, 64, 128]"))
    good = jpeg((200, 150))
    project.write({"images/good.jpg": good, "images/bad.jpg": good[: len(good) // 2]})
    result = project.build(expect=1)
    assert result.stderr.count("warning: quarantined images/bad.jpg") == 1
    assert "  1 input(s) stay quarantined" in result.stdout
    assert project.manifest()["summary"]["quarantined"] == 3  # per job: one per width
    listed = json.loads(project.run("quarantine", "list", "--json").stdout)
    assert [(q["rule"], q["input"]) for q in listed] == [("photos", "images/bad.jpg")]
    assert "1 input(s) stay quarantined" in project.build(expect=1).stdout

    released = project.run("quarantine", "release", "images/bad.jpg")
    assert "released 1 input(s)" in released.stdout, released.describe()
    assert json.loads(project.run("quarantine", "list", "--json").stdout) == []
    audit = [json.loads(line) for line in (project.root / ".batchit/audit.log").read_text().splitlines()]
    assert [e["kind"] for e in audit] == ["quarantine", "run", "run", "release"]
    project.build(expect=1)  # still broken: all three widths tried again, quarantined once again
    assert len(json.loads(project.run("quarantine", "list", "--json").stdout)) == 1


GUARDED_COPY = """\
version: 1
out: _build
rules:
  copy:
    inputs: ["images/*"]
    output: "{name}"
    validate: {image: {max_pixels: 10000, formats: [PNG]}}
    steps:
      - file.copy: {}
  thumbs:
    inputs: ["images/*"]
    output: "{stem}.webp"
    validate: {image: {max_pixels: 10000, formats: [PNG]}}
    steps:
      - image.load: {max_pixels: 100000000, formats: [JPEG, PNG]}
      - image.save: {format: webp}
"""
"""The same `validate.image` on a rule without image.load and on one whose image.load is looser."""


def test_validate_image_guards_every_rule_before_any_step(project: Project) -> None:
    project.config(GUARDED_COPY)
    project.write(
        {
            "images/small.png": png_declaring(100, 100),
            "images/large.png": png_declaring(200, 200),
            "images/photo.jpg": jpeg((80, 80)),
            "images/notes.png": "not an image",
        }
    )
    project.build(expect=1)
    failures = {(f["rule"], f["input"]): str(f["message"]) for f in project.manifest()["failures"]}
    for rule in ("copy", "thumbs"):
        assert "40000 pixels, over 10000 (validate.image)" in failures[rule, "images/large.png"]
        assert "is JPEG, not one of ['PNG'] (validate.image)" in failures[rule, "images/photo.jpg"]
        assert "images/notes.png is not an image" in failures[rule, "images/notes.png"]
    assert sorted(o["path"] for o in project.manifest()["outputs"]) == ["small.png", "small.webp"]


@pytest.mark.parametrize(
    ("step", "where"),
    [
        ("image.load: {formats: [JPG]}", "'formats[0]' is not valid: 'JPG'"),
        ("image.watermark: {text: hi, color: notacolour}", "'color' is not valid: 'notacolour'"),
    ],
    ids=["format-name", "colour"],
)
def test_a_misspelt_format_or_colour_is_a_config_error(project: Project, step: str, where: str) -> None:
    project.config(RESIZE_RULE.replace("image.resize: {width: 64}", step))
    project.write({"images/a.jpg": jpeg()})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "batchit.yaml:" in result.stderr and "rule 'thumbs'" in result.stderr and where in result.stderr
    assert not (project.root / "_build").exists()


def test_a_misspelt_format_in_validate_is_a_config_error(project: Project) -> None:
    project.config(
        GUARDED_COPY.replace(
            "formats: [PNG]}}\n    steps:\n      - file", "formats: [TIF]}}\n    steps:\n      - file"
        )
    )
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "'TIF'" in result.stderr and "TIFF (not TIF)" in result.stderr


@pytest.mark.parametrize(
    ("mark", "files"),
    [
        ("{text: hi, font: fonts/brand.ttf}", {"fonts/brand.ttf": "not a font"}),
        ("{image: logo.png}", {"logo.png": "not an image"}),
        ("{text: hi, color: 'rgb(1, 2)'}", {}),
    ],
    ids=["font", "logo", "colour"],
)
def test_a_recipe_fault_fails_the_jobs_and_quarantines_no_input(
    project: Project, mark: str, files: dict[str, str | bytes]
) -> None:
    project.config(RESIZE_RULE.replace("image.resize: {width: 64}", f"image.watermark: {mark}"))
    project.write({"images/a.jpg": jpeg(), "images/b.jpg": jpeg(colour="maroon"), **files})
    result = project.build(expect=1)
    assert [f["class"] for f in project.manifest()["failures"]] == ["RecipeError", "RecipeError"]
    for named in files:  # once: the message names the file, but does not stutter
        assert all(f["message"].count(named) == 1 for f in project.manifest()["failures"]), result.stderr
    assert "quarantined" not in result.stderr
    assert json.loads(project.run("quarantine", "list", "--json").stdout) == []
    project.config(RESIZE_RULE.replace("image.resize: {width: 64}", "image.watermark: {text: hi}"))
    project.build()  # the recipe fixed, every input builds: nothing to release
    assert sorted(p.name for p in (project.root / "_build").glob("*.webp")) == ["a.webp", "b.webp"]


def test_metadata_a_jpeg_cannot_hold_fails_the_job_naming_it_and_the_fix(project: Project) -> None:
    """A PNG's EXIF may be larger than the 64 KB a JPEG's may: the rule asked for a JPEG with the
    metadata kept, so the rule, not the input, has to change (and nothing is quarantined)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "camera"
    exif[ExifTags.Base.ImageDescription] = "x" * 70_000
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), "teal").save(buffer, "PNG", exif=exif)
    project.config(RESIZE_RULE.replace("{format: webp}", "{format: jpeg}").replace(".webp", ".jpg"))
    project.write({"images/big.png": buffer.getvalue()})
    result = project.build(expect=1)
    failure = failures_by_input(project)["images/big.png"]
    assert failure["class"] == "RecipeError", failure
    assert "images/big.png" in str(failure["message"]) and "EXIF" in str(failure["message"])
    assert "image.strip_metadata" in result.stderr and "quarantined" not in result.stderr
    project.config(
        RESIZE_RULE.replace("{format: webp}", "{format: jpeg}")
        .replace(".webp", ".jpg")
        .replace("      - image.save", "      - image.strip_metadata: {}\n      - image.save")
    )
    project.build()
    assert (project.root / "_build" / "big.jpg").is_file()


def test_an_image_too_wide_for_the_format_fails_the_job_naming_the_limit(project: Project) -> None:
    """A panorama WebP cannot hold (16,383 px a side) fails as a fault of the rule, not with the
    encoder's bare ValueError: the input is fine (the same rule saving png builds it)."""
    buffer = io.BytesIO()
    Image.new("RGB", (17_000, 4), "teal").save(buffer, "PNG")
    project.config(RESIZE_RULE.replace("      - image.resize: {width: 64}\n", ""))
    project.write({"images/pano.png": buffer.getvalue()})
    result = project.build(expect=1)
    failure = failures_by_input(project)["images/pano.png"]
    assert failure["class"] == "RecipeError", failure
    assert "images/pano.png: the image to save is 17000x4, and WEBP images are at most 16383" in str(
        failure["message"]
    )
    assert "image.resize" in result.stderr and "quarantined" not in result.stderr
    project.config(RESIZE_RULE.replace("width: 64", "width: 16000"))
    project.build()
    with Image.open(project.root / "_build" / "pano.webp") as image:
        assert image.size == (16_000, 4)


def test_a_bomb_hint_says_that_pillows_limit_always_applies(project: Project) -> None:
    project.config(RESIZE_RULE.replace("image.load: {}", "image.load: {max_pixels: 100000000000}"))
    project.write({"images/bomb.png": png_declaring(100_000, 100_000)})
    project.build(expect=1)
    message = str(failures_by_input(project)["images/bomb.png"]["message"])
    assert "raise the step's max_pixels" not in message
    assert f"Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels, which always applies" in message


def test_a_text_watermark_larger_than_the_picture_is_drawn_to_fit_it(project: Project) -> None:
    """At 30,000 px, "batchit batchit" would need a 7 GB mask only to be cut off: the build, limited
    here to 3 GB of address space per process, draws it smaller instead, across the picture."""
    project.config(
        'version: 1\nrules:\n  marked:\n    inputs: ["images/*.png"]\n    output: "{stem}.png"\n'
        "    steps:\n      - image.load: {}\n"
        '      - image.watermark: {text: "batchit batchit", size: 30000, opacity: 1, margin: 0}\n'
        "      - image.save: {format: png}\n"
    )
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), "black").save(buffer, "PNG")
    project.write({"images/a.png": buffer.getvalue()})

    def three_gigabytes() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    run = subprocess.run(
        [sys.executable, "-m", "batchit", "build", "--no-progress"],
        cwd=project.root,
        capture_output=True,
        text=True,
        preexec_fn=three_gigabytes,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    with Image.open(project.root / "_build/a.png") as marked:
        box = ImageChops.difference(marked.convert("RGB"), Image.new("RGB", (200, 100), "black")).getbbox()
    assert box is not None and box[2] - box[0] > 100, f"the text spans the picture: {box}"
