"""Thumbnail benchmark: batchit's image pipeline against a plain Pillow loop doing the same work.

    .venv/bin/python bench/thumbnails.py                  # 200 photos, prints a Markdown table

It draws N 1600x1200 JPEG photos (gradients and noise, so they compress like photos) under
bench/.work/thumbnails/images, then times, each as a subprocess (interpreter start included):

- loop: a Python script that opens each photo, decodes every pixel, resizes it to 320 px wide with
  LANCZOS and saves a WebP at quality 75: what a developer writes first;
- loop+draft: the same, but the JPEG decoder is asked for a reduced scale first (`Image.draft`, no
  smaller than twice the target, as Pillow's `thumbnail()` does): the bound for this work;
- batchit -j 1 and -j 2: a cold `batchit build` (no outputs, no state) of one rule doing the same
  steps, `image.load`, `image.resize: {width: 320}`, `image.save: {format: webp, quality: 75}`;
  batchit also hashes every input and output, checks that each WebP decodes, fills its cache and
  writes a signed run record (the `--no-cache` row shows what the cache copies cost).

Each time is the median of `--repeat` runs; every contender must write N files of the same sizes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from installed import compile_batchit
from PIL import Image, features

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "thumbnails"
SIZE = (1600, 1200)
WIDTH = 320

CONFIG = f"""\
version: 1
out: _build
rules:
  thumbs:
    inputs: ["images/*.jpg"]
    output: "{{stem}}.webp"
    steps:
      - image.load: {{}}
      - image.resize: {{width: {WIDTH}}}
      - image.save: {{format: webp, quality: 75}}
"""

LOOP = f'''\
"""Thumbnails with Pillow, one after another."""
import sys
from pathlib import Path
from PIL import Image

draft = sys.argv[1] == "draft"
out = Path("loop_out")
out.mkdir(exist_ok=True)
for path in sorted(Path("images").glob("*.jpg")):
    with Image.open(path) as image:
        width, height = image.size
        target = ({WIDTH}, round(height * {WIDTH} / width))
        box = (0, 0, width, height)
        if draft:
            scale = width / image.draft("RGB", (target[0] * 2, target[1] * 2))[1][2]
            box = (0, 0, width / scale, height / scale)
        image.load()
        small = image.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    small.save(out / (path.stem + ".webp"), "WEBP", quality=75, method=4)
'''


def make_photos(directory: Path, count: int) -> None:
    """Write `count` distinct 1600x1200 JPEGs (skipped when they are already there)."""
    directory.mkdir(parents=True, exist_ok=True)
    if len(list(directory.glob("*.jpg"))) == count:
        return
    for old in directory.glob("*.jpg"):
        old.unlink()
    base = Image.linear_gradient("L").resize(SIZE)
    for index in range(count):
        noise = Image.effect_noise(SIZE, 8 + index % 6)
        photo = Image.merge("RGB", (base, noise, base.rotate(index % 360, fillcolor=128)))
        photo.save(directory / f"photo{index:04d}.jpg", quality=85)


def timed(command: list[str], cwd: Path, reset: Callable[[], None], repeat: int) -> float:
    """Median wall time of `command` over `repeat` runs, each after `reset()`."""
    times = []
    for _ in range(repeat):
        reset()
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sizes(directory: Path) -> list[tuple[str, int]]:
    """(name, size) of the WebP files a contender wrote: every contender must match the others."""
    return sorted((p.name, p.stat().st_size) for p in directory.glob("*.webp"))


def main() -> None:
    """Run every contender and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="photos (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is kept")
    parser.add_argument("--work", type=Path, default=WORK, help="working directory")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    compile_batchit()
    work: Path = args.work
    make_photos(work / "images", args.count)
    (work / "batchit.yaml").write_text(CONFIG, encoding="utf-8")
    (work / "loop.py").write_text(LOOP, encoding="utf-8")

    def clean_loop() -> None:
        shutil.rmtree(work / "loop_out", ignore_errors=True)

    def clean_batchit() -> None:
        shutil.rmtree(work / "_build", ignore_errors=True)
        shutil.rmtree(work / ".batchit", ignore_errors=True)

    python = sys.executable
    batchit = [python, "-m", "batchit", "build", "--no-progress"]
    results: dict[str, float] = {}
    outputs: dict[str, list[tuple[str, int]]] = {}
    for name, command, reset, folder in (
        ("loop", [python, "loop.py", "full"], clean_loop, "loop_out"),
        ("loop+draft", [python, "loop.py", "draft"], clean_loop, "loop_out"),
        ("batchit -j 1", [*batchit, "-j", "1"], clean_batchit, "_build"),
        ("batchit -j 2", [*batchit, "-j", "2"], clean_batchit, "_build"),
        ("batchit -j 1 --no-cache", [*batchit, "-j", "1", "--no-cache"], clean_batchit, "_build"),
    ):
        results[name] = timed(command, work, reset, args.repeat)
        outputs[name] = sizes(work / folder)
        print(f"{name}: {results[name]:.2f} s", file=sys.stderr)
    counts = {name: len(found) for name, found in outputs.items()}
    assert set(counts.values()) == {args.count}, counts
    same = outputs["loop+draft"] == outputs["batchit -j 1"] == outputs["batchit -j 2"]
    start_batchit = timed([python, "-m", "batchit", "--help"], work, clean_loop, args.repeat)
    start_pillow = timed([python, "-c", "import PIL.Image"], work, clean_loop, args.repeat)

    bound = results["loop+draft"]
    print(
        f"{args.count} photos {SIZE[0]}x{SIZE[1]} -> {WIDTH} px WebP; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, Pillow {Image.__version__}, libjpeg-turbo "
        f"{features.version('libjpeg_turbo')}, libwebp {features.version('webp')}; median of {args.repeat}\n"
    )
    print("| contender | seconds | ms per photo | vs loop+draft |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.2f} | {seconds / args.count * 1000:.1f} | {seconds / bound:.2f}x |")
    print(
        f"\nbatchit -j 1 / loop+draft: {results['batchit -j 1'] / bound:.2f} (aim: at most 1.10); "
        f"-j 1 / -j 2: {results['batchit -j 1'] / results['batchit -j 2']:.2f}x (aim: at least 1.8); "
        f"batchit's WebP bytes equal the draft loop's sizes: {'yes' if same else 'no'}; "
        f"interpreter start: `batchit --help` {start_batchit:.2f} s, `import PIL.Image` {start_pillow:.2f} s"
    )
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
