"""Deciding whether a job is up to date, and saying why not (SPEC section 3).

An output is up to date when it exists, its content hash equals the recorded one and its job's
action key equals the recorded key. The reasons given here are what `plan`, `explain` and the run
report show, so they name the input, dep, parameter or operator that changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchit.fsutil import StatTuple, not_a_file, stat_identity
from batchit.plan.files import Hasher
from batchit.plan.jobs import UNKNOWN, Job
from batchit.plan.keys import hash_map_changes, recipe_differences
from batchit.state.rows import Owned

QUARANTINED = ("its input is quarantined and unchanged (batchit quarantine release)",)
"""The reasons of a job held back by its quarantined input."""


SAMPLED_AGGREGATE = ("held by --sample: built from a sample, it would replace the one of every input",)
"""Why a `--sample` build holds an aggregate job."""

SAMPLED_DOWNSTREAM = ("held by --sample: it reads the output of an aggregate the sample holds",)
"""Why a `--sample` build holds a job reading a held aggregate's output (it may not exist yet)."""

NOT_SELECTED = ("left as it is: --only-failed or replay runs only the jobs it names",)
"""Why `--only-failed` or a replay holds every other job."""


@dataclass
class Decider:
    """Compares planned jobs with what the state store recorded and with the files in `out`."""

    out_dir: Path
    out: str
    records: dict[str, Owned]
    hasher: Hasher
    recipe_doc: Callable[[str], str | None]
    recorded: Callable[[str], tuple[str, str, str | None]]
    """An output's recorded inputs and discovered dependencies (JSON) and recipe hash, read only for
    a stale output."""
    cache: Mapping[str, tuple[str, int]]
    """The content-addressed cache's index: action key -> (blake3, size)."""
    failed: dict[str, str | None] = field(default_factory=dict)
    """Jobs whose last attempt failed: job id -> the input hashes of a quarantine (None: not quarantined)."""
    force: bool = False
    use_cache: bool = True
    only_failed: bool = False
    only_jobs: frozenset[str] | None = None
    hold_aggregates: bool = False
    """Hold every aggregate job (a `--sample` build: an aggregate of a sample is no output to keep),
    and every job reading the output of a job held so."""
    sample_held: set[str] = field(default_factory=set)
    """Project-relative paths of the outputs `hold_aggregates` held: the jobs reading them are held too."""
    rebuilt: set[str] = field(default_factory=set)
    """Project-relative paths of outputs this build writes again: under `--only-failed`, a job
    reading one follows the retried job that writes it instead of being held."""
    strangers: dict[str, str | None] = field(default_factory=dict)
    """Output paths holding files batchit did not record, or anything but a regular file (what it
    is, else None); never overwritten without --overwrite, never read."""
    _diff_cache: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _prefix: str = field(init=False)
    _plain: bool = field(init=False)
    """Neither forced nor retrying: an up-to-date job can be recognised on the fast path."""

    def __post_init__(self) -> None:
        self._prefix = f"{self.out_dir}/"
        self._plain = not (self.force or self.only_failed or self.only_jobs is not None)

    def decide(self, job: Job) -> None:
        """Set `job.action` and `job.reasons`."""
        if self.hold_aggregates and (job.aggregate or not self.sample_held.isdisjoint(job.inputs)):
            job.action = "held"
            job.reasons = SAMPLED_AGGREGATE if job.aggregate else SAMPLED_DOWNSTREAM
            self.sample_held.add(f"{self.out}/{job.output}")
            return
        if self._plain:
            record = self.records.get(job.output)
            if (
                record is not None
                and record.action_key == job.key
                and job.job_id not in self.failed
                and record.stat == stat_identity(self._prefix + job.output)
            ):
                return  # up to date, the recorded stat vouching for the output: `skip` is the default
        retrying = (self.only_failed and job.job_id in self.failed) or self.only_jobs is not None
        following = self.only_failed and not retrying and not self.rebuilt.isdisjoint(job.inputs)
        if (self.only_failed and not retrying and not following) or (
            self.only_jobs is not None and job.job_id not in self.only_jobs
        ):
            job.action = "held"
            job.reasons = NOT_SELECTED
            return
        held_key = self.failed.get(job.job_id)
        if held_key is not None and not retrying and held_key == "|".join(job.input_hashes):
            job.action = "quarantined"
            job.reasons = QUARANTINED
            return
        record = self.records.get(job.output)
        on_disk = stat_identity(self._prefix + job.output)
        # a symlink is not followed: batchit writes none, so one is the user's, whatever it leads to
        kind = None if on_disk is None else not_a_file(self._prefix + job.output, follow_symlinks=False)
        if kind == "a directory" and self._only_outputs_below(job.output):
            kind = None  # batchit's own stale outputs, removed to make way before the job runs
        elif on_disk is not None and (record is None or kind is not None):
            self.strangers[job.output] = kind
        reasons = [f"output path holds {kind}"] if kind else self._stale_reasons(job, record, on_disk)
        if self.only_failed and retrying:
            reasons = ["retrying a failed job (--only-failed)"]
        elif self.only_jobs is not None:
            reasons = ["replayed"]
        if self.force:
            reasons = reasons or ["forced (--force)"]
        elif not reasons:
            job.action = "skip"
            return
        job.reasons = tuple(reasons)
        cached = self.use_cache and not self.force and not retrying and self.cache.get(job.key) is not None
        job.action = "restore" if cached else "run"

    def _only_outputs_below(self, output: str) -> bool:
        """True when a directory stands at `output` holding outputs batchit recorded and nothing
        else (an input that was a directory became a file): the build removes them to make way.
        An empty one is no output of batchit's: it stays, and stops the build like any directory."""
        top = Path(self._prefix + output)
        if top.is_symlink() or not top.is_dir():
            return False
        found = False
        for parent, _, names in os.walk(top):
            for name in names:
                if self.records.get(Path(parent, name).relative_to(self.out_dir).as_posix()) is None:
                    return False
                found = True
        return found

    def _stale_reasons(self, job: Job, record: Owned | None, on_disk: StatTuple | None) -> list[str]:
        if record is None or record.action_key is None or record.blake3 is None:
            return ["new output" if record is None else "not built yet"]
        if job.key == UNKNOWN:
            return ["an upstream input will be rebuilt first"]
        if job.key != record.action_key:
            return self._key_reasons(job, record) or ["action key changed"]
        if on_disk is None:
            return ["output missing"]
        if record.stat == on_disk:
            return []
        rel = f"{self.out}/{job.output}"
        try:
            digest = self.hasher.hash_many([(rel, on_disk)])[rel]
        except OSError as exc:  # batchit's own output, made unreadable: rebuilt, as one modified is
            return [f"output cannot be read ({exc.strerror or exc})"]
        return ["output modified"] if digest != record.blake3 else []

    def _key_reasons(self, job: Job, record: Owned) -> list[str]:
        inputs_json, discovered_json, recipe = self.recorded(job.output)
        before = {item["path"]: item["blake3"] for item in json.loads(inputs_json)}
        now = dict(zip(job.inputs, job.input_hashes, strict=True))
        reasons = hash_map_changes("input", before, now)
        if recipe and recipe != job.recipe.hash:
            pair = (recipe, job.recipe.hash)
            if pair not in self._diff_cache:
                old_doc = self.recipe_doc(recipe)
                self._diff_cache[pair] = (
                    recipe_differences(old_doc, job.recipe.doc) if old_doc else ["recipe changed"]
                ) or ["recipe changed"]
            reasons.extend(self._diff_cache[pair])
        old_discovered: dict[str, str] = json.loads(discovered_json)
        for path, digest in sorted(old_discovered.items()):
            if job.discovered.get(path, digest) != digest:
                reasons.append(f"discovered dependency changed: {path}")
        if job.recipe.path_aware and record.rule != job.rule:
            reasons.append(f"rule renamed: {record.rule} -> {job.rule} (its steps see the rule's name)")
        return reasons
