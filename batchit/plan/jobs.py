"""Expanding rules into jobs: inputs x matrix (or partitions), with steps, output paths and action keys.

A rule's jobs are expanded once the outputs of the rules it reads from are known, so a downstream key
is computed from the bytes its upstream jobs really produced (a rebuilt upstream output with the same
bytes leaves its dependants up to date: early cutoff).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from batchit.config import ConditionError, compile_condition, flags_read
from batchit.errors import ConfigError, RecipeError
from batchit.fsutil import StatTuple, normalise_relative
from batchit.globs import compile_glob
from batchit.hashing import json_text
from batchit.model import Config, Rule
from batchit.operators.base import Operator
from batchit.operators.registry import OperatorRegistry, raised
from batchit.placeholders import (
    PATH_PLACEHOLDERS,
    PLACEHOLDER,
    names_in_value,
    path_values,
    substitute,
)
from batchit.plan.files import FileTree, Hasher
from batchit.plan.filled import FilledParams
from batchit.plan.keys import Recipe, Seen, StepCall, action_key, make_recipe
from batchit.plan.named import NamedFiles, rule_error

UNKNOWN = ""
"""The hash of an upstream output that is not built yet (only seen in dry runs)."""

NOTHING_DISCOVERED: Mapping[str, str] = MappingProxyType({})
"""Shared by every job that discovered no dependencies (most of them): one object, not 100,000."""


@dataclass(slots=True)
class Job:
    """One unit of work: some inputs, one output, a recipe, and what the planner decided about it."""

    job_id: str
    rule: str
    inputs: tuple[str, ...]
    """Project-relative input paths (for an aggregate, all of them in path order)."""
    input_hashes: tuple[str, ...]
    output: str
    """Path relative to `out`."""
    recipe: Recipe
    key: str
    discovered: Mapping[str, str]
    aggregate: bool
    matrix: Mapping[str, Any]
    """The job's matrix values (`{"width": 320}`), told to aggregates that read its output."""
    action: str = "skip"
    """`skip` (up to date), `run`, `restore` (from the cache) or `blocked` (an upstream job failed)."""
    reasons: tuple[str, ...] = ()

    def output_known(self, rule: Rule) -> bool:
        """True when `output` is the path the job will write: its key is known, or its rule's
        output template does not name the file after the key (`{key8}`)."""
        return self.key != UNKNOWN or "{key8}" not in rule.output

    def inputs_json(self) -> str:
        """The canonical `[{"blake3", "path"}]` list the manifest and state store keep."""
        pairs = zip(self.inputs, self.input_hashes, strict=True)  # a hash is hex digits, or UNKNOWN
        return "[" + ",".join(f'{{"blake3":"{h}","path":{json_text(p)}}}' for p, h in pairs) + "]"


class Unit(NamedTuple):
    """What one job consumes before the matrix multiplies it: inputs and their placeholder values."""

    label: str
    inputs: tuple[str, ...]
    hashes: tuple[str, ...]
    values: dict[str, Any]
    size: int


class JobExpander:
    """Turns rules into jobs; shares recipe and library-version work across the jobs of a rule."""

    def __init__(
        self,
        config: Config,
        registry: OperatorRegistry,
        tree: FileTree,
        hasher: Hasher,
        discovered_of: Callable[[str], Mapping[str, str]],
        rediscovered: Callable[[str], Mapping[str, str]],
        output_size: Callable[[str, str], int],
    ) -> None:
        self.config = config
        self.registry = registry
        self.tree = tree
        self.hasher = hasher
        self.discovered_of = discovered_of
        """A job's discovered dependencies, hashed now, by job id, from its output's record."""
        self.rediscovered = rediscovered
        """For a job without them: what a job with the same key without them discovered last."""
        self.output_size = output_size
        """The size of an upstream output (path relative to `out`, blake3), for `input.size`."""
        self.named = NamedFiles(config, tree, hasher)
        self._asked_folders: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        """The operators and module files `key_folders` was asked about (the hasher noted each answer)."""
        self.filled = FilledParams(config)
        self.watched: dict[str, tuple[tuple[str, StatTuple | None], ...]] = {}
        """By recipe hash: the files its key hashed besides the inputs (files steps name, `deps`,
        `validate.checksums`, `expect.schema`) with the stat each had then, so that a job's result
        can be checked against an edit made while it ran."""

    def expand(
        self, rule: Rule, upstream: Mapping[str, list[tuple[str, str]]], only: frozenset[str] | None = None
    ) -> list[Job]:
        """Every job of `rule`, given (output path, blake3) of each upstream rule's jobs; with `only`,
        just the jobs of those walked input paths (a one-input-per-job rule re-planned in part)."""
        units = self._units(rule, upstream, only)
        combos = [dict(zip([k for k, _ in rule.matrix], c, strict=True)) for c in _product(rule)]
        conditions = {i: compile_condition(s.when) for i, s in enumerate(rule.steps) if s.when}
        per_job = any(re.search(r"\binput\b", s.when or "") for s in rule.steps) or any(
            names_in_value(s.params) & PATH_PLACEHOLDERS for s in rule.steps
        )
        recipes: dict[tuple[int, tuple[bool, ...]], Recipe] = {}
        render_output = output_renderer(rule.output)
        aggregate = rule.aggregate is not None
        every_step = (True,) * len(rule.steps)
        combo_ids = [f":{json.dumps(combo, sort_keys=True)}" if combo else "" for combo in combos]
        discovered_of, rediscovered = self.discovered_of, self.rediscovered
        jobs: list[Job] = []
        for unit in units:
            for index, combo in enumerate(combos):
                values = {**unit.values, **combo} if combo else unit.values
                chosen = self._chosen(rule, conditions, combo, unit) if conditions else every_step
                cache_key = (index, chosen)
                recipe = None if per_job else recipes.get(cache_key)
                if recipe is None:
                    recipe = self._recipe(rule, values, chosen, unit.label if per_job else None)
                    if not per_job:
                        recipes[cache_key] = recipe
                job_id = f"{rule.name}:{unit.label}{combo_ids[index]}"
                discovered = discovered_of(job_id)
                key = UNKNOWN
                if UNKNOWN not in unit.hashes:
                    seen = Seen(unit.inputs, rule.output, rule.name, combo) if recipe.path_aware else None
                    key = action_key(recipe, unit.hashes, discovered, seen)
                    if not discovered:  # no record of its own: keyed as the same work ran before
                        discovered = rediscovered(key)
                        if discovered:
                            key = action_key(recipe, unit.hashes, discovered, seen)
                values["key8"] = key[:8] if key else "{key8}"  # shown as such until the key is known
                output = render_output(values)
                jobs.append(
                    Job(
                        job_id,
                        rule.name,
                        unit.inputs,
                        unit.hashes,
                        output,
                        recipe,
                        key,
                        discovered,
                        aggregate,
                        combo,
                    )
                )
        return jobs

    def _chosen(
        self,
        rule: Rule,
        conditions: dict[int, Callable[[Mapping[str, Any]], bool]],
        combo: dict[str, Any],
        unit: Unit,
    ) -> tuple[bool, ...]:
        """Which steps run for this job: those without `when:` and those whose condition holds.

        A condition that fails to evaluate is a config error at its step's line, naming the job.
        """
        scope = {"flags": self.config.flags, **combo, "input": _InputView(unit)}
        chosen = []
        for index, step in enumerate(rule.steps):
            try:
                chosen.append(index not in conditions or conditions[index](scope))
            except ConditionError as exc:
                job = f"{unit.label}{f' {combo}' if combo else ''}"
                message = f"step {index + 1} ({step.operator}): {exc.message} (job {job})"
                raise rule_error(self.config, rule, message, exc.hint or "", step) from None
        return tuple(chosen)

    def _units(
        self, rule: Rule, upstream: Mapping[str, list[tuple[str, str]]], only: frozenset[str] | None
    ) -> Iterable[Unit]:
        found: list[tuple[str, str, str, int]] = []  # path, base, hash, size
        try:
            matches = self.tree.match(
                [compile_glob(g) for g in rule.globs], [compile_glob(g) for g in rule.exclude], only
            )
        except ConfigError as exc:  # a file or a glob no job may read: the rule's line names it
            raise rule_error(self.config, rule, exc.message, exc.hint or "") from None
        stats = self.tree.stats
        hashes = self.hasher.hash_many([(p, stats[p]) for p, _ in matches])
        found.extend((p, base, hashes[p], stats[p][0]) for p, base in matches)
        out = self.config.out
        excludes = [compile_glob(g).regex for g in rule.exclude]
        sized = any(re.search(r"\binput\b", s.when or "") for s in rule.steps)  # else no one asks
        for name in rule.from_rules:
            for path, digest in upstream.get(name, []):
                full = f"{out}/{path}"
                if not any(rx.fullmatch(full) for rx in excludes):
                    found.append((full, out, digest, self.output_size(path, digest) if sized else 0))
        found.sort()
        if rule.aggregate is None:  # one at a time: 100,000 placeholder dicts never exist together
            return (
                Unit(path, (path,), (digest,), path_values(path[len(base) + 1 :] if base else path), size)
                for path, base, digest, size in found
            )
        groups: dict[str, list[tuple[str, str, str, int]]] = {}
        group_values: dict[str, dict[str, Any]] = {}
        for item in found:
            values = self._partition(rule, item[0], item[1])
            if values is None:
                continue
            label = json.dumps(values, sort_keys=True) if values else "*"
            groups.setdefault(label, []).append(item)
            group_values[label] = values
        return [
            Unit(
                label,
                tuple(i[0] for i in items),
                tuple(i[2] for i in items),
                group_values[label],
                sum(i[3] for i in items),
            )
            for label, items in sorted(groups.items())
        ]

    def _partition(self, rule: Rule, path: str, base: str) -> dict[str, Any] | None:
        assert rule.aggregate is not None
        if rule.aggregate.by:
            relative = path[len(base) + 1 :] if base else path
            return {"by": substitute(rule.aggregate.by, path_values(relative)), **_by_names(rule, relative)}
        if rule.aggregate.partition:
            match = re.search(rule.aggregate.partition, path)
            return None if match is None else {k: v or "" for k, v in match.groupdict().items()}
        return {}

    def _recipe(
        self, rule: Rule, values: Mapping[str, Any], chosen: tuple[bool, ...], input_name: str | None
    ) -> Recipe:
        """The recipe of a job with placeholder `values`; `input_name` names its input when the
        recipe is the job's own (its parameters hold per-job placeholders, checked here)."""
        calls: list[StepCall] = []
        libraries: dict[str, dict[str, str]] = {}
        files: dict[str, str] = {}
        paths: list[str] = []
        flags: dict[str, Any] = {}
        path_aware = False
        for number, (step, keep) in enumerate(zip(rule.steps, chosen, strict=True), start=1):
            if step.when:
                flags.update({f: self.config.flags.get(f) for f in flags_read(step.when)})
            if not keep:
                continue
            op_class = self.registry.get(step.operator)
            op = op_class()
            params = op.fill_params(step.params, values)
            if input_name is not None:
                self.filled.check(rule, number, step, op_class, params, input_name)
            section = op.validate_section
            if section and rule.validate and section in rule.validate:
                params = {**rule.validate[section], **params}  # the rule's guard, unless the step says more
            calls.append(StepCall(step.operator, self.registry.targets[step.operator], op.version, params))
            libraries[step.operator] = self.registry.library_versions(step.operator)
            path_aware = (
                path_aware or op.sees_paths(params) or bool(names_in_value(step.params) & PATH_PLACEHOLDERS)
            )
            try:
                named = op.key_files(params, self.config.root)
            except RecipeError as exc:  # every job would fail on it: a mistake in the config
                message = f"step {number} ({step.operator}): {exc.message}"
                raise rule_error(self.config, rule, message, exc.hint or "correct the step", step) from None
            except Exception as exc:  # a fault of the operator's own code
                message = f"step {number} ({step.operator}): {raised('key_files', exc)}"
                raise rule_error(
                    self.config, rule, message, self.registry.repair_hint(step.operator), step
                ) from None
            for label, path in named.items():
                paths.append(self.named.path_of(path))
                files[label] = self.named.hash(rule, paths[-1], f"step {number} ({step.operator})", step)
            if op.imports_user_code:
                self._watch_folders(step.operator, op, params, named)
        if rule.validate and ("checksums" in rule.validate or "extensions" in rule.validate):
            path_aware = True  # these checks read the input's path: twins by content may differ
        if rule.validate and isinstance(rule.validate.get("checksums"), str):
            checksums = rule.validate["checksums"]
            files[f"validate.checksums:{checksums}"] = self.named.hash(rule, checksums, "validate.checksums")
            paths.append(checksums)
        expect = rule.expect
        if expect and isinstance(expect.get("schema"), str):
            files[f"expect.schema:{expect['schema']}"] = self.named.hash(
                rule, expect["schema"], "expect.schema"
            )
            paths.append(expect["schema"])
        deps = self.named.deps(rule)
        recipe = make_recipe(
            calls,
            libraries=libraries,
            deps=deps,
            files=files,
            expect=expect,
            flags=flags,
            path_aware=path_aware,
            validate=rule.validate,
        )
        if recipe.hash not in self.watched:
            looked_up, walked = self.hasher.looked_up, self.tree.stats
            self.watched[recipe.hash] = tuple(
                [(path, looked_up.get(path)) for path in paths] + [(path, walked.get(path)) for path in deps]
            )
        return recipe

    def _watch_folders(
        self, name: str, op: Operator, params: Mapping[str, Any], named: Mapping[str, Path]
    ) -> None:
        """Have the hasher note the folders where `op` finds the modules it named (`key_folders`),
        asked once per set of module files: a step with per-job parameters names the same ones."""
        known = (name, tuple(sorted((label, str(path)) for label, path in named.items())))
        if known not in self._asked_folders:
            self._asked_folders.add(known)
            try:
                folders = op.key_folders(params, self.config.root)
            except Exception as exc:  # a fault of the operator's own code
                raise self.registry.fault_in(name, "key_folders", exc) from None
            for folder in folders:
                self.hasher.watch_folder(folder)


def output_renderer(template: str) -> Callable[[Mapping[str, Any]], str]:
    """A function filling `template` from placeholder values into a normalised path relative to `out`.

    Templates holding only `{name}` placeholders and escapes render with `str.format_map` (which
    treats `{{`/`}}` the same way), several times faster than the general substitution, unless a
    value is a boolean, which `format_map` would spell `True` where YAML writes `true`.
    """
    rest = PLACEHOLDER.sub("", template)
    simple = "{" not in rest and "}" not in rest

    def render(values: Mapping[str, Any]) -> str:
        fast = simple and not any(isinstance(value, bool) for value in values.values())
        text = template.format_map(values) if fast else str(substitute(template, values))
        if "//" in text or text.startswith("/") or text.endswith("/") or "./" in text:
            return normalise_relative(text)
        return text

    return render


def _product(rule: Rule) -> list[tuple[Any, ...]]:
    return list(itertools.product(*[vals for _, vals in rule.matrix]))


def _by_names(rule: Rule, relative: str) -> dict[str, Any]:
    """Path placeholders named in `aggregate.by` are available in the output template too."""
    assert rule.aggregate is not None and rule.aggregate.by is not None
    names = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", rule.aggregate.by))
    return {k: v for k, v in path_values(relative).items() if k in names}


class _InputView:
    """`input` inside a `when:` condition: the job's input path, extension and size."""

    def __init__(self, unit: Unit) -> None:
        self.path = unit.inputs[0] if len(unit.inputs) == 1 else ""
        self.ext = path_values(self.path)["ext"]  # as {ext}: `docs/v1.2/README` and `.hidden` have none
        self.size = unit.size
