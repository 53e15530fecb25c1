"""A doit invocation's view of a batchit project: its sub-tasks, their checks and actions.

Every action plans its job again from the state store: doit may run it in another process
(`-P process`), long after the tasks were created, and batchit's state is the only truth. The checks
start from one plan of the whole project: a job it found up to date stays so (another sub-task
writes only its own output and rows); a stale one is planned again, alone (an aggregate with its
rule), once a sub-task has committed, as the upstream job it waited for may have written the same
bytes again. So a doit run costs time in proportion to its jobs, and one edit costs about one job.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from batchit.config import load_config
from batchit.doit.closing import RECORD, job_label, record, record_at_exit, record_is_current, warn
from batchit.doit.names import task_names as sub_task_names
from batchit.engine import run_planned_job
from batchit.errors import BatchitError, UsageError
from batchit.model import Config
from batchit.operators.registry import OperatorRegistry
from batchit.plan.jobs import UNKNOWN, Job
from batchit.plan.planner import Planner, PlanOptions
from batchit.plan.selection import select_rules
from batchit.record.manifest import new_run_id
from batchit.record.recorder import check_recordable
from batchit.record.runs import (
    audit_unaudited_run,
    mark_in_progress,
    mark_unfinished,
)
from batchit.state.lock import doit_store_locks, doit_sub_task_locks
from batchit.state.opening import REFUSALS, as_failure
from batchit.state.store import StateStore

TaskDict = dict[str, Any]

STORE_POLL_SECONDS = 0.02
"""How often a sub-task whose state store is not ready looks again while another sub-task holds the
doit lock (`doit_store_locks`): that one readies the store in milliseconds, then may run a long job."""


@dataclass(repr=False)
class Session:
    """One doit invocation's view of a batchit project: its config, and the run id its jobs commit as."""

    config: Config
    registry: OperatorRegistry
    basename: str
    place: str
    """The project folder as the dodo.py names it (relative to where doit runs, or absolute): the
    sub-tasks' targets are spelled from it, as the user's own tasks spell their `file_dep`."""
    run_id: str
    """Minted when doit loads the tasks: the sub-tasks commit their rows and keep their logs under it;
    `_record` records the run under it too, unless another run was recorded meanwhile."""
    started: datetime
    seed: int = field(default_factory=lambda: secrets.randbits(32))
    """Seeds the retry jitter of every sub-task, as `build --seed` does; kept in the run's replay
    record, so `batchit replay` waits as this run did."""
    pid: int = field(default_factory=os.getpid)
    """doit's own process, which outlives every sub-task (`-P process` forks it)."""
    _unnamed: dict[str, str] = field(default_factory=dict, repr=False)
    """Output path (under `out`, with `{key8}` unknown when doit loaded the tasks) -> the id of the
    job writing it: a sub-task reading it looks up the name that job recorded when it ran."""
    _predicted: tuple[int, dict[str, str], frozenset[str]] | None = field(default=None, repr=False)
    """(store generation, job id -> action, outputs) of the last plan the checks made."""
    _connections: dict[tuple[int, int, bool], StateStore] = field(default_factory=dict, repr=False)
    """By (pid, thread, writable): the connections the checks (read-only) and the actions of one
    thread share. A connection reads the schema again before its first query, which costs more than
    a check."""
    _checked: tuple[int, int, str, Planner, Job] | None = field(default=None, repr=False)
    """(pid, store generation, job id, planner, job) of the job the last check planned alone: its
    action, which doit runs right after the check, reuses that plan while nothing was committed."""
    _recordable: int | None = field(default=None, repr=False)
    """The pid of the process whose first job checked that the run can be recorded (its signing
    key reads)."""
    _runs_seen: tuple[int, frozenset[str]] | None = field(default=None, repr=False)
    """(pid, the names in `runs/`) when this process last looked for a killed build's missing
    audit entry (`_audit_a_killed_build`)."""

    def __repr__(self) -> str:
        """Short, as `doit info site:_record` shows it in the check it names: not the whole config."""
        return f"Session({self.basename!r}, {self.place!r}, run {self.run_id})"

    @classmethod
    def open(cls, root: Path, config_file: str, basename: str, place: str) -> Session:
        """Load the project's config (a config error stops doit with batchit's message)."""
        registry = OperatorRegistry.default()
        config = load_config(root, config_file, {}, registry)
        started = datetime.now(UTC)
        return cls(config, registry, basename, place, new_run_id(started), started)

    @property
    def state_db(self) -> Path:
        """`.batchit/state.db`."""
        return self.config.state_dir / "state.db"

    def tasks(self) -> Iterator[TaskDict]:
        """A sub-task per job of the current plan, then `_record` depending on all of them; and, at
        doit's exit, the record of a run whose jobs ran but whose `_record` doit skipped."""
        atexit.register(record_at_exit, self)
        store = StateStore.open_readonly(self.state_db)
        try:
            _, jobs = self.plan(store)
            if store is not None:  # the checks start from this plan (a project never built has none)
                self._predicted = (store.generation(), *_actions_and_outputs(jobs))
        finally:
            if store is not None:
                store.close()
        out = self.config.out
        task_names = sub_task_names(jobs)
        shared = {job.output for job in jobs if task_names[id(job)] != job.output}
        names = {f"{out}/{job.output}": job.output for job in jobs if job.output not in shared}
        # a `{key8}` still in an output path is a name not known yet; one that several jobs share
        # (their keys, which tell them apart, are not known either) names none of them
        unknown = [job for job in jobs if "{key8}" in job.output and job.output not in shared]
        self._unnamed = {f"{out}/{job.output}": job.job_id for job in unknown}
        by_rule: dict[str, list[str]] = {}
        for job in jobs:
            by_rule.setdefault(job.rule, []).append(f"{self.basename}:{task_names[id(job)]}")
        for job in jobs:
            upstream = self.config.rules[job.rule].from_rules
            if job.aggregate or any(
                path not in names for path in job.inputs if path.startswith(f"{self.config.out}/")
            ):
                depends = [name for rule in upstream for name in by_rule.get(rule, [])]
            else:
                depends = [f"{self.basename}:{names[path]}" for path in job.inputs if path in names]
            known = job.output not in shared and (
                job.key != UNKNOWN or "{key8}" not in self.config.rules[job.rule].output
            )
            yield {
                "basename": self.basename,
                "name": task_names[id(job)],
                "doc": f"{job.rule}: {job_label(job)}",
                "actions": [
                    (self.run, (f"{self.basename}:{task_names[id(job)]}", job.job_id, job.rule, job.inputs))
                ],
                "targets": [self._target(job.output)] if known else [],
                "task_dep": depends,
                "uptodate": [UpToDate(self, job.job_id, job.rule, job.inputs)],
            }
        yield {
            "basename": self.basename,
            "name": RECORD,
            "doc": "write the run's signed manifest and report when a job ran or the last one is stale",
            "actions": [(record, (self,))],
            "task_dep": [name for names_of_rule in by_rule.values() for name in names_of_rule],
            "uptodate": [(record_is_current, (self,))],
        }

    def _target(self, output: str) -> str:
        """A job's output as its sub-task's target: under the project folder as the dodo.py names
        it (`site/_build/cdn.json`), since doit matches a task's `file_dep` to the task whose
        target it is by the string alone, and runs `doit site/_build/cdn.json` by it."""
        return os.path.normpath(Path(self.place) / self.config.out / output)

    def plan(self, store: StateStore | None, rule: str | None = None) -> tuple[Planner, list[Job]]:
        """Plan every rule, or `rule` and the rules it reads, as `batchit plan` does."""
        planner = Planner.open(self.config, self.registry, store, PlanOptions())
        return planner, planner.predict(select_rules(self.config, [rule] if rule else []))

    def _plan_job(
        self, store: StateStore, job_id: str, rule: str, inputs: tuple[str, ...]
    ) -> tuple[Planner, Job | None, list[Job]]:
        """Plan one job as `batchit plan` would: (the planner, the job or None when it is gone, the
        jobs planned). A one-input job is planned alone; an aggregate with its rule and upstream."""
        if self.config.rules[rule].aggregate is None:
            for unnamed in set(inputs) & self._unnamed.keys():  # its upstream job has run since
                path = self._name_written(store, self._unnamed[unnamed])
                if path is not None:
                    job_id = job_id.replace(unnamed, path)
                    inputs = tuple(path if i == unnamed else i for i in inputs)
            planner = Planner.open(self.config, self.registry, store, PlanOptions(), rows_on_demand=True)
            job = planner.plan_one(self.config.rules[rule], job_id, inputs)
            return planner, job, [job] if job else []
        planner, jobs = self.plan(store, rule)
        return planner, next((j for j in jobs if j.job_id == job_id), None), jobs

    def _name_written(self, store: StateStore, job_id: str) -> str | None:
        """The output path (under `out`) job `job_id` recorded, for a `{key8}` name unknown when
        doit loaded the tasks: the one written in this doit run when it also still has an older one
        (`_record` prunes that)."""
        named = store.outputs_of_jobs([job_id])
        if len(named) > 1:
            named = {path for path in named if (row := store.output(path)) and row.run_id == self.run_id}
        return f"{self.config.out}/{named.pop()}" if len(named) == 1 else None

    def is_up_to_date(self, job_id: str, rule: str, inputs: tuple[str, ...]) -> bool:
        """True exactly when `batchit plan` would say `skip` for the job now.

        It only reads, as `doit list --status` and `doit info` call it too: a project never built,
        or one whose `out` changed, is stale here and readied by the first action (`_ready_store`).
        """
        if not self._store_ready():
            return False
        predicted = self._predicted or self.predict()
        if predicted[1].get(job_id) == "skip":
            return True  # a sub-task writes only its own output and rows: none makes this one stale
        store = self.read_only()
        generation = store.generation()
        if generation == predicted[0]:
            return False
        planner, job, _ = self._plan_job(store, job_id, rule, inputs)  # an upstream job ran: same bytes?
        if job is not None and not job.aggregate:
            self._checked = (os.getpid(), generation, job_id, planner, job)
        return job is not None and job.action == "skip"

    def _store_ready(self) -> bool:
        """True when the state store exists and its rows belong to the current `out`."""
        return self.state_db.exists() and self.read_only().owns(self.config.out)

    def _ready_store(self) -> None:
        """Create the state store of a project never built, or forget the rows of an `out` changed
        since, before a sub-task plans its job: alone (`doit_store_locks`), so parallel sub-tasks
        never race to create it and none commits a row in the new `out` before the old rows go."""
        moved = None
        while not self._store_ready():
            with doit_store_locks(self.config.state_dir) as held:
                if held and not self._store_ready():
                    store = StateStore.open(self.state_db)
                    try:
                        store.adopt_config(self.config.file)  # the tasks refused another config's state
                        moved = store.adopt_out(self.config.out)  # `out` changed: old rows forgotten
                    finally:
                        store.close()
            if not held:  # another sub-task holds the doit lock: it may have readied the store
                time.sleep(STORE_POLL_SECONDS)
        if moved is not None:
            old = moved[0]
            warn(f"`out` changed from {old} to {self.config.out}: the outputs under {old} are left there")

    def read_only(self) -> StateStore:
        """The read-only connection this process's checks share."""
        return self._connection(writable=False)

    def _connection(self, *, writable: bool) -> StateStore:
        """A connection to the state store that this thread opens once and keeps (a forked doit
        worker, or a thread of `doit -P thread`, opens its own: a SQLite connection must not cross a
        fork, and Python's sqlite3 refuses one from another thread)."""
        slot = (os.getpid(), threading.get_ident(), writable)
        store = self._connections.get(slot)
        if store is None:
            if writable:
                store = StateStore.open(self.state_db, fsync=self.config.durability == "fsync")
            else:
                store = StateStore.open_readonly(self.state_db)
                assert store is not None, "read only once the state store exists (`_store_ready`)"
            self._connections[slot] = store
        return store

    def predict(self) -> tuple[int, dict[str, str], frozenset[str]]:
        """The current plan's actions and outputs, planned again only when the state store moved on.

        doit asks every sub-task in turn; between two commits the answer cannot change, so one plan
        serves them all.
        """
        store = self.read_only()
        generation = store.generation()
        if self._predicted is None or self._predicted[0] != generation:
            _, jobs = self.plan(store)
            self._predicted = (generation, *_actions_and_outputs(jobs))
        return self._predicted

    def run(self, task: str, job_id: str, rule: str, inputs: tuple[str, ...]) -> TaskFailed | None:
        """The sub-task's action: plan the job again, run it here and commit it, under the shared
        locks and the job's own: a doit run going on beside this one that ran the job meanwhile
        leaves it up to date, and this plan finds it so."""
        try:
            self._ready_store()
            with doit_sub_task_locks(self.config.state_dir, job_id):
                return self._run(self._connection(writable=True), task, job_id, rule, inputs)
        except REFUSALS as exc:  # a full disk too: one line naming the file, no traceback
            return TaskFailed(f"batchit: {as_failure(exc)}")

    def _run(
        self, store: StateStore, task: str, job_id: str, rule: str, inputs: tuple[str, ...]
    ) -> TaskFailed | None:
        checked, self._checked = self._checked, None
        job: Job | None
        if checked is not None and checked[:3] == (os.getpid(), store.generation(), job_id):
            planner, job, jobs = checked[3], checked[4], [checked[4]]  # planned by this very check
            planner.view.store = store  # it reads any further rows through the action's connection
        else:
            planner, job, jobs = self._plan_job(store, job_id, rule, inputs)
        if job is None or job.key == UNKNOWN:  # `doit -s`: the sub-tasks it depends on did not run
            waiting = self._not_up_to_date(job, inputs)
            if waiting:
                return TaskFailed(f"batchit: {_upstream_not_run(task, rule, waiting)}")
        if job is None:
            return TaskFailed(f"batchit: job {job_id} no longer exists (its input is gone); run doit again")
        if job.output in planner.strangers:
            return TaskFailed(
                f"batchit: {self.config.out}/{job.output} holds a file batchit did not write; "
                "move it away, or run `batchit build --overwrite` once"
            )
        if job.action == "skip":
            return None
        if job.action not in ("run", "restore"):
            return TaskFailed(f"batchit: {job.job_id} is {job.action}: {'; '.join(job.reasons)}")
        by_rule: dict[str, list[Job]] = {}
        for planned in jobs:
            by_rule.setdefault(planned.rule, []).append(planned)
        if self._recordable != os.getpid():  # this process's first job
            check_recordable(self.config)  # as a build does before any work: not once every job ran
            self._recordable = os.getpid()
        self._audit_a_killed_build(store)
        mark_in_progress(self.config.state_dir / "runs" / self.run_id, self.pid)  # its logs go there
        mark_unfinished(self.config.state_dir)  # until `_record`: a kill before it leaves litter to sweep
        result = run_planned_job(
            self.config, self.registry, store, planner, job, self.run_id, self.seed, by_rule, warn
        )
        if not result.ok:  # doit has no deferred outcome: a deferred job fails its sub-task, unrecorded
            deferred = " (deferred: the next run tries it again)" if result.deferred else ""
            return TaskFailed(
                f"batchit: {job.rule}: {self.config.out}/{job.output}: {result.error_class}: "
                f"{result.message}{deferred}"
            )
        return None

    def _audit_a_killed_build(self, store: StateStore) -> None:
        """Make the audit entry a killed build left out, before a job that may append one of its own
        (a quarantine), after which that run could no longer be told from an audited one.

        Before each job, not once per process: a build (a `batchit watch` waiting for the lock,
        say) can run and be killed between two sub-tasks of a long doit run. Such a build leaves a
        run folder in `runs/` that was not there before, so while the names there are those seen
        at the last look (and this run's own), there is nothing to look for: a job pays one
        listing, not the reading of the latest run's record. No build runs while this sub-task
        holds the project lock (shared), nor another doit run's record (`DOIT_LOCK`)."""
        runs = self.config.state_dir / "runs"
        names = frozenset(path.name for path in runs.iterdir()) if runs.is_dir() else frozenset()
        seen = self._runs_seen
        if seen is not None and seen[0] == os.getpid() and names <= seen[1]:
            return
        audit_unaudited_run(self.config.state_dir, store, fsync=self.config.durability == "fsync")
        self._runs_seen = (os.getpid(), names | {self.run_id})

    def _not_up_to_date(self, job: Job | None, inputs: tuple[str, ...]) -> list[str]:
        """The upstream outputs a job reads that no sub-task has brought up to date: those whose
        hash the plan does not know (their job is stale), or, for a job the plan did not find,
        those missing under `out` (never built, or named by a `{key8}` not known yet)."""
        if job is not None:
            return [
                path for path, digest in zip(job.inputs, job.input_hashes, strict=True) if digest == UNKNOWN
            ]
        out = f"{self.config.out}/"
        return [path for path in inputs if path.startswith(out) and not (self.config.root / path).is_file()]


def _upstream_not_run(task: str, rule: str, paths: list[str]) -> UsageError:
    """`doit -s TASK` of a job whose upstream sub-tasks have not run: it would read missing or stale
    outputs (an aggregate's key is not known until they run), so it runs nothing, saying what does."""
    shown = ", ".join(paths[:3]) + (f" ({len(paths)} in all)" if len(paths) > 3 else "")
    return UsageError(
        f"{task} ({rule}) reads upstream outputs not up to date yet: {shown}",
        hint=f"run `doit {task}` without -s, which runs the sub-tasks it depends on first, or batchit build",
    )


@dataclass(frozen=True)
class UpToDate:
    """A job sub-task's `uptodate` check: asks batchit's state store, never doit's database."""

    session: Session
    job_id: str
    rule: str
    inputs: tuple[str, ...]

    def __repr__(self) -> str:
        """What `doit info` names when the check says stale: the job, and where to read why."""
        return f"batchit job {self.job_id} (`batchit -C {self.session.place} plan` says why)"

    def __call__(self) -> bool:
        """True when the job is up to date; an error in batchit's state counts as stale."""
        try:
            return self.session.is_up_to_date(self.job_id, self.rule, self.inputs)
        except BatchitError:
            return False


def _actions_and_outputs(jobs: list[Job]) -> tuple[dict[str, str], frozenset[str]]:
    """What the checks need of a plan: each job's action by job id, and the outputs."""
    return {job.job_id: job.action for job in jobs}, frozenset(job.output for job in jobs)
