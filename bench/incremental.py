"""Incremental-build benchmark: batchit against doit and a plain copy loop, on the same file tree.

    .venv/bin/python bench/incremental.py --sizes 1000,10000

For each size N it writes N small text files under bench/.work/N/src (nested directories of 100 files)
and times four scenarios for each contender, every run a subprocess (interpreter start included, as a
user waits for it). The contenders: `batchit build`, doit with one task per file, a plain loop, and
`doit` running the same batchit project through `batchit.doit` (its own project in `via_doit/`, whose
`src` holds hard links to the same files, so every edit reaches both):

- cold: outputs and state removed before each repetition;
- no-op: nothing changed since the last build;
- touch-all: every input gets a new mtime, content unchanged;
- one-change: one input's content changes.

Each time is the median of `--repeat` runs. The result is a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from installed import compile_batchit

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
FILES_PER_DIR = 100
CONTENDERS = ("batchit", "doit", "plain", "via-doit")
OUTPUT_FOLDERS = {
    "batchit": "_build",
    "doit": "doit_out",
    "plain": "plain_out",
    "via-doit": "via_doit/_build",
}
SCENARIOS = ("cold", "no-op", "touch-all", "one-change")
VOCABULARY = (
    "batch incremental content hash blake3 rule input output pipeline operator render template markdown "
    "image resize cache manifest report parallel worker state store job key stale fresh touch mtime inode "
    "size glob aggregate matrix deps quarantine retry backoff signal lock"
)
WORDS = tuple(VOCABULARY.split())

BATCHIT_CONFIG = """\
version: 1
out: _build
rules:
  copy:
    inputs: ["src/**/*.txt"]
    output: "{path}.txt"
    steps:
      - file.copy: {}
"""

DOIT_DODO = '''\
"""One doit task per file: file_dep on the source, the copy as target, doit's default md5 checker."""

import shutil
from pathlib import Path

SRC = Path("src")
OUT = Path("doit_out")


def copy(src, dst):
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def task_copy():
    for src in sorted(SRC.rglob("*.txt")):
        dst = OUT / src.relative_to(SRC)
        yield {
            "name": str(src),
            "file_dep": [str(src)],
            "targets": [str(dst)],
            "actions": [(copy, [str(src), str(dst)])],
        }
'''

VIA_DOIT_DODO = """\
import batchit.doit

task_copy = batchit.doit.tasks("via_doit")
"""

PLAIN_SCRIPT = '''\
"""The baseline: copy every file, unconditionally, with no state."""

import shutil
import sys
from pathlib import Path

src_root, out_root = Path(sys.argv[1]), Path(sys.argv[2])
for src in sorted(src_root.rglob("*.txt")):
    dst = out_root / src.relative_to(src_root)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
'''


@dataclass
class Tree:
    """One benchmark tree: N inputs under `src/` plus each contender's project files and outputs."""

    root: Path
    size: int
    inputs: list[Path] = field(default_factory=list)

    @property
    def doit_db(self) -> Path:
        """doit's dependency database (a folder, because dbm backends may write several files)."""
        return self.root / "doit_db"

    def command(self, contender: str) -> list[str]:
        """The argv that runs one build of `contender` in this tree."""
        if contender == "batchit":
            return [sys.executable, "-m", "batchit", "build", "--no-progress"]
        if contender in ("doit", "via-doit"):
            dodo, db = ("dodo.py", "doit.db") if contender == "doit" else ("via_doit_dodo.py", "via_doit.db")
            db_file = str(self.doit_db / db)
            return [sys.executable, "-m", "doit", "-f", dodo, "--db-file", db_file, "--verbosity", "0"]
        return [sys.executable, "plain_copy.py", "src", "plain_out"]

    def reset(self, contender: str) -> None:
        """Remove a contender's outputs and state, so its next build is cold."""
        doomed = {
            "batchit": ["_build", ".batchit"],
            "doit": ["doit_out", "doit_db"],
            "plain": ["plain_out"],
            "via-doit": ["via_doit/_build", "via_doit/.batchit"],
        }[contender]
        for name in doomed:
            shutil.rmtree(self.root / name, ignore_errors=True)
        self.doit_db.mkdir(exist_ok=True)
        if contender == "via-doit":
            for path in self.doit_db.glob("via_doit.db*"):
                path.unlink()

    def outputs(self, contender: str) -> int:
        """How many `.txt` outputs a contender has written."""
        return sum(1 for _ in (self.root / OUTPUT_FOLDERS[contender]).rglob("*.txt"))


def make_text(rng: random.Random) -> str:
    """200-2000 bytes of varied, word-wrapped text."""
    target = rng.randint(200, 2000)
    words: list[str] = []
    length = 0
    while length < target:
        word = rng.choice(WORDS) if rng.random() > 0.1 else f"{rng.randint(0, 10**6)}"
        words.append(word)
        length += len(word) + 1
    return textwrap.fill(" ".join(words), width=72)[:target] + "\n"


def make_tree(size: int, work: Path = WORK) -> Tree:
    """A fresh tree of `size` inputs with each contender's project files, and nothing built."""
    root = work / str(size)
    shutil.rmtree(root, ignore_errors=True)
    src = root / "src"
    rng = random.Random(size)
    tree = Tree(root, size)
    for index in range(size):
        path = src / f"d{index // FILES_PER_DIR:04d}" / f"f{index:06d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make_text(rng), encoding="utf-8")
        tree.inputs.append(path)
    (root / "batchit.yaml").write_text(BATCHIT_CONFIG, encoding="utf-8")
    (root / "dodo.py").write_text(DOIT_DODO, encoding="utf-8")
    (root / "plain_copy.py").write_text(PLAIN_SCRIPT, encoding="utf-8")
    shutil.copytree(src, root / "via_doit" / "src", copy_function=os.link)
    (root / "via_doit" / "batchit.yaml").write_text(BATCHIT_CONFIG, encoding="utf-8")
    (root / "via_doit_dodo.py").write_text(VIA_DOIT_DODO, encoding="utf-8")
    tree.doit_db.mkdir()
    return tree


@dataclass(frozen=True)
class Run:
    """One timed build: wall seconds and how many jobs it ran (None when the tool cannot say)."""

    seconds: float
    ran: int | None


def jobs_run(tree: Tree, contender: str, stdout: str) -> int | None:
    """How many jobs the build just finished ran: batchit's manifest summary, doit's `.` lines."""
    if contender == "batchit":
        runs = tree.root / ".batchit" / "runs"
        try:
            latest = (runs / "LATEST").read_text(encoding="utf-8").strip()
            summary = json.loads((runs / latest / "manifest.json").read_text(encoding="utf-8"))["summary"]
        except (OSError, ValueError, KeyError):
            return None
        return int(summary.get("built", 0)) + int(summary.get("restored", 0))
    if contender in ("doit", "via-doit"):
        lines = stdout.splitlines()
        return sum(1 for line in lines if line.startswith(". ") and not line.endswith(":_record"))
    return tree.size


def run_build(tree: Tree, contender: str) -> Run:
    """Run one build of `contender`, timing the subprocess; a failed build is an error."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        tree.command(contender), cwd=tree.root, capture_output=True, text=True, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{contender} exited {proc.returncode} in {tree.root}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return Run(elapsed, jobs_run(tree, contender, proc.stdout))


def touch_all(tree: Tree) -> None:
    """Give every input a new mtime (one second later than its current one), content unchanged."""
    for path in tree.inputs:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def change_one(tree: Tree, round_: int) -> None:
    """Change the content of one input (a different one each round)."""
    path = tree.inputs[(round_ * 7919) % len(tree.inputs)]
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"edited in round {round_}\n")


@dataclass(frozen=True)
class Result:
    """One scenario's outcome for one contender: the median time and the jobs its last run ran."""

    seconds: float
    ran: int | None


def summarise(runs: list[Run]) -> Result:
    """The median time of the runs and the job count of the last one."""
    return Result(statistics.median(run.seconds for run in runs), runs[-1].ran)


def measure(
    tree: Tree, contenders: Sequence[str], repeat: int, before: Callable[[int], None]
) -> dict[str, Result]:
    """Each contender's result; `before(round)` prepares each round, once for all contenders."""
    runs: dict[str, list[Run]] = {name: [] for name in contenders}
    for round_ in range(repeat):
        before(round_)
        for name in contenders:
            runs[name].append(run_build(tree, name))
    return {name: summarise(values) for name, values in runs.items()}


def bench_size(size: int, contenders: Sequence[str], repeat: int, work: Path) -> dict[str, dict[str, Result]]:
    """All four scenarios for one tree size, in order, on one tree."""
    tree = make_tree(size, work)
    results: dict[str, dict[str, Result]] = {}
    cold: dict[str, list[Run]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name in contenders:
            tree.reset(name)
            cold[name].append(run_build(tree, name))
    for name in contenders:
        if tree.outputs(name) != size:
            raise RuntimeError(f"{name} wrote {tree.outputs(name)} outputs for {size} inputs")
    results["cold"] = {name: summarise(values) for name, values in cold.items()}
    results["no-op"] = measure(tree, contenders, repeat, lambda _round: None)
    results["touch-all"] = measure(tree, contenders, repeat, lambda _round: touch_all(tree))
    results["one-change"] = measure(tree, contenders, repeat, lambda round_: change_one(tree, round_))
    return results


def ratio(numerator: float | None, denominator: float | None) -> str:
    """`a/b` formatted for the table, or a dash when either side was not measured."""
    if numerator is None or denominator is None or denominator == 0:
        return "-"
    return f"{numerator / denominator:.1f}x"


def seconds(value: float | None) -> str:
    """A time in seconds for the table, or a dash."""
    return "-" if value is None else f"{value:.2f}"


def count(value: int | None) -> str:
    """A job count for the table, or a dash."""
    return "-" if value is None else f"{value:,}"


def table(all_results: dict[int, dict[str, dict[str, Result]]]) -> str:
    """The Markdown table: one row per size and scenario."""
    lines = [
        "| files | scenario | batchit s | doit s | plain s | doit/batchit | batchit/plain "
        "| batchit in doit s | jobs run (batchit/doit/batchit in doit) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, results in all_results.items():
        for scenario in SCENARIOS:
            row = results[scenario]
            batchit, doit, plain, via = (row.get(name) for name in CONTENDERS)
            b, d, p, v = (None if res is None else res.seconds for res in (batchit, doit, plain, via))
            jobs = " / ".join(count(None if res is None else res.ran) for res in (batchit, doit, via))
            lines.append(
                f"| {size:,} | {scenario} | {seconds(b)} | {seconds(d)} | {seconds(p)} "
                f"| {ratio(d, b)} | {ratio(b, p)} | {seconds(v)} | {jobs} |"
            )
    return "\n".join(lines)


def machine() -> str:
    """One line describing where the numbers come from."""
    versions = []
    for dist in ("batchit", "doit"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} missing")
    return (
        f"{os.cpu_count()} CPUs (nproc), {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, {', '.join(versions)}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,10000", help="comma-separated file counts (default 1000,10000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is kept")
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS), help=f"comma-separated subset of {','.join(CONTENDERS)}"
    )
    parser.add_argument("--work", type=Path, default=WORK, help="where the trees are written")
    parser.add_argument("--keep", action="store_true", help="keep the trees afterwards")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    compile_batchit()
    sizes = [int(text.replace("_", "")) for text in args.sizes.split(",") if text]
    contenders = [name for name in args.contenders.split(",") if name]
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown:
        print(f"unknown contender(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    all_results: dict[int, dict[str, dict[str, Result]]] = {}
    for size in sizes:
        print(f"benchmarking {size:,} files ...", file=sys.stderr, flush=True)
        all_results[size] = bench_size(size, contenders, args.repeat, args.work)
        if not args.keep:
            shutil.rmtree(args.work / str(size), ignore_errors=True)
    print(f"Machine: {machine()}. Median of {args.repeat} runs; wall time of each subprocess.\n")
    print(table(all_results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
