"""Planning at scale, and what `durability: fsync` costs.

Run: `.venv/bin/python bench/plan_scale.py [--files 100000] [--durability-files 1000]`

1. Planning: builds a 1:1 copy project of N files once, then measures, in a fresh process each time
   (so the peak RSS is planning's alone), loading the state store and planning every job with a
   warm stat cache: the work behind `batchit plan` and the start of every `batchit build`: in full
   (the snapshot set aside), replaying the snapshot the last build left, and with one input edited
   since (the snapshot patched).
2. Durability: cold builds of the same small project with `durability: fast` and `fsync`.

Prints Markdown tables; medians of three runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from installed import compile_batchit

WORK = Path(__file__).resolve().parent / ".work" / "plan_scale"

CONFIG = """\
version: 1
durability: {durability}
rules:
  copy:
    inputs: ["src/**/*.txt"]
    output: "{{path}}.txt"
    steps:
      - file.copy: {{}}
"""

PROBE = """\
import json, resource, sys, time
from pathlib import Path
started = time.perf_counter()
from batchit.config import load_config
from batchit.operators.registry import OperatorRegistry
from batchit.plan.planner import Planner, PlanOptions
from batchit.plan.selection import select_rules
from batchit.state.store import StateStore
imported = time.perf_counter()
root = Path(sys.argv[1])
registry = OperatorRegistry.default()
config = load_config(root, "batchit.yaml", {}, registry)
loaded = time.perf_counter()
store = StateStore.open_readonly(root / ".batchit/state.db")
planner = Planner.open(config, registry, store, PlanOptions())
opened = time.perf_counter()
jobs = planner.predict(select_rules(config, []))
planned = time.perf_counter()
stale = sum(job.action != "skip" for job in jobs)
assert stale == int(sys.argv[2]), f"{stale} stale jobs, expected {sys.argv[2]}"
print(json.dumps({
    "jobs": len(jobs), "imports": imported - started, "config": loaded - imported,
    "state": opened - loaded, "plan": planned - opened, "total": planned - loaded,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def make_tree(root: Path, files: int, durability: str = "fast") -> None:
    """A project of `files` small text files, 100 per directory."""
    shutil.rmtree(root, ignore_errors=True)
    for index in range(files):
        directory = root / "src" / f"d{index // 100:05d}"
        if index % 100 == 0:
            directory.mkdir(parents=True)
        (directory / f"f{index % 100:03d}.txt").write_text(f"file {index}\n" * 8)
    (root / "batchit.yaml").write_text(CONFIG.format(durability=durability))


def batchit(root: Path, *args: str) -> float:
    """Run the batchit CLI in `root`; return its wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "batchit", *args], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"batchit {' '.join(args)} failed in {root}:\n{done.stderr}")
    return time.perf_counter() - started


def probe(root: Path, stale: int = 0) -> dict[str, float]:
    """One planning run in a fresh process, which checks that `stale` jobs are stale."""
    command = [sys.executable, "-c", PROBE, str(root), str(stale)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def bench_planning(files: int) -> None:
    """Planning N up-to-date jobs with a warm stat cache, in fresh processes: in full (the snapshot
    set aside), and replayed from the snapshot the last no-op build left."""
    root = WORK / f"plan-{files}"
    make_tree(root, files)
    cold = batchit(root, "build", "--no-progress")
    noop = statistics.median(batchit(root, "build", "--no-progress") for _ in range(3))
    head = root / ".batchit" / "plan-snapshot.json"
    replayed = [probe(root) for _ in range(3)]
    head.rename(head.with_suffix(".aside"))
    try:
        full = [probe(root) for _ in range(3)]
    finally:
        head.with_suffix(".aside").rename(head)
    (root / "src" / "d00000" / "f000.txt").write_text("one change\n")
    patched = [probe(root, stale=1) for _ in range(3)]

    def median(probes: list[dict[str, float]], key: str) -> float:
        return statistics.median(p[key] for p in probes)

    print(f"\n### Planning {files:,} inputs (warm stat cache)\n")
    print("| measure | full plan | replayed snapshot | one input changed |\n| --- | ---: | ---: | ---: |")
    for label, key, unit in (
        ("open the state store, walk, stat, key and decide every job", "total", "s"),
        ("peak RSS of the planning process", "rss_mb", "MB"),
    ):
        digits = 0 if unit == "MB" else 2
        cells = [f"{median(probes, key):.{digits}f} {unit}" for probes in (full, replayed, patched)]
        print(f"| {label} | {' | '.join(cells)} |")
    print(f"| imports + config load | {median(full, 'imports') + median(full, 'config'):.2f} s | | |")
    print(f"| `batchit build`, no-op, whole command | | {noop:.2f} s | |")
    print(f"| `batchit build`, cold, whole command | {cold:.2f} s | | |")


def bench_durability(files: int) -> None:
    """Cold builds with `durability: fast` against `fsync`."""
    results: dict[str, float] = {}
    for durability in ("fast", "fsync"):
        root = WORK / f"durability-{durability}"
        times = []
        for _ in range(3):
            make_tree(root, files, durability)
            times.append(batchit(root, "build", "--no-progress"))
        results[durability] = statistics.median(times)
    print(f"\n### Durability: cold build of {files:,} files\n")
    print("| durability | seconds | vs fast |\n| --- | --- | --- |")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.2f} | {seconds / results['fast']:.2f}x |")


def main() -> None:
    """Parse the sizes and run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--durability-files", type=int, default=1_000)
    args = parser.parse_args()
    compile_batchit()
    WORK.mkdir(parents=True, exist_ok=True)
    bench_planning(args.files)
    bench_durability(args.durability_files)


if __name__ == "__main__":
    main()
