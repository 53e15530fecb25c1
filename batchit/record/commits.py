"""Committing job results to the state store as they arrive, pruning, and keeping the cache in bounds.

Claims (an output path recorded as batchit's own) are committed before any worker may rename into
the path; results are committed in batched transactions, so a build killed with SIGKILL loses at most
the last half second of results and redoes only those jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from batchit.execute.boundary import JobResult
from batchit.fsutil import cache_entry, remove_outputs, stat_identity
from batchit.model import Config
from batchit.plan.jobs import Job
from batchit.plan.keys import Seen, action_key
from batchit.plan.planner import Planner
from batchit.plan.pruning import once_written, prunable
from batchit.plan.rows import RowsOnDemand
from batchit.record.audit import append_audit, settle_audit
from batchit.record.clearing import blocking_outputs, in_the_way
from batchit.record.events import FLUSH_EVERY
from batchit.record.quarantine import quarantine_input
from batchit.state.rows import Failure, OutputRecord, StatRow
from batchit.state.store import StateStore

FLUSH_COUNT = 1000


class Committer:
    """Writes a build's claims, results, stat updates and prunes to the state store."""

    def __init__(
        self, store: StateStore, planner: Planner, config: Config, run_id: str, warn: Callable[[str], None]
    ) -> None:
        self.store = store
        self.warn = warn
        self.planner = planner
        self.config = config
        self.run_id = run_id
        self._claims: list[tuple[str, str, str]] = []
        self._results: list[tuple[Job, JobResult, list[str]]] = []
        self._last_flush = time.monotonic()
        self._cache = RowsOnDemand(store.cache_one)
        """Cache entries (blake3, size) by action key, read as restores ask for them."""
        self._failed = set(store.load_failures())
        self._recipes: set[str] = set()
        self.unsettled: set[str] = set()
        """Jobs whose output was kept but not recorded as up to date (an input changed meanwhile)."""
        self.rekeyed: dict[str, tuple[str, dict[str, str]]] = {}
        """Jobs with discovered dependencies: the action key and dependencies they were recorded with."""
        self.cleared: list[str] = []
        """Stale outputs removed because they stood in the way of an output of this build."""
        self._to_forget: list[str] = []
        self._cache_failed = False

    def stat_updates(self, rows: list[StatRow]) -> None:
        """Store stat-cache rows learned while planning (a touched file re-hashed, no job run)."""
        if rows:
            with self.store.transaction():
                self.store.put_stats(rows)
            self.planner.hasher.cache.update({row[0]: row for row in rows})
            self.planner.hasher.updates.clear()

    def claim(self, job: Job) -> None:
        """Mark a job's output path as batchit's own, and remove the stale outputs of batchit's that
        stand in its way (`clearing`); `flush_claims` commits both before dispatch."""
        self._claims.append((job.output, job.job_id, job.rule))
        if not in_the_way(f"{self.config.out_dir}/{job.output}"):
            return  # the common case, known with one stat
        blocking = blocking_outputs(self.config.out_dir, job.output, self._removable)
        if blocking:
            removed, _ = remove_outputs(self.config.out_dir, blocking)  # one kept fails the job's write
            self.cleared.extend(removed)
            self._to_forget.extend(removed)
            for path in removed:
                self.planner.records.pop(path, None)

    def _removable(self, path: str) -> bool:
        """True for an output batchit recorded that no job of this build writes."""
        return self.planner.records.get(path) is not None and path not in self.planner.claims.claimed

    def flush_claims(self) -> None:
        """Commit pending claims and forget the outputs removed to make way for them (called before
        any batch that contains them is dispatched)."""
        if self._claims:
            with self.store.transaction():
                self.store.forget_outputs(self._to_forget)
                self.store.drop_stats(f"{self.config.out}/{p}" for p in self._to_forget)
                self.store.claim_outputs(self._claims)
            self._claims.clear()
            self._to_forget.clear()

    def add(self, job: Job, result: JobResult) -> list[str]:
        """Queue a finished job's result for the next commit. Return the files its key hashed that
        changed while it ran (`_changed_while_running`): then its output may mix versions, so it
        is kept but not recorded as up to date, and it enters no cache."""
        changed = self._changed_while_running(job, result) if result.ok else []
        if changed:
            self.unsettled.add(job.job_id)
        self._results.append((job, result, changed))
        return changed

    def flush_if_due(self) -> None:
        """Commit queued results when enough have piled up or enough time has passed."""
        if len(self._results) >= FLUSH_COUNT or time.monotonic() - self._last_flush >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Commit every queued result in one transaction."""
        self.flush_claims()
        self._last_flush = time.monotonic()
        if not self._results:
            return
        records: list[OutputRecord] = []
        stats: list[StatRow] = []
        failed = False
        with self.store.transaction():
            for job, result, changed in self._results:
                if result.ok:
                    records.append(self._output_record(job, result, stats, changed))
                elif not result.deferred:  # a deferred job leaves no trace: the next run tries it again
                    failed = True
                    self._failed.add(job.job_id)
                    self.store.put_failure(self._failure(job, result))
            self.store.commit_outputs(records)
            self.store.put_stats(stats)
            self.store.put_stats(self.planner.stat_updates())
            self.planner.hasher.updates.clear()
        self._results.clear()
        if failed:  # a quarantine staged its audit entry in the transaction: write its line now
            settle_audit(self.config.state_dir, self.store, fsync=self.config.durability == "fsync")

    def forget_failures_of_current(self, jobs: Iterable[Job]) -> None:
        """Forget the failures of jobs planned up to date: an input put back to the bytes its output
        was built from ends its failure, and its quarantine, as a fixed input that builds does (the
        copy under `.batchit/quarantine` stays as evidence)."""
        current = [job.job_id for job in jobs if job.action == "skip" and job.job_id in self._failed]
        if current:
            with self.store.transaction():
                self.store.clear_failures(current)
            self._failed.difference_update(current)

    def _failure(self, job: Job, result: JobResult) -> Failure:
        """The failure row of a job; a permanent failure of a one-input job quarantines its input."""
        failure = Failure(
            job.job_id,
            job.rule,
            _input_label(job),
            job.output,
            result.error_class,
            result.message,
            self.run_id,
        )
        if not quarantines(job, result):
            return failure
        inputs_key = "|".join(job.input_hashes)
        held = self.store.quarantine_of(job.rule, failure.input, inputs_key)
        if held is not None:  # another job of this (rule, input), a matrix variant, quarantined it
            return replace(failure, quarantine=held, inputs_key=inputs_key)
        place = quarantine_input(self.config.root, self.config.state_dir, failure, job.input_hashes[0])
        details = {
            "rule": job.rule,
            "input": job.inputs[0],
            "blake3": job.input_hashes[0],
            "class": result.error_class,
        }
        append_audit(  # staged in flush's transaction; flush settles it after the commit
            self.config.state_dir, self.store, "quarantine", {**details, "run_id": self.run_id}
        )
        self.warn(f"quarantined {job.inputs[0]} ({job.rule}): {result.error_class}; copy at {place}")
        return replace(failure, quarantine=place, inputs_key=inputs_key)

    def _output_record(
        self, job: Job, result: JobResult, stats: list[StatRow], changed: list[str]
    ) -> OutputRecord:
        """The record of a finished output (stat and cache rows are gathered on the side)."""
        out = self.config.out
        if changed and result.cached and self._cache.get(job.key) is None:
            cache_entry(self.config.state_dir / "cache", job.key).unlink(missing_ok=True)  # the worker's copy
            result = replace(result, cached=False)
        key, discovered_json = job.key, "{}"
        if result.discovered or job.discovered:
            discovered = {
                path: self.planner.hasher.hash_path(path, discovered=True) for path in result.discovered
            }
            seen = Seen(job.inputs, self.config.rules[job.rule].output, job.rule, job.matrix)
            key = base_key = action_key(job.recipe, job.input_hashes, {}, seen)
            discovered_json = json.dumps(discovered, sort_keys=True)
            if discovered:  # so a job with no record of its own finds them (`load_discoveries`)
                key = action_key(job.recipe, job.input_hashes, discovered, seen)
                self.store.put_discoveries(base_key, json.dumps(sorted(discovered)), key)
            else:  # it discovers nothing now: what it found before must not key it any more
                self.store.drop_discoveries(base_key)
            self.rekeyed[job.job_id] = (key, dict(sorted(discovered.items())))
            if key != job.key and result.cached:
                _move_cache_entry(self.config.state_dir / "cache", job.key, key)
        if job.recipe.hash not in self._recipes:
            self.store.put_recipe(job.recipe.hash, job.recipe.doc)
            self._recipes.add(job.recipe.hash)
        recorded_key: str | None = key
        if changed:
            self.warn(
                f"{', '.join(changed)} changed while the job of {out}/{job.output} ran; the output is "
                "kept but not recorded as up to date, so the next build redoes it"
            )
            recorded_key = None
        if result.cache_error and not self._cache_failed:
            self._cache_failed = True
            self.warn(
                f"could not copy {out}/{job.output} into the cache: {result.cache_error} (named for the "
                "first such output only; the build goes on, and outputs the cache lacks are built again "
                "instead of restored)"
            )
        if result.output_stat is not None:
            stats.append((f"{out}/{job.output}", *result.output_stat, result.blake3))
        if job.job_id in self._failed:
            self.store.clear_failures([job.job_id])
            self._failed.discard(job.job_id)
        if result.cached or (job.action == "restore" and not changed and self._cache.get(key) is not None):
            # a twin's copy of its leader's output is no cache entry: its leader's (if any) is
            self.store.put_cache(key, result.blake3, result.size, time.time_ns())
            self._cache[key] = (result.blake3, result.size)
        return OutputRecord(
            job.output,
            job.job_id,
            job.rule,
            recorded_key,
            result.blake3,
            result.sha256,
            result.size,
            job.inputs_json(),
            discovered_json,
            job.recipe.hash,
            "restored" if job.action == "restore" else "built",
            self.run_id,
        )

    def _changed_while_running(self, job: Job, result: JobResult) -> list[str]:
        """The files the job's key hashed whose stat after the job differs from the one they had
        when hashed: its inputs (stat-ed by the worker) and the files its recipe names; and the
        discovered files a step hashed as it read them whose bytes differ now."""
        expander = self.planner.expander
        planned = expander.tree.stats
        changed = [
            path
            for path, now in zip(job.inputs, result.input_stats, strict=True)
            if path in planned and now != planned[path]
        ]
        root = self.config.root
        for path, then in expander.watched.get(job.recipe.hash, ()):
            if stat_identity(str(root / path)) != then:
                changed.append(path)
        hasher = self.planner.hasher
        for path, read in result.read_hashes:  # a discovered file, as the step read it
            if hasher.hash_path(path, discovered=True) != read:
                changed.append(path)
        return changed

    def cached_blake3(self, key: str) -> str | None:
        """The recorded content hash of a cache entry."""
        entry = self._cache.get(key)
        return entry[0] if entry else None

    def drop_cache(self, key: str) -> None:
        """Forget a cache entry that turned out missing or corrupted."""
        self._cache.pop(key, None)
        with self.store.transaction():
            self.store.drop_cache([key])
        entry = cache_entry(self.config.state_dir / "cache", key)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)  # only batchit writes under .batchit/cache: a directory there is debris
        else:
            entry.unlink(missing_ok=True)

    def prune(self, by_rule: dict[str, list[Job]], finished: list[str], *, full: bool) -> list[str]:
        """Remove recorded outputs no current job produces (SPEC section 3), and forget the failures
        of jobs that no longer exist, of the `finished` rules (every rule, `full`); return the paths
        of the outputs that had been written (a claim whose job never finished leaves only its row).

        Which ones is `prunable`'s answer; an output a planned job produces but another rule
        recorded (a renamed rule, swapped output templates) passes to that job. A path batchit
        cannot prove holds its file (`remove_outputs`) is kept, with a warning.
        """
        jobs = [job for planned in by_rule.values() for job in planned]
        owned = self.planner.owned_rules()  # as planned: rows this build claimed are all current
        doomed = prunable(owned, self.config.rules, self.store, by_rule, finished, full=full)
        removed, kept = remove_outputs(self.config.out_dir, doomed)
        for path, why in kept.items():
            self.warn(f"not pruned: {self.config.out}/{path}: {why}")
        written = once_written(removed, self.planner.records)
        moved = [(j.job_id, j.rule, j.output) for j in jobs if owned.get(j.output, j.rule) != j.rule]
        with self.store.transaction():
            self.store.reown_outputs(moved)
            self.store.forget_outputs(removed)
            self.store.drop_stats(f"{self.config.out}/{p}" for p in removed)
            live, done = {job.job_id for job in jobs}, set(finished)
            failures = self.store.load_failures().items()
            self.store.clear_failures(j for j, f in failures if j not in live and (full or f.rule in done))
        return written


def quarantines(job: Job, result: JobResult) -> bool:
    """True when a failed job's input goes to quarantine: a permanent failure of a one-input job
    (an aggregate that fails is failed, never quarantined), unless its output could not be written."""
    return not result.ok and not result.transient and result.input_at_fault and not job.aggregate


def _input_label(job: Job) -> str:
    return job.inputs[0] if len(job.inputs) == 1 else f"{len(job.inputs)} inputs"


def _move_cache_entry(cache_dir: Path, old: str, new: str) -> None:
    target = cache_entry(cache_dir, new)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(cache_entry(cache_dir, old), target)
