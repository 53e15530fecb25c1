"""Planning: which jobs exist, what their keys are, which are stale and why. It never writes.

`Planner.plan_rule` is called rule by rule (upstream first) by the engine as upstream results arrive,
and by `plan` with predicted upstream outputs; both see the same decisions and reasons.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches

from batchit.errors import UsageError
from batchit.fsutil import resolves_inside
from batchit.model import Config, Rule
from batchit.operators.registry import OperatorRegistry
from batchit.plan.decide import Decider
from batchit.plan.files import FileTree, Hasher
from batchit.plan.jobs import NOTHING_DISCOVERED, UNKNOWN, Job, JobExpander, rule_error
from batchit.state.store import Owned, StateStore, StatRow

MANIFEST_COPY = "batchit-manifest.json"
"""The manifest copy every build leaves in `out`; no job may write it."""

RESERVED_OUTPUTS = frozenset({MANIFEST_COPY, f"{MANIFEST_COPY}.sig"})


@dataclass(frozen=True)
class PlanOptions:
    """What the user asked for that changes decisions."""

    force: bool = False
    use_cache: bool = True
    only_failed: bool = False
    """Run only the jobs whose last attempt failed or was quarantined; hold every other job."""
    only_jobs: frozenset[str] | None = None
    """Run exactly these jobs, forced (a replay), and hold every other job."""


@dataclass
class Planner:
    """Holds what planning reads once (stat cache, records, cache index) and plans rules with it."""

    config: Config
    records: dict[str, Owned]
    expander: JobExpander
    decider: Decider
    hasher: Hasher
    generation: int
    """The state store's generation when it was read: a build re-plans if it moved on since."""
    view: StoreView
    claimed: dict[str, str] = field(default_factory=dict)
    _safe_dirs: set[str] = field(default_factory=set)

    @classmethod
    def open(
        cls, config: Config, registry: OperatorRegistry, store: StateStore | None, options: PlanOptions
    ) -> Planner:
        """Read the state store (None: a project never built) and get ready to plan."""
        tree = FileTree(config.root, frozenset({config.out, ".batchit"}))
        stats = store.load_stats(config.out) if store else {}
        records = store.load_owned(config.out) if store else {}
        cache_keys = set(store.cache_entries()) if store else set()
        by_job = store.load_discovered() if store else {}
        failed = (
            {f.job_id: f.inputs_key if f.quarantine else None for f in store.load_failures().values()}
            if store
            else {}
        )
        hasher = Hasher(config.root, stats)
        view = StoreView(store)

        def discovered_of(job_id: str) -> Mapping[str, str]:
            text = by_job.get(job_id)
            if not text:
                return NOTHING_DISCOVERED
            return {path: hasher.hash_path(path) for path in sorted(json.loads(text))}

        def nothing_discovered(job_id: str) -> Mapping[str, str]:
            return NOTHING_DISCOVERED

        decider = Decider(
            config.out_dir,
            config.out,
            records,
            hasher,
            view.recipe,
            view.recorded,
            cache_keys,
            failed=failed,
            force=options.force,
            use_cache=options.use_cache,
            only_failed=options.only_failed,
            only_jobs=options.only_jobs,
        )
        discovered = discovered_of if by_job else nothing_discovered
        expander = JobExpander(config, registry, tree, hasher, discovered)
        return cls(config, records, expander, decider, hasher, store.generation() if store else 0, view)

    def plan_rule(self, rule: Rule, upstream: dict[str, list[tuple[str, str]]]) -> list[Job]:
        """Expand `rule` into jobs and decide each one, given its upstream rules' current outputs."""
        jobs = self.expander.expand(rule, upstream)
        claimed, safe_dirs, decide = self.claimed, self._safe_dirs, self.decider.decide
        for job in jobs:
            output = job.output
            if (
                claimed.setdefault(output, job.job_id) != job.job_id
                or output in RESERVED_OUTPUTS
                or not output
                or output.rpartition("/")[0] not in safe_dirs
            ):
                self._check_output(rule, job)
            decide(job)
        return jobs

    def predict(self, rules: Iterable[Rule]) -> list[Job]:
        """Plan rules in order as a dry run: a stale upstream output counts as not yet known."""
        selected = list(rules)
        read = {name for rule in selected for name in rule.from_rules}
        outputs: dict[str, list[tuple[str, str]]] = {}
        planned: list[Job] = []
        for rule in selected:
            jobs = self.plan_rule(rule, outputs)
            if rule.name in read:  # only a rule another rule reads from needs its outputs predicted
                outputs[rule.name] = [
                    (j.output, self._predicted_hash(j)) for j in jobs if j.action != "quarantined"
                ]
            planned.extend(jobs)
        return planned

    def _predicted_hash(self, job: Job) -> str:
        record = self.records.get(job.output)
        if job.action in ("skip", "held") and record is not None and record.blake3:
            return record.blake3
        return UNKNOWN

    def _check_output(self, rule: Rule, job: Job) -> None:
        other = self.claimed.setdefault(job.output, job.job_id)
        if other != job.job_id:
            raise rule_error(
                self.config,
                rule,
                f"two jobs write one output {self.config.out}/{job.output}: {other} and {job.job_id}",
                "put a placeholder that tells them apart ({path}, a matrix key) into `output`",
            )
        if job.output in RESERVED_OUTPUTS or not job.output:
            raise rule_error(
                self.config,
                rule,
                f"output {job.output!r} is reserved for batchit's manifest copy",
                "choose another output name",
            )
        parent = job.output.rpartition("/")[0]
        if parent not in self._safe_dirs:
            out_dir = self.config.out_dir
            existing = out_dir / parent
            while not existing.exists() and existing != out_dir:
                existing = existing.parent
            if existing.exists() and not resolves_inside(out_dir.resolve(), existing):
                raise rule_error(
                    self.config,
                    rule,
                    f"output {self.config.out}/{job.output} leads outside `out` through a symlink",
                    f"remove the symlink {existing.relative_to(self.config.root)}",
                )
            self._safe_dirs.add(parent)

    def stat_updates(self) -> list[StatRow]:
        """Stat-cache rows learned while planning (files re-hashed because their stat changed)."""
        return list(self.hasher.updates.values())


@dataclass
class StoreView:
    """The store that planning reads details from on demand; swapped when a build takes over."""

    store: StateStore | None

    def recipe(self, recipe_hash: str) -> str | None:
        """A recorded recipe document."""
        return self.store.recipe(recipe_hash) if self.store else None

    def recorded(self, output: str) -> tuple[str, str, str | None]:
        """An output's recorded inputs and discovered dependencies (JSON) and recipe hash."""
        if self.store is None:
            return "[]", "{}", None
        return self.store.output_basis(output)


def select_rules(config: Config, names: Iterable[str]) -> list[Rule]:
    """The named rules and every rule they read from, in dependency order; all rules for no names."""
    wanted = list(names)
    if not wanted:
        return list(config.rules.values())
    needed: set[str] = set()
    stack = []
    for name in wanted:
        if name not in config.rules:
            close = get_close_matches(name, list(config.rules), n=1)
            raise UsageError(
                f"no rule named {name!r} in {config.file}",
                hint=f"did you mean {close[0]!r}?" if close else f"rules: {', '.join(config.rules)}",
            )
        stack.append(name)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(config.rules[name].from_rules)
    return [rule for name, rule in config.rules.items() if name in needed]
