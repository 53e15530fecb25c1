"""One rule of `batchit.yaml`, from a schema-checked mapping to a trusted `Rule` (SPEC section 2).

The schema has already checked shapes and types; this module checks what a schema cannot: paths
that would leave the project or `out`, placeholders without a value, outputs that two jobs would
share, references to rules that do not exist, and it applies the defaults.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchit.config.hints import did_you_mean, listing
from batchit.config.paths import escapes, normalise, unusable, unusable_value
from batchit.config.steps import Operators, RuleScope, build_steps, check_ending, check_inputs
from batchit.config.units import parse_size
from batchit.config.validation import SchemaChecks
from batchit.config.yaml12 import Marks, YamlPath, error_at, nearest
from batchit.errors import ConfigError
from batchit.globs import WILDCARDS, compile_glob
from batchit.model import RESERVED_OUTPUTS, STATE_DIR, Aggregate, Resources, Retry, Rule
from batchit.placeholders import PATH_PLACEHOLDERS, PLACEHOLDER, names_in

RESERVED_NAMES = PATH_PLACEHOLDERS | {"key8", "flags", "input", "in", "out"}
"""Names a matrix key or partition group may not take: they already mean something (`in` and
`out` are the paths `shell` fills into its argv, which a matrix value would silently replace).

A partition group named like a matrix key is refused too: one name, one value.
"""


LARGEST_MATRIX = 10_000
"""The most combinations a rule's matrix may make. Each is a job per input and, where a step
parameter uses its keys, a schema check as the config loads: a matrix of 8 keys of 10 values kept
`plan` busy for minutes, growing in memory, without a word."""


@dataclass(frozen=True)
class RuleContext:
    """What building one rule needs to know about the rest of the config."""

    operators: Operators
    checks: SchemaChecks
    rule_names: frozenset[str]
    flags: frozenset[str]
    out: str
    """The normalised output root: no input or `deps` glob may start inside it."""
    root: Path


def build_rule(name: str, raw: Mapping[str, Any], marks: Marks, context: RuleContext) -> Rule:
    """A validated Rule from its schema-checked mapping; `marks` are relative to the rule."""
    return _RuleBuilder(name, marks).build(raw, context)


@dataclass(frozen=True)
class _RuleBuilder:
    """The checks of one rule, each raising a ConfigError at the line of what it checks."""

    name: str
    marks: Marks

    def fail(self, path: YamlPath, message: str, hint: str | None = None) -> ConfigError:
        """An error about this rule at `path` (or the nearest value above it that has a mark)."""
        return error_at(nearest(self.marks, path), message, rule=self.name, hint=hint)

    def build(self, raw: Mapping[str, Any], context: RuleContext) -> Rule:
        """Every part of the rule checked, with defaults applied."""
        globs, upstream = self.inputs(raw["inputs"], context)
        matrix = self.matrix(raw.get("matrix", {}))
        aggregate, groups = self.aggregate(raw.get("aggregate", False), {key for key, _ in matrix})
        per_job = groups if aggregate else frozenset(PATH_PLACEHOLDERS)
        scope = RuleScope(
            self.name, self.marks, matrix, per_job, aggregate is not None, context.flags, context.root
        )
        steps = build_steps(raw["steps"], scope, context.operators, context.checks)
        all_io = all(context.operators.get(step.operator).resources == "io" for step in steps)
        shared = [step.operator for step in steps if context.operators.get(step.operator).coordinator_only]
        resources: Resources = raw.get("resources", "io" if all_io or shared else "cpu")
        if shared and resources != "io":
            raise self.fail(
                ("resources",),
                f"step {shared[0]} must run in batchit's own process (its rate limit is shared by "
                "the whole run), which only `resources: io` rules do",
                "remove `resources: cpu` (a rule with this step is `io` by default)",
            )
        mark = self.marks.get(())
        rule = Rule(
            name=self.name,
            globs=globs,
            from_rules=upstream,
            exclude=self.project_paths(raw.get("exclude", []), "exclude"),
            output=self.output(raw["output"], matrix, aggregate, groups),
            steps=steps,
            matrix=matrix,
            deps=tuple(
                self.outside_state(dep, "deps", context.out, ("deps", index))
                for index, dep in enumerate(self.project_paths(raw.get("deps", []), "deps"))
            ),
            resources=resources,
            concurrency=raw.get("concurrency"),
            aggregate=aggregate,
            expect=self.checks(raw["expect"], "expect", "schema") if "expect" in raw else None,
            retry=self.retry(raw.get("retry", {})),
            validate=self.checks(raw["validate"], "validate", "checksums") if "validate" in raw else None,
            line=mark.line if mark else None,
        )
        check_inputs(steps, scope, context.operators)  # after the output's checks, which tell more
        check_ending(steps, scope, context.operators)
        return rule

    def own(self, path: YamlPath) -> bool:
        """True when the value at `path` is written in the rule itself, not taken from a preset:
        a clash between the two is blamed on the rule's own line, which the user can edit."""
        mark, rule = nearest(self.marks, path), self.marks.get(())
        return mark is not None and rule is not None and mark.file == rule.file and mark.via is None

    def inputs(self, raw: Any, context: RuleContext) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Glob patterns and upstream rule names; `inputs: {rule: NAME}` alone is one upstream."""
        items = raw if isinstance(raw, list) else [raw]
        globs, upstream = [], []
        rule_names = context.rule_names
        for index, item in enumerate(items):
            path: YamlPath = ("inputs", index) if isinstance(raw, list) else ("inputs",)
            if isinstance(item, str):
                if reason := escapes(item):
                    raise self.fail(
                        path,
                        f"input {item!r} escapes the project: {reason}",
                        "write globs relative to the project root",
                    )
                self.usable(item, f"input {item!r}", path)
                self.compilable(item, "input", path)
                globs.append(self.outside_state(normalise(item), "input", context.out, path))
            elif item["rule"] == self.name:
                raise self.fail(
                    (*path, "rule"), "the rule reads its own outputs", "read another rule's outputs, or files"
                )
            elif item["rule"] not in rule_names:
                hint = did_you_mean(item["rule"], rule_names, f"rules: {listing(rule_names)}")
                raise self.fail((*path, "rule"), f"inputs name unknown rule '{item['rule']}'", hint)
            else:
                upstream.append(item["rule"])
        return tuple(globs), tuple(upstream)

    def outside_state(self, glob: str, key: str, out: str, path: YamlPath) -> str:
        """`glob`, unless it starts inside `out` or `.batchit` (SPEC section 2: globs never match
        there): reading outputs through a glob would make builds depend on the order of earlier
        ones, and `.batchit` holds the private signing key."""
        folders = glob.split("/")[:-1]
        literal = "/".join(itertools.takewhile(lambda segment: not WILDCARDS.search(segment), folders))
        for root, hint in (
            (out, "read another rule's outputs with `inputs: {rule: NAME}`, or move `out`"),
            (STATE_DIR, "batchit's state is never an input"),
        ):
            if literal == root or literal.startswith(f"{root}/"):
                raise self.fail(path, f"{key} {glob!r} starts inside {root}/, where globs never match", hint)
        return glob

    def project_paths(self, paths: list[str], key: str) -> tuple[str, ...]:
        """Project-relative paths or globs, normalised; one that could leave the project is an error."""
        for index, path in enumerate(paths):
            if escapes(path):
                raise self.fail(
                    (key, index),
                    f"{key} {path!r} escapes the project",
                    "write it relative to the project root",
                )
            self.usable(path, f"{key} {path!r}", (key, index))
            self.compilable(path, key, (key, index))
        return tuple(normalise(path) for path in paths)

    def usable(self, path: str, what: str, where: YamlPath) -> None:
        """Refuse a path no file system can hold (a NUL character in it, a name too long); `what`
        says which value it is, for the message."""
        problem = unusable(path)
        if problem:
            raise self.fail(where, f"{what} {problem[0]}", problem[1])

    def compilable(self, glob: str, key: str, path: YamlPath) -> None:
        """Refuse a glob the planner could not compile (a character class such as `[z-a]`)."""
        try:
            compile_glob(glob)
        except ValueError as exc:
            hint = "write a class as [a-z] (low to high), [abc] or [!abc]"
            raise self.fail(path, f"{key}: {exc}", hint) from None

    def matrix(self, raw: Mapping[str, list[Any]]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The matrix in file order; a key may not shadow a built-in placeholder or condition variable."""
        for key in raw:
            if key in RESERVED_NAMES:
                raise self.fail(("matrix", key), f"matrix key '{key}' is reserved", "rename it, e.g. 'size'")
        combinations = math.prod(len(values) for values in raw.values())
        if combinations > LARGEST_MATRIX:
            sizes = " x ".join(str(len(values)) for values in raw.values())
            raise self.fail(
                ("matrix",),
                f"the matrix makes {combinations:,} combinations ({sizes}), over {LARGEST_MATRIX:,}: "
                "every input would make that many jobs",
                "use fewer values, or a rule per group of them",
            )
        return tuple((key, tuple(values)) for key, values in raw.items())

    def aggregate(self, raw: Any, matrix_keys: set[str]) -> tuple[Aggregate | None, frozenset[str]]:
        """The aggregate setting and the partition names it makes available as placeholders."""
        if raw is False:
            return None, frozenset()
        if raw is True:
            return Aggregate(), frozenset()
        if "by" in raw:
            names = names_in(raw["by"])
            unknown = [name for name in names if name not in PATH_PLACEHOLDERS]
            if not names or unknown:
                raise self.fail(
                    ("aggregate", "by"),
                    f"aggregate.by {raw['by']!r} must group by path placeholders",
                    "use {path}, {dir}, {name}, {stem} or {ext}, e.g. by: '{dir}'",
                )
            return Aggregate(by=raw["by"]), frozenset(names)
        try:
            groups = frozenset(re.compile(raw["partition"]).groupindex)
        except re.error as exc:
            raise self.fail(
                ("aggregate", "partition"),
                f"aggregate.partition is not a valid regex: {exc}",
                "fix the regex (Python's syntax; quote it in single quotes so YAML keeps its backslashes)",
            ) from None
        if not groups:
            raise self.fail(
                ("aggregate", "partition"),
                "aggregate.partition has no named group",
                "name the parts that make a partition, e.g. (?P<day>\\d{4}-\\d{2}-\\d{2})",
            )
        clash = sorted(groups & (matrix_keys | RESERVED_NAMES))
        if clash:
            raise self.fail(
                ("aggregate", "partition"),
                f"partition group '{clash[0]}' is reserved or a matrix key",
                "rename the group",
            )
        return Aggregate(partition=raw["partition"]), groups

    def output(
        self,
        template: str,
        matrix: tuple[tuple[str, tuple[Any, ...]], ...],
        aggregate: Aggregate | None,
        groups: frozenset[str],
    ) -> str:
        """The output template, normalised; it must stay in `out` and give each job its own path."""
        where: YamlPath = ("output",)
        if reason := escapes(template):
            raise self.fail(
                where, f"output {template!r} escapes out: {reason}", "write a path relative to out"
            )
        if not normalise(template):
            raise self.fail(where, f"output {template!r} names no file", "write a file path relative to out")
        top = normalise(template).split("/")[0]
        if top in RESERVED_OUTPUTS:  # as a file or as a folder, it would take the manifest copy's place
            within = "is" if top == normalise(template) else f"is inside {top}, a name"
            raise self.fail(
                where,
                f"output {template!r} {within} reserved for batchit's manifest copy",
                "choose another output path",
            )
        self.usable(template, f"output {template!r}", where)
        if set("{}") & set(PLACEHOLDER.sub("", template)):
            raise self.fail(
                where,
                f"output {template!r} holds a brace that is not part of a placeholder",
                "a placeholder is a name in braces ({path}, {width}); write {{ and }} for literal braces",
            )
        found = unusable_value(template, matrix)
        if found is not None:
            key, index, value, (problem, fix) = found
            raise self.fail(
                ("matrix", key, index), f"matrix value {value!r} of {{{key}}}, used in output, {problem}", fix
            )
        used = set(names_in(template))
        keys = [key for key, _ in matrix]
        allowed = set(keys) | {"key8"} | (groups if aggregate else PATH_PLACEHOLDERS)
        for name in names_in(template):
            if name not in allowed:
                if aggregate and name in PATH_PLACEHOLDERS:
                    hint = "an aggregate job has no single input; group it with aggregate: {by: '{dir}'}"
                    if not self.own(where) and self.own(("aggregate",)):  # the preset's output meets
                        where = ("aggregate",)  # the rule's own aggregate: that is the user's to fix
                        hint = f"give the rule an output of its own without {{{name}}} (the preset's has it)"
                else:
                    hint = did_you_mean(name, allowed, "write {{ for a literal {", braces=True)
                raise self.fail(where, f"unknown placeholder {{{name}}} in output", hint)
        needed = [(key, "matrix key", "two jobs") for key in keys]
        needed += [(group, "partition name", "two partitions") for group in sorted(groups)]
        for name, kind, writers in needed:
            if name not in used:
                hint = f"add {{{name}}} to output"
                if kind == "matrix key" and not self.own(where) and self.own(("matrix", name)):
                    hint = f"give the rule an output of its own with {{{name}}} in it (the preset's has none)"
                    where = ("matrix", name)
                raise self.fail(
                    where, f"output does not use {kind} {{{name}}}: {writers} would write one output", hint
                )
        if aggregate is None and not used & (PATH_PLACEHOLDERS | {"key8"}):
            raise self.fail(
                where,
                "output uses no input placeholder: every input would write one output",
                "add {path} to output (e.g. 'img/{path}.webp'), or make the rule an aggregate",
            )
        return normalise(template)

    @staticmethod
    def retry(raw: Mapping[str, Any]) -> Retry:
        """The retry policy; delays are floats whichever way they were written."""
        defaults = Retry()
        return Retry(
            attempts=raw.get("attempts", defaults.attempts),
            backoff=float(raw.get("backoff", defaults.backoff)),
            max_backoff=float(raw.get("max_backoff", defaults.max_backoff)),
        )

    def checks(self, raw: Mapping[str, Any], key: str, path_key: str) -> dict[str, Any]:
        """`validate:` or `expect:` with sizes in bytes, its file inside the project, text as lists."""
        checked = dict(raw)
        for size in ("max_size", "min_size"):
            if size in checked:
                checked[size] = parse_size(checked[size])
        if checked.get("min_size", 0) > checked.get("max_size", float("inf")):
            raise self.fail(
                (key, "min_size"),
                f"{key}.min_size ({raw['min_size']}) is over {key}.max_size ({raw['max_size']}): "
                "no file can pass both",
                "swap them, or correct one",
            )
        if isinstance(checked.get(path_key), str):
            if escapes(checked[path_key]):
                raise self.fail(
                    (key, path_key),
                    f"{key}.{path_key} escapes the project",
                    "write it relative to the project root",
                )
            self.usable(checked[path_key], f"{key}.{path_key} {checked[path_key]!r}", (key, path_key))
        for text in ("contains", "not_contains"):
            if isinstance(checked.get(text), str):
                checked[text] = [checked[text]]
        return checked
