"""Planning at scale, and what `durability: fsync` costs.

Run: `.venv/bin/python bench/plan_scale.py [--files 100000] [--durability-files 1000]`

1. Planning: builds a 1:1 copy project of N files once, then measures, in a fresh process each time
   (so the peak RSS is planning's alone), loading the state store and planning every job with a
   warm stat cache: the work behind `batchit plan` and the start of every `batchit build`.
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
from batchit.plan.planner import Planner, PlanOptions, select_rules
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
assert all(job.action == "skip" for job in jobs), "the tree is not up to date"
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


def bench_planning(files: int) -> None:
    """Planning N up-to-date jobs with a warm stat cache, in fresh processes."""
    root = WORK / f"plan-{files}"
    make_tree(root, files)
    cold = batchit(root, "build", "--no-progress")
    noop = statistics.median(batchit(root, "build", "--no-progress") for _ in range(3))
    probes = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", PROBE, str(root)], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(3)
    ]

    def median(key: str) -> float:
        return statistics.median(p[key] for p in probes)

    print(f"\n### Planning {files:,} inputs (warm stat cache)\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| load state store | {median('state'):.2f} s |")
    print(f"| walk, stat, key and decide every job | {median('plan'):.2f} s |")
    print(f"| planning total (state + plan) | {median('total'):.2f} s |")
    print(f"| peak RSS of the planning process | {median('rss_mb'):.0f} MB |")
    print(f"| imports + config load | {median('imports') + median('config'):.2f} s |")
    print(f"| `batchit build`, no-op, whole command | {noop:.2f} s |")
    print(f"| `batchit build`, cold, whole command | {cold:.2f} s |")


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
