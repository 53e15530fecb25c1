"""The next plan, remembered with everything it will read, so an unchanged project plans in one pass.

Planning 100,000 up-to-date jobs the full way loads 200,000 rows from the state store and computes
100,000 action keys: about 2 s. A plan is a function of what it reads: the config and the operators
(their versions and their libraries' versions), the state store (whose generation changes with every
write), the walked files' stats, the files it hashed outside its globs, and the outputs' stats. When
a build ends with every job up to date (skipped, or run or restored without failure and without an
input changing meanwhile) or held back by a quarantined input, the next plan is that plan with every
job up to date or still held back, each under the key it was recorded with (a job's discovered
dependencies may move it). The build writes it
down with those reads (`.batchit/plan-snapshot.json` names the generation and fingerprint it is
valid for; the jobs and reads are in a `marshal` file beside it). The next plan that finds every
read unchanged (the same generation and fingerprint, every walked file with the same stat, every
output with the same stat) returns the same jobs without loading the state store or computing a key.
When only a few walked files or outputs changed, `batchit.plan.patch` plans just their jobs. Any
other difference, or any doubt (a missing or damaged file, another Python), plans the full way.

Only a build and doit's `_record` sub-task write a snapshot (`plan` and `explain` never write;
`batchit.plan.remember` says when), and only after a plan that used no option that changes
decisions (`--force`, `--only-failed`, a replay).
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import itertools
import json
import marshal
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from batchit import __version__
from batchit.fsutil import StatTuple, atomic_write_bytes, atomic_write_text, stat_identity
from batchit.hashing import blake3_hex
from batchit.model import STATE_DIR, Config, Rule
from batchit.operators.registry import OperatorRegistry
from batchit.plan.decide import QUARANTINED
from batchit.plan.files import FileTree
from batchit.plan.jobs import NOTHING_DISCOVERED, Job
from batchit.plan.keys import Recipe, StepCall

HEAD_FILE = "plan-snapshot.json"
"""In `.batchit/`: which data file holds the snapshot, and the generation and fingerprint it is for."""

FORMAT = 4
"""Bumped whenever the data file's layout changes."""

FORK_ABOVE = 5000
"""Outputs from which stat-ing them in a child process beats doing it after the walk (a fork and
its page faults cost a few milliseconds; 5,000 stat calls cost about 15)."""

MISSING: StatTuple = (-1, -1, -1, -1)
"""The stat remembered for an output that does not exist (a quarantined job may have none)."""

T = TypeVar("T")

Reads = tuple[list[str], list[str], bytes, list[tuple[str, StatTuple | None, bool]], bytes]
"""(walked glob bases, walked paths, their stats packed, files hashed by path with their stats and
whether a recipe read them (else only jobs' discovered dependencies), the outputs' stats packed);
see `pack_stats`."""


@dataclass(frozen=True)
class SnapshotHead:
    """What `.batchit/plan-snapshot.json` says: the data file and what it is valid for."""

    data: str
    """The data file's name in `.batchit/` (random, so a head never names another write's data)."""
    generation: int
    fingerprint: str


def plan_fingerprint(config: Config, registry: OperatorRegistry, rules: Sequence[Rule]) -> str:
    """A digest of everything a plan depends on besides files and the state store.

    The whole validated config (rules, parameters, flags, the output root), the selected rules,
    each operator's import target, version and library versions, batchit's and Python's versions.
    When an operator finds user code through the import path (`python`), the import path and the
    names in the project root too: which file holds the module may change without any file changing.
    """
    operators = sorted({step.operator for rule in rules for step in rule.steps})
    versions = []
    import_path: list[str] | None = None
    for name in operators:
        operator = registry.get(name)
        versions.append((name, registry.targets[name], operator.version, registry.library_versions(name)))
        if operator.imports_user_code:
            resolved = [str(Path(entry).resolve()) for entry in sys.path]  # "" is the working directory
            import_path = [entry for entry in resolved if entry != str(config.root)]  # added when planning
    parts = (
        FORMAT,
        __version__,
        sys.version,
        repr(dataclasses.replace(config, checked=None)),
        [rule.name for rule in rules],
        versions,
        import_path,
        _root_entries(config) if import_path is not None else None,
    )
    return blake3_hex(repr(parts).encode())


def _root_entries(config: Config) -> list[str]:
    """The names beside batchit.yaml (but `out` and `.batchit`, which builds create): a module
    appearing there may shadow one the `python` operator imports."""
    return sorted({entry.name for entry in config.root.iterdir()} - {config.out.split("/")[0], STATE_DIR})


def read_head(state_dir: Path) -> SnapshotHead | None:
    """The snapshot head, or None when there is none or it cannot be read."""
    try:
        document = json.loads((state_dir / HEAD_FILE).read_bytes())
        head = SnapshotHead(str(document["data"]), int(document["generation"]), str(document["fingerprint"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return head if os.sep not in head.data and head.data.startswith("plan-snapshot-") else None


def pack_stats(stats: Iterable[Sequence[int | None] | None]) -> bytes | None:
    """Stat tuples as one string of 64-bit integers, compared and stored in one piece; None when one
    does not fit (a missing file, a negative mtime on a 64-bit inode): that plan is not snapshotted."""
    try:
        return array.array("q", itertools.chain.from_iterable(stats)).tobytes()  # type: ignore[arg-type,type-var]
    except (TypeError, OverflowError):
        return None


def unpack_stats(packed: bytes) -> list[StatTuple]:
    """The stat tuples `pack_stats` packed."""
    numbers = array.array("q")
    numbers.frombytes(packed)
    fields = iter(numbers)
    return list(zip(fields, fields, fields, fields, strict=True))


@dataclass
class SnapshotCheck:
    """How the files a snapshot's plan read compare with the files now."""

    tree: FileTree
    """The walked glob bases, walked again."""
    changed_paths: set[str]
    """Walked files added, removed, or with another stat."""
    changed_outputs: set[str] | None
    """Outputs (relative to `out`) gone or with another stat; None when they could not be checked."""
    changed_hashed: dict[str, bool]
    """Files hashed by path whose stat changed, each with whether a recipe read it (else only jobs'
    discovered dependencies did)."""

    @property
    def unchanged(self) -> bool:
        """True when the snapshot's plan is the plan now."""
        return not self.changed_hashed and not self.changed_paths and self.changed_outputs == set()


@dataclass
class PlanSnapshot:
    """A remembered plan: its jobs (every one up to date, as columns) and what planning them read."""

    recipes: list[Any]
    columns: Sequence[list[Any]]
    reads: Reads
    hashes: list[str]
    """Each job's output BLAKE3, as recorded."""

    def check(self, root: Path, out: str, unwalked: frozenset[str]) -> SnapshotCheck:
        """Compare every read with the files now; `unwalked` are the folders no glob enters
        (`Config.unwalked`).

        The outputs are stat-ed in a child process while this one walks the inputs: with two CPUs
        that halves the largest cost of an unchanged plan, 200,000 `stat` calls.
        """
        walked, paths, stats, hashed, output_stats = self.reads
        prefix = f"{root / out}/"
        outputs: list[str] = self.columns[4]

        def changed_outputs() -> list[int]:
            if pack_stats(stat_identity(prefix + o) or MISSING for o in outputs) == output_stats:
                return []
            before = unpack_stats(output_stats)
            return [i for i, o in enumerate(outputs) if (stat_identity(prefix + o) or MISSING) != before[i]]

        with concurrently(changed_outputs, in_child=len(outputs) >= FORK_ABOVE) as outcome:
            tree = FileTree(root, unwalked)
            for base in walked:
                tree.files_under(base)
            changed_paths = set(tree.refused)  # a plan of them refuses those a glob matches
            if list(tree.stats) != paths or pack_stats(tree.stats.values()) != stats:
                before = dict(zip(paths, unpack_stats(stats), strict=True))
                changed_paths = {path for path, stat in tree.stats.items() if before.get(path) != stat}
                changed_paths.update(before.keys() - tree.stats.keys())
            changed_hashed = {
                path: key for path, stat, key in hashed if stat_identity(str(root / path)) != stat
            }
            indices = outcome()
        changed = None if indices is None else {outputs[i] for i in indices}
        return SnapshotCheck(tree, changed_paths, changed, changed_hashed)

    def jobs(self) -> list[Job]:
        """The remembered jobs, every one up to date or held back by its quarantined input."""
        return _jobs(self.recipes, self.columns)

    def outputs(self) -> dict[str, tuple[StatTuple, str]]:
        """Each remembered output's stat and BLAKE3, by path relative to `out`."""
        remembered = zip(unpack_stats(self.reads[4]), self.hashes, strict=True)
        return dict(zip(self.columns[4], remembered, strict=True))


@contextlib.contextmanager
def concurrently(work: Callable[[], T], *, in_child: bool) -> Iterator[Callable[[], T | None]]:
    """Run `work` in a forked child while the block runs; the block calls the result for its value.

    The child only calls `work` and writes its value (`marshal`-able) to a pipe; it never returns
    into the caller's code. A child that dies gives None. Without `in_child` (too little work to
    pay for a process), where `fork` is missing, or when it fails, `work` runs when asked.
    """
    if not hasattr(os, "fork") or not in_child:
        yield work
        return
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process to spare (EAGAIN, ENOMEM): do the work here
        os.close(read_end)
        os.close(write_end)
        yield work
        return
    if pid == 0:  # the child
        try:
            os.close(read_end)
            payload = memoryview(marshal.dumps(work()))  # type: ignore[arg-type]
            while payload:
                payload = payload[os.write(write_end, payload) :]
        finally:
            os._exit(0)
    os.close(write_end)

    def value() -> T | None:
        chunks = []
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
        try:
            return marshal.loads(b"".join(chunks))  # type: ignore[no-any-return]  # noqa: S302
        except (EOFError, ValueError, TypeError):
            return None  # the child died before it wrote its value

    try:
        yield value
    finally:
        os.close(read_end)  # a child still writing gets EPIPE and exits
        os.waitpid(pid, 0)


def load_snapshot(state_dir: Path, generation: int, fingerprint: str) -> PlanSnapshot | None:
    """The snapshot valid for this state store generation and fingerprint, if there is one."""
    head = read_head(state_dir)
    if head is None or head.generation != generation or head.fingerprint != fingerprint:
        return None
    try:
        # batchit wrote this file; marshal builds plain values and runs no code
        recipes, columns, reads, hashes = marshal.loads((state_dir / head.data).read_bytes())  # noqa: S302
        walked, paths, stats, hashed, output_stats = reads
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return PlanSnapshot(recipes, columns, (walked, paths, stats, hashed, output_stats), hashes)


def save_snapshot(
    state_dir: Path,
    generation: int,
    fingerprint: str,
    jobs: list[Job] | None,
    reads: Reads | None = None,
    hashes: list[str] | None = None,
) -> None:
    """Remember a no-op plan for `generation` (after the build's last write).

    With `jobs` None, the plan was itself a replay: only the head moves on to the new generation.
    A snapshot that cannot be written (a full disk, a matrix value `marshal` cannot hold) costs only
    a full plan next time, so failures are ignored. `reads` is None when a stat did not pack: then
    there is no snapshot.
    """
    head = read_head(state_dir)
    with contextlib.suppress(OSError, ValueError):
        if jobs is None:
            if head is None:
                return
            data = head.data
        elif reads is None:
            forget_snapshot(state_dir)
            return
        else:
            data = f"plan-snapshot-{secrets.token_hex(8)}"
            atomic_write_bytes(state_dir / data, marshal.dumps((*_columns(jobs), reads, hashes)))
        document = {"data": data, "generation": generation, "fingerprint": fingerprint}
        atomic_write_text(state_dir / HEAD_FILE, json.dumps(document) + "\n")
        _remove_data_files(state_dir, keep=data)


def forget_snapshot(state_dir: Path) -> None:
    """Remove the snapshot (a build that changed anything leaves none: its plan is not the next one)."""
    with contextlib.suppress(OSError):
        (state_dir / HEAD_FILE).unlink(missing_ok=True)
        _remove_data_files(state_dir, keep=None)


def _remove_data_files(state_dir: Path, keep: str | None) -> None:
    """Remove snapshot data files but `keep`: the one the head named before, and any a build killed
    between writing its data and its head left behind."""
    for path in state_dir.glob("plan-snapshot-*"):
        if path.name != keep:
            path.unlink(missing_ok=True)


def _columns(jobs: Iterable[Job]) -> tuple[list[Any], tuple[list[Any], ...]]:
    """Jobs as columns of plain values `marshal` can write; recipes once each, jobs naming them by index."""
    recipes: dict[str, int] = {}
    recipe_rows: list[Any] = []
    columns: tuple[list[Any], ...] = tuple([] for _ in range(11))
    for job in jobs:
        recipe = job.recipe
        index = recipes.get(recipe.hash)
        if index is None:
            index = recipes[recipe.hash] = len(recipe_rows)
            steps = [(s.operator, s.target, s.version, s.params) for s in recipe.steps]
            recipe_rows.append((recipe.doc, recipe.hash, steps, recipe.path_aware, recipe.key_tail))
        discovered = dict(job.discovered) if job.discovered else None
        values = (job.job_id, job.rule, job.inputs, job.input_hashes, job.output, index, job.key, discovered)
        held = job.action == "quarantined"
        for column, value in zip(columns, (*values, job.aggregate, job.matrix, held), strict=True):
            column.append(value)
    return recipe_rows, columns


def _jobs(recipe_rows: list[Any], columns: Sequence[list[Any]]) -> list[Job]:
    """The jobs `_columns` wrote, every one up to date or held back by its quarantined input."""
    recipes = [
        Recipe(doc, digest, tuple(StepCall(*step) for step in steps), path_aware, tail)
        for doc, digest, steps, path_aware, tail in recipe_rows
    ]
    none = NOTHING_DISCOVERED
    jobs = [
        Job(job_id, rule, inputs, hashes, output, recipes[index], key, found or none, aggregate, matrix)
        for job_id, rule, inputs, hashes, output, index, key, found, aggregate, matrix, _ in zip(
            *columns, strict=True
        )
    ]
    for job, held in zip(jobs, columns[10], strict=True):
        if held:
            job.action, job.reasons = "quarantined", QUARANTINED
    return jobs
