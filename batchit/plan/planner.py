"""Planning: which jobs exist, what their keys are, which are stale and why. It never writes.

`Planner.plan_rule` is called rule by rule (upstream first) by the engine as upstream results arrive,
and by `plan` with predicted upstream outputs; both see the same decisions and reasons.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from batchit.fsutil import StatTuple, stat_identity
from batchit.globs import compile_glob
from batchit.model import Config, Rule
from batchit.operators.registry import OperatorRegistry
from batchit.plan.claims import OutputClaims
from batchit.plan.decide import Decider
from batchit.plan.files import FileTree, Hasher
from batchit.plan.jobs import NOTHING_DISCOVERED, UNKNOWN, Job, JobExpander
from batchit.plan.ownership import refuse_foreign_state
from batchit.plan.patch import patch_plan
from batchit.plan.rows import RowsOnDemand, StoreView
from batchit.plan.sample import Sample
from batchit.plan.snapshot import MISSING, PlanSnapshot, Reads, load_snapshot, pack_stats, plan_fingerprint
from batchit.state.rows import Owned, StatRow
from batchit.state.store import StateStore


@dataclass(frozen=True)
class PlanOptions:
    """What the user asked for that changes decisions."""

    force: bool = False
    use_cache: bool = True
    only_failed: bool = False
    """Run only the jobs whose last attempt failed or was quarantined; hold every other job."""
    only_jobs: frozenset[str] | None = None
    """Run exactly these jobs, forced (a replay), and hold every other job."""
    sample: Sample | None = None
    """Plan only the jobs of the sampled inputs (and of what they feed); hold every aggregate."""

    @property
    def replans_all(self) -> bool:
        """True when the options change decisions, so no snapshot of an earlier plan answers."""
        return self.force or self.only_failed or self.only_jobs is not None or self.sample is not None


class Planner:
    """Plans rules with what it reads from the state store (stat cache, records, cache index), read
    once and only when needed: a replayed snapshot needs none of it, a patched one a few rows."""

    def __init__(
        self,
        config: Config,
        registry: OperatorRegistry,
        store: StateStore | None,
        options: PlanOptions,
        *,
        rows_on_demand: bool = False,
    ) -> None:
        self.config = config
        self.registry = registry
        self.options = options
        self.view = StoreView(store)
        self.generation = store.generation() if store else 0
        """The state store's generation when it was read: a build re-plans if it moved on since."""
        self.claims = OutputClaims(config)
        self.replayed = False
        """True when `predict` returned a snapshot's jobs instead of planning them."""
        self.patched = False
        """True when `predict` planned only the jobs a snapshot could not vouch for."""
        self.fingerprint: str | None = None
        """The snapshot fingerprint of the last `predict` (None: options that change decisions)."""
        self._tree = FileTree(config.root, config.unwalked)
        self._snapshot: PlanSnapshot | None = None
        """The snapshot the plan was replayed or patched from."""
        self._on_demand = rows_on_demand and store is not None
        """True while state store rows are read one at a time (a patched plan, `plan_one`), through
        the view: a build swaps its own store in after planning."""

    @classmethod
    def open(
        cls,
        config: Config,
        registry: OperatorRegistry,
        store: StateStore | None,
        options: PlanOptions,
        *,
        rows_on_demand: bool = False,
    ) -> Planner:
        """Get ready to plan against `store` (None: a project never built); with `rows_on_demand`,
        to plan a few jobs (`plan_one`), reading their rows one at a time. A store that belongs
        to another config is refused (batchit.plan.ownership)."""
        refuse_foreign_state(config, store)
        if config.state_dir != config.project_state_dir:  # a sample with a state of its own
            project = StateStore.open_readonly(config.project_state_dir / "state.db")
            try:
                refuse_foreign_state(config, project)  # the project's state is another config's
            finally:
                if project is not None:
                    project.close()
        return cls(config, registry, store, options, rows_on_demand=rows_on_demand)

    @functools.cached_property
    def records(self) -> dict[str, Owned]:
        """Every output batchit owns, with what planning compares (read as asked in a patched plan)."""
        store, out = self.view.store, self.config.out
        if self._on_demand:
            return RowsOnDemand(self.view.reader(lambda on, path: on.owned_one(out, path)))
        return store.load_owned(out) if store else {}

    def owned_rules(self) -> dict[str, str]:
        """The rule of every output batchit owns (from the records when planning loaded them)."""
        if "records" in self.__dict__ and not self._on_demand:
            return {path: record.rule for path, record in self.records.items()}
        store = self.view.store
        return store.output_rules(self.config.out) if store else {}

    @functools.cached_property
    def hasher(self) -> Hasher:
        """Content hashes through the state store's stat cache (read as asked in a patched plan)."""
        store = self.view.store
        if self._on_demand:
            return Hasher(self.config.root, RowsOnDemand(self.view.reader(StateStore.stat_row)))
        return Hasher(self.config.root, store.load_stats(self.config.out) if store else {})

    @functools.cached_property
    def decider(self) -> Decider:
        """Decides each job against the records, failures and cache index."""
        store, options = self.view.store, self.options
        failures = store.load_failures().values() if store else ()
        return Decider(
            self.config.out_dir,
            self.config.out,
            self.records,
            self.hasher,
            self.view.recipe,
            self.view.recorded,
            self.cache_index,
            failed={f.job_id: f.inputs_key if f.quarantine else None for f in failures},
            force=options.force,
            use_cache=options.use_cache,
            only_failed=options.only_failed,
            only_jobs=options.only_jobs,
            hold_aggregates=options.sample is not None and options.sample.hold_aggregates,
        )

    @functools.cached_property
    def cache_index(self) -> Mapping[str, tuple[str, int]]:
        """The content-addressed cache's index: action key -> (blake3, size) of the output it keeps
        (read as asked in a patched plan)."""
        store = self.view.store
        if self._on_demand:
            return RowsOnDemand(self.view.reader(StateStore.cache_one))
        return store.cache_entries() if store else {}

    @functools.cached_property
    def expander(self) -> JobExpander:
        """Expands rules into jobs over the project's files."""
        store, hasher = self.view.store, self.hasher
        by_job: Mapping[str, str]
        by_base_key: Mapping[str, str]
        if self._on_demand:
            by_job = RowsOnDemand(self.view.reader(StateStore.discovered_one))
            by_base_key = RowsOnDemand(self.view.reader(StateStore.discoveries_one))
        else:
            by_job = store.load_discovered() if store else {}
            by_base_key = store.load_discoveries() if store else {}

        def hashed(text: str | None) -> Mapping[str, str]:
            if not text:
                return NOTHING_DISCOVERED
            return {path: hasher.hash_path(path, discovered=True) for path in sorted(json.loads(text))}

        return JobExpander(
            self.config,
            self.registry,
            self._tree,
            hasher,
            lambda job_id: hashed(by_job.get(job_id)),
            lambda base_key: hashed(by_base_key.get(base_key)),
            self._output_size,
        )

    def _output_size(self, path: str, digest: str) -> int:
        """The size of output `path` (relative to `out`) with hash `digest`, as `input.size` downstream:
        the recorded size when the record holds these bytes, else the file's size, else 0 (not built)."""
        record = self.records.get(path)
        if record is not None and record.blake3 == digest and record.size is not None:
            return record.size
        stat = stat_identity(str(self.config.out_dir / path))
        return 0 if stat is None else stat[0]

    @property
    def strangers(self) -> dict[str, str | None]:
        """Output paths holding files batchit did not record or anything but a regular file, with
        what that is (None: a file); none when nothing was decided."""
        return self.decider.strangers if "decider" in self.__dict__ else {}

    @functools.cached_property
    def sampled(self) -> frozenset[str] | None:
        """The input files of a `--sample` build (None: every input). Drawn from the files the
        sampled rules' globs match, so the jobs downstream of them follow through their outputs."""
        sample = self.options.sample
        if sample is None:
            return None
        candidates: set[str] = set()
        for name in sample.rules or self.config.rules:
            rule = self.config.rules[name]
            globs, exclude = [compile_glob(g) for g in rule.globs], [compile_glob(g) for g in rule.exclude]
            candidates.update(path for path, _ in self._tree.match(globs, exclude))
        return sample.choose(candidates)

    def plan_rule(self, rule: Rule, upstream: dict[str, list[tuple[str, str]]]) -> list[Job]:
        """Expand `rule` into jobs and decide each one, given its upstream rules' current outputs."""
        jobs = self.expander.expand(rule, upstream, self.sampled)
        claim, decide = self.claims.claim, self.decider.decide
        for job in jobs:
            claim(rule, job)
            decide(job)
        return jobs

    def note_rebuilt(self, jobs: Iterable[Job]) -> None:
        """Say that these jobs write their outputs in this build: under `--only-failed`, the jobs
        reading them are planned as usual instead of held (they would go stale)."""
        self.decider.rebuilt.update(f"{self.config.out}/{job.output}" for job in jobs)

    def plan_one(self, rule: Rule, job_id: str, inputs: Iterable[str]) -> Job | None:
        """Plan one job of a one-input rule again, reading only its input and its own state rows.

        A doit sub-task checks and runs its job this way: planning the whole rule in each of 10,000
        sub-tasks made a doit run quadratic. A source input is stat-ed here; an input from an
        upstream rule counts with its recorded hash (under doit, the upstream sub-task ran first).
        None when the job no longer exists (its input is gone, or the rule no longer selects it).
        """
        assert rule.aggregate is None and (self._on_demand or self.view.store is None)
        prefix, sources = f"{self.config.out}/", set()
        upstream: dict[str, list[tuple[str, str]]] = {}
        for path in inputs:
            if path.startswith(prefix):
                record = self.records.get(path[len(prefix) :])
                if record is None or record.rule not in rule.from_rules:
                    return None
                upstream[record.rule] = [(path[len(prefix) :], record.blake3 or UNKNOWN)]
            elif (stat := stat_identity(str(self.config.root / path))) is not None:
                self._tree.stats[path] = stat
                sources.add(path)
            else:
                return None
        for job in self.expander.expand(rule, upstream, only=frozenset(sources)):
            if job.job_id == job_id:
                self.claims.claim(rule, job)
                self.decider.decide(job)
                return job
        return None

    def predict(self, rules: Iterable[Rule]) -> list[Job]:
        """Plan rules in order as a dry run: a stale upstream output counts as not yet known.

        When a build left a snapshot of this very plan and nothing it read has changed, the
        snapshot's jobs are the answer (see `batchit.plan.snapshot`); when a few files changed, only
        their jobs are planned again (`batchit.plan.patch`).
        """
        selected = list(rules)
        replayed = self._replay(selected)
        if replayed is not None:
            return replayed
        read = {name for rule in selected for name in rule.from_rules}
        outputs: dict[str, list[tuple[str, str]]] = {}
        planned: list[Job] = []
        for rule in selected:
            jobs = self.plan_rule(rule, outputs)
            if self.options.only_failed:
                self.note_rebuilt(j for j in jobs if j.action in ("run", "restore"))
            if rule.name in read:  # only a rule another rule reads from needs its outputs predicted
                outputs[rule.name] = [
                    (j.output, self._predicted_hash(j)) for j in jobs if j.action != "quarantined"
                ]
            planned.extend(jobs)
        return planned

    def _replay(self, selected: list[Rule]) -> list[Job] | None:
        """The snapshot's jobs when nothing they read changed, patched when a few did (else None)."""
        if self.options.replans_all:
            return None
        self.fingerprint = plan_fingerprint(self.config, self.registry, selected)  # for the next one
        if self.view.store is None:
            return None  # a first build: nothing to replay
        snapshot = load_snapshot(self.config.state_dir, self.generation, self.fingerprint)
        if snapshot is None:
            return None
        check = snapshot.check(self.config.root, self.config.out, self.config.unwalked)
        self._tree = check.tree  # a full plan walks no file twice
        self._snapshot = snapshot
        if check.unchanged:
            jobs = snapshot.jobs()
            self.replayed = True
        else:
            self._on_demand = True  # a patch reads a few records: one row at a time
            patched = patch_plan(snapshot.jobs(), check, selected, self._replan, self._patched_hash)
            if patched is None:
                self._give_up_patch()
                return None
            jobs, self.patched = patched, True
        self.claims.claim_all(jobs)  # the same checks as planning: a symlink may have appeared in `out`
        return jobs

    def _give_up_patch(self) -> None:
        """Drop the snapshot and what a patch read row by row: a full plan loads the store at once."""
        self._snapshot = None
        self._on_demand = False
        for name in ("records", "hasher", "decider", "expander", "cache_index", "_built_keys"):
            self.__dict__.pop(name, None)

    def _replan(
        self, rule: Rule, upstream: Mapping[str, list[tuple[str, str]]], inputs: frozenset[str] | None
    ) -> list[Job]:
        """Plan a rule's jobs again (with `inputs`, only those of these input paths) in a patched plan."""
        jobs = self.expander.expand(rule, upstream, only=inputs)
        for job in jobs:
            self.decider.decide(job)
        return jobs

    def snapshot_reads(self, output_stats: list[StatTuple]) -> Reads | None:
        """What planning read, with the stats of the jobs' outputs now, for a snapshot of a plan
        whose every job is up to date (None: a stat that cannot be packed)."""
        tree, racy = self._tree, self.hasher.racy  # files read too soon after a write: not vouched for
        walked_stats = (
            tree.stats.values() if not racy else [MISSING if p in racy else s for p, s in tree.stats.items()]
        )
        stats, outputs = pack_stats(walked_stats), pack_stats(output_stats)
        if stats is None or outputs is None:
            return None
        hashed = {path: (stat, key) for path, stat, key in self._snapshot.reads[3]} if self._snapshot else {}
        key_files = self.hasher.key_files
        for path, stat in self.hasher.looked_up.items():  # a patch checked the snapshot's: still true
            hashed[path] = (
                MISSING if path in racy else stat,
                path in key_files or hashed.get(path, (None, False))[1],
            )
        return (
            list(tree.walked),
            list(tree.stats),
            stats,
            [(p, s, k) for p, (s, k) in hashed.items()],
            outputs,
        )

    @functools.cached_property
    def _snapshot_outputs(self) -> dict[str, tuple[StatTuple, str]]:
        return self._snapshot.outputs() if self._snapshot else {}

    def settled_output(self, output: str) -> tuple[StatTuple, str] | None:
        """The stat an up-to-date output was recognised by, and its BLAKE3: re-hashed while
        planning, vouched for by the snapshot the plan came from, or recorded."""
        key = f"{self.config.out}/{output}"
        if "hasher" in self.__dict__ and key in self.hasher.cache:  # membership reads no row
            row = self.hasher.cache[key]
            return row[1:5], row[5]
        remembered = self._snapshot_outputs.get(output)
        if remembered is not None:
            return remembered
        record = self.records[output]
        size, mtime_ns, ctime_ns, inode = record.stat
        if size is None or mtime_ns is None or ctime_ns is None or inode is None or not record.blake3:
            return None
        return (size, mtime_ns, ctime_ns, inode), record.blake3

    def _patched_hash(self, job: Job) -> str:
        """`_predicted_hash` in a patched plan: the snapshot knows the hash of every job it kept."""
        remembered = self._snapshot_outputs.get(job.output)
        if job.action in ("skip", "held") and remembered is not None:
            return remembered[1]
        return self._predicted_hash(job)

    def _predicted_hash(self, job: Job) -> str:
        """The BLAKE3 `job`'s output will have once the build did it, as its downstream jobs'
        input hash: the recorded one for a job left as it is; for a job restored or run, the
        bytes its key gave before (the same recipe and inputs give the same bytes), as the cache
        index or an output's record knows them; else UNKNOWN (a key never built: new bytes)."""
        record = self.records.get(job.output)
        if job.action in ("skip", "held"):
            return record.blake3 if record is not None and record.blake3 else UNKNOWN
        if job.key == UNKNOWN:
            return UNKNOWN
        if record is not None and record.action_key == job.key and record.blake3:
            return record.blake3
        cached = self.cache_index.get(job.key)
        if cached is not None:
            return cached[0]
        return self._built_keys.get(job.key, UNKNOWN)

    @functools.cached_property
    def _built_keys(self) -> Mapping[str, str]:
        """The bytes each recorded output's key gave (action key -> BLAKE3), for a job whose output
        moved to a new path; known only when planning loaded every record (a full plan)."""
        if self._on_demand:
            return {}
        return {r.action_key: r.blake3 for r in self.records.values() if r.action_key and r.blake3}

    def stat_updates(self) -> list[StatRow]:
        """Stat-cache rows learned while planning (files re-hashed because their stat changed)."""
        return list(self.hasher.updates.values()) if "hasher" in self.__dict__ else []
