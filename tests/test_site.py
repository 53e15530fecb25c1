"""The demo site from a fresh clone: the README's command builds the pages, the gallery and the CDN map.

The clone is the repository's files as git would hand them over (tracked, plus new files that are
not ignored), copied without `.venv`, `site/_build` or `site/.batchit`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import ExifTags, Image
from test_readme import SITE_OUTPUTS, SITE_PAGES, latest_summary

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = {"dawn.jpg", "desert.jpg", "dusk.jpg", "noon.jpg", "winter.jpg", "poster.png"}
WIDTHS = (320, 640, 1280)


def fresh_clone(tmp_path: Path) -> Path:
    """The files a clone of the repository would have, copied to `tmp_path/clone`."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    clone = tmp_path / "clone"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


def readme_build(clone: Path) -> subprocess.CompletedProcess[str]:
    """The README's main command, `batchit -C site build`, run from the clone's root."""
    return subprocess.run(
        [sys.executable, "-m", "batchit", "-C", "site", "build", "--no-progress"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def built_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone whose demo site was built once by the README's command."""
    clone = fresh_clone(tmp_path_factory.mktemp("site"))
    result = readme_build(clone)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return clone


def test_the_readme_command_builds_every_page_and_photo(built_clone: Path) -> None:
    out = built_clone / "site" / "_build"
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.html")} == SITE_PAGES
    variants = sorted(p.name for p in (out / "img").iterdir())
    assert len(variants) == len(PHOTOS) * len(WIDTHS)
    assert {re.sub(r"-\d+-[0-9a-f]{8}\.webp$", "", name) for name in variants} == {
        name.rsplit(".", 1)[0] for name in PHOTOS
    }


def test_the_gallery_offers_every_width_of_every_photo_through_srcset(built_clone: Path) -> None:
    gallery = (built_clone / "site" / "_build" / "gallery.html").read_text("utf-8")
    srcsets = re.findall(r'srcset="([^"]+)"', gallery)
    assert len(srcsets) == len(PHOTOS)
    for srcset in srcsets:
        assert [int(part.split()[1].rstrip("w")) for part in srcset.split(", ")] == list(WIDTHS)
        for part in srcset.split(", "):
            assert (built_clone / "site" / "_build" / part.split()[0]).is_file()


def test_the_cdn_manifest_lists_each_photo_with_its_variants(built_clone: Path) -> None:
    out = built_clone / "site" / "_build"
    manifest = json.loads((out / "cdn-manifest.json").read_text("utf-8"))
    assert set(manifest) == {f"images/{name}" for name in PHOTOS}
    for variants in manifest.values():
        assert [v["width"] for v in variants] == list(WIDTHS)
        assert all((out / v["path"]).stat().st_size == v["size"] for v in variants)


def test_published_photos_are_upright_and_carry_no_gps(built_clone: Path) -> None:
    source = built_clone / "site" / "images"
    with Image.open(source / "dusk.jpg") as raw, Image.open(source / "noon.jpg") as located:
        assert raw.getexif()[0x0112] == 6 and raw.width < raw.height  # stored sideways
        assert located.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    for path in (built_clone / "site" / "_build" / "img").glob("*-640-*.webp"):
        with Image.open(path) as image:
            assert image.width > image.height, path.name  # every photo is landscape when upright
            assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)


def test_building_again_does_nothing(built_clone: Path) -> None:
    result = readme_build(built_clone)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    summary = latest_summary(built_clone / "site")
    assert (summary["built"], summary["up_to_date"]) == (0, SITE_OUTPUTS)


def test_the_committed_photos_are_small_and_made_by_the_script(tmp_path: Path) -> None:
    images = ROOT / "site" / "images"
    assert {p.name for p in images.iterdir()} == PHOTOS
    assert sum(p.stat().st_size for p in images.iterdir()) < 200_000
    copy = tmp_path / "site"
    copy.mkdir()
    shutil.copy2(ROOT / "site" / "make_images.py", copy / "make_images.py")
    subprocess.run([sys.executable, str(copy / "make_images.py")], check=True, timeout=120)
    for name in PHOTOS:
        with Image.open(images / name) as committed, Image.open(copy / "images" / name) as made:
            assert (made.size, made.mode, dict(made.getexif())) == (
                committed.size,
                committed.mode,
                dict(committed.getexif()),
            )
