"""What a build is asked to do (BuildOptions) and what it did (BuildOutcome)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchit.errors import BuildInterrupted, UsageError
from batchit.execute.boundary import JobResult
from batchit.execute.pools import ExecutorKind
from batchit.execute.signals import INTERRUPTED_EXIT
from batchit.model import Config
from batchit.plan.jobs import Job
from batchit.plan.planner import PlanOptions
from batchit.plan.sample import DEFAULT_SEED, Sample
from batchit.plan.selection import select_rules
from batchit.record.recorder import RunRecord

Event = dict[str, Any]
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class BuildOptions:
    """What `batchit build` was asked to do."""

    rules: tuple[str, ...] = ()
    jobs: int | None = None
    executor: ExecutorKind = "local"
    dask_address: str | None = None
    """With `executor="dask"`: the scheduler to connect to (`--executor dask=ADDRESS`); None starts
    a local cluster."""
    fail_fast: bool = False
    dry_run: bool = False
    force: bool = False
    use_cache: bool = True
    overwrite: bool = False
    batch_size: int | None = None
    only_failed: bool = False
    strict: bool = False
    seed: int | None = None
    """Seeds the retry jitter (and sampling): a replay passes the recorded one. None: a fresh seed."""
    only_jobs: frozenset[str] | None = None
    """Run exactly these jobs (a replay) and hold every other."""
    sample: tuple[int | None, float | None] | None = None
    """`--sample`: build the jobs of this many inputs (a count, or a fraction), drawn with `seed`."""
    sample_apart: bool = False
    """The sample builds into a folder of its own (`--out DIR`): its aggregates are built too."""
    second_signal_exit: int = INTERRUPTED_EXIT
    """The code a second SIGINT or SIGTERM exits with at once: 130, or 0 for `watch`, whose
    Ctrl-C is how it is stopped."""

    @property
    def holds_others(self) -> bool:
        """True for a build that runs only the jobs it was asked for (`--only-failed`, a replay, a
        sample into `out`): every other job is held as it is, so such a build prunes nothing. A
        sample into a folder of its own is that folder's whole build: it prunes the outputs of an
        earlier sample there that this one does not hold."""
        sampled_in_place = self.sample is not None and not self.sample_apart
        return self.only_failed or self.only_jobs is not None or sampled_in_place

    def plan_options(self, config: Config) -> PlanOptions:
        """What of these options changes the planner's decisions."""
        sample = None
        if self.sample is not None:
            count, fraction = self.sample
            rules = tuple(rule.name for rule in select_rules(config, self.rules))
            seed = self.seed if self.seed is not None else DEFAULT_SEED
            sample = Sample(count, fraction, seed, rules, hold_aggregates=not self.sample_apart)
        return PlanOptions(self.force, self.use_cache, self.only_failed, self.only_jobs, sample)

    def prunes_as_full_build(self, config: Config) -> bool:
        """True when the build prunes as a plain one: it holds no job back and its rules (those
        named and the rules they read) are all of `config`'s, so `build RULE` naming every rule
        counts; then failures and outputs of rules gone from the config go too."""
        return not self.holds_others and len(select_rules(config, self.rules)) == len(config.rules)


@dataclass
class BuildOutcome:
    """What a build did: the jobs with their decisions, the counts, and where its record is."""

    jobs: list[Job]
    counts: dict[str, int]
    run_id: str | None = None
    manifest: Path | None = None
    failures: list[tuple[Job, JobResult]] = field(default_factory=list)
    seconds: float = 0.0
    key_created: bool = False
    """A signing key was minted during this run (an error with --strict)."""
    record: RunRecord | None = None
    """Where the run's record (manifest, report) went and which key signed it."""
    strict: bool = False
    interrupted: bool = False
    unfinished: int = 0
    """Jobs the build meant to run or restore and did not finish: stopped by an interrupt."""
    quarantined_inputs: int = 0
    """How many (rule, input) pairs stay quarantined: `counts["quarantined"]` counts jobs, and a
    matrix rule runs several jobs on one input."""
    pruned: list[str] = field(default_factory=list)
    """For a plan: the outputs (relative to `out`) the build would prune."""
    conflict: UsageError | None = None
    """An output conflict that stopped the build once a `{key8}` name was known: raised after the
    run was recorded (and alerted)."""

    @property
    def exit_code(self) -> int:
        """130 when interrupted; 2 when stopped by an output conflict; 1 when a job failed or an
        input stays quarantined (with --strict also deferred jobs and a key minted during the run);
        else 0 (SPEC section 4)."""
        counts = self.counts
        if self.interrupted:
            return BuildInterrupted.exit_code
        if self.conflict is not None:
            return self.conflict.exit_code
        if counts.get("failed") or counts.get("quarantined"):
            return 1
        if self.strict_failures:
            return 1
        return 0

    @property
    def strict_failures(self) -> list[str]:
        """What fails the build only because of `--strict`, in words (empty without `--strict`)."""
        if not self.strict:
            return []
        reasons = []
        if self.counts.get("deferred"):
            reasons.append(f"{self.counts['deferred']} job(s) deferred")
        if self.key_created:
            reasons.append("a signing key was created during the run (verifiers cannot know it yet)")
        return reasons
