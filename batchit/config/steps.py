"""A rule's steps: operator names, `when:` conditions, placeholders and parameters (SPEC sections 2, 11).

Parameters are checked against the operator's schema the way jobs will see them: once per matrix
combination, with matrix values substituted by type (`width: "{width}"` is the integer 320) and
placeholders known only per job (an input's path, an aggregate's partition) replaced by a sample.
A Step keeps its parameters as written; the planner substitutes them per job.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchit.config.conditions import ConditionError, check_condition
from batchit.config.hints import did_you_mean, listing
from batchit.config.paths import escapes, unusable, unusable_value
from batchit.config.validation import SchemaChecks
from batchit.config.yaml12 import Mark, Marks, YamlPath, error_at, nearest
from batchit.errors import ConfigError
from batchit.model import Step
from batchit.operators.base import InputKind, Operator
from batchit.operators.registry import BrokenOperator, OperatorRegistry, raised
from batchit.placeholders import PATH_PLACEHOLDERS, names_in, names_in_value, text

if TYPE_CHECKING:
    from jsonschema import ValidationError

SAMPLE = "sample"
"""Stands in for a placeholder whose value is known only per job, while parameters are checked."""

VALUE_KEYWORDS = frozenset({"enum", "const", "pattern", "format", "minLength", "maxLength"})
"""Schema keywords that judge a string's content, which a sample cannot stand in for."""


@dataclass(frozen=True)
class Operators:
    """The registry's operator classes, each import problem turned into a config error."""

    registry: OperatorRegistry

    def get(self, name: str) -> type[Operator]:
        """The operator class; a name the registry cannot import is a config error naming it."""
        try:
            return self.registry.get(name)
        except BrokenOperator as exc:
            raise self.broken(name, str(exc)) from None

    def check_schema(self, name: str, checks: SchemaChecks) -> None:
        """An operator whose parameter schema is no valid JSON Schema is a config error naming it
        (else jsonschema's traceback as the first step's parameters are checked)."""
        problem = checks.schema_problem(self.get(name).params_schema)
        if problem is not None:
            target = self.registry.targets[name]
            reason = f"{target} has a params_schema that is not a valid JSON Schema: {problem}"
            raise self.broken(name, reason)

    def broken(self, name: str, reason: str) -> ConfigError:
        """The error for operator `name` that cannot be used, naming the plugin that installs it."""
        return ConfigError(
            f"operator '{name}' cannot be loaded: {reason}", hint=self.registry.repair_hint(name)
        )

    def resolve(self, name: str) -> tuple[str, type[Operator]]:
        """The operator's import target and class; an unknown name is a config error too."""
        if name not in self.registry:
            raise ConfigError(f"unknown operator '{name}'")
        return self.registry.targets[name], self.get(name)


@dataclass(frozen=True)
class RuleScope:
    """What a rule's steps may refer to."""

    rule: str
    marks: Marks
    """The rule's marks, relative to the rule."""
    matrix: tuple[tuple[str, tuple[Any, ...]], ...]
    per_job: frozenset[str]
    """Placeholders with a value only per job: path placeholders, or an aggregate's partition names."""
    aggregate: bool
    flags: frozenset[str]
    root: Path
    """The project root, where operators look for the project's own modules."""


def build_steps(
    raw_steps: Sequence[Mapping[str, Any]], scope: RuleScope, operators: Operators, checks: SchemaChecks
) -> tuple[Step, ...]:
    """The rule's steps, each checked: operator, condition, placeholders, file parameters, parameters."""
    steps = []
    for index, item in enumerate(raw_steps):
        ((name, raw_params),) = item.items()
        where: YamlPath = ("steps", index, name)
        if name not in operators.registry:
            names = operators.registry.names()
            hint = did_you_mean(name, names, f"known operators: {listing(names)}")
            raise _fail(scope, where, f"step {index + 1}: unknown operator '{name}'", hint)
        try:
            operator = operators.get(name)
            operators.check_schema(name, checks)
        except ConfigError as exc:
            raise _fail(scope, where, f"step {index + 1}: {exc.message}", exc.hint) from None
        params = dict(raw_params or {})
        when = params.pop("when", None)
        if when is not None:
            _check_when(when, scope, (*where, "when"))
        _check_placeholders(params, operator, scope, where)
        _check_file_params(params, operator, scope, where)
        _check_params(params, operator, checks, scope, where, operators.registry)
        mark = _step_mark(scope, where, operator)
        steps.append(Step(name, params, when, mark.line if mark else None, mark.file if mark else None))
    return tuple(steps)


def _step_mark(scope: RuleScope, where: YamlPath, operator: type[Operator]) -> Mark | None:
    """Where the plan's errors about the step's files point: the step, or the line of the rule
    that named a file parameter's value (in `with:`) when the step itself is written in a preset."""
    mark = scope.marks.get(where[:2])
    own = scope.marks.get(())
    if mark is None or own is None or (mark.file == own.file and mark.via is None):
        return mark
    given = [scope.marks.get((*where, param)) for param in operator.file_params]
    return next((found for found in given if found is not None and found.file == own.file), mark)


def _fail(scope: RuleScope, path: YamlPath, message: str, hint: str | None) -> ConfigError:
    return error_at(nearest(scope.marks, path), message, rule=scope.rule, hint=hint)


def _step_label(where: YamlPath) -> str:
    return f"step {int(where[1]) + 1} ({where[2]})"


def _check_when(when: Any, scope: RuleScope, where: YamlPath) -> None:
    """A condition must be a string that compiles and reads only known flags and variables."""
    if not isinstance(when, str):
        raise _fail(
            scope, where, f"{_step_label(where[:3])}: 'when' must be a string", "quote the expression"
        )
    try:
        check_condition(when, [key for key, _ in scope.matrix], scope.flags)
    except ConditionError as exc:
        raise _fail(scope, where, f"{_step_label(where[:3])}: {exc.message}", exc.hint) from None


def check_inputs(steps: Sequence[Step], scope: RuleScope, operators: Operators) -> None:
    """Each step that may get the job's input as it is (the first, and those after steps a `when:`
    may skip) must take it: one input file, or an aggregate's list of them (`Operator.takes`).
    Else every job of the rule would fail on the same mistake as it runs."""
    kind: InputKind = "files" if scope.aggregate else "file"
    for index, step in enumerate(steps):
        operator = operators.get(step.operator)
        if kind not in operator.takes:
            raise _cannot_take(operator, kind, scope, ("steps", index, step.operator), operators)
        if step.when is None:  # this step runs, and what it makes is the next step's value
            return


def check_ending(steps: Sequence[Step], scope: RuleScope, operators: Operators) -> None:
    """The last step to run must make a value that can be written (bytes or text): the last step
    without `when:`, and each step after it, which a `when:` may let run last. An operator whose
    value never is (`Operator.ends_with`: image.resize's picture) would fail every job as it ends,
    and quarantine every input, although the rule is at fault."""
    for index in range(len(steps) - 1, -1, -1):
        step = steps[index]
        operator = operators.get(step.operator)
        if operator.ends_with is not None:
            later = " when the `when:` of the steps after it skips them" if index < len(steps) - 1 else ""
            message = f"{_step_label(('steps', index, step.operator))} ends the steps{later}, but what it "
            fix = f"end the steps with {operator.ends_with}" + (
                ", or remove the `when:` after it" if later else ""
            )
            raise _fail(
                scope, ("steps", index), message + "makes cannot be written (only bytes or text can)", fix
            )
        if step.when is None:
            return


def _cannot_take(
    operator: type[Operator], kind: InputKind, scope: RuleScope, where: YamlPath, operators: Operators
) -> ConfigError:
    """The error for a step that gets the job's input as it is (`kind`) but cannot take it."""
    skipped = " when the `when:` of the steps before it skips them" if int(where[1]) else ""
    given = "the list of its input files (an aggregate)" if kind == "files" else "its input file"
    names = [name for name in operators.registry.names() if kind in _taken(operators, name)]
    able = listing(names)
    if not operator.takes:
        message = f"{_step_label(where)} needs a value an earlier step makes, but gets {given}{skipped}"
        family = [name for name in names if name.partition(".")[0] == operator.name.partition(".")[0]]
        hint = (
            f"put {family[0]} before it" if family else f"put a step that reads the input before it: {able}"
        )
    elif kind == "files":
        message = f"{_step_label(where)} takes one input file, but gets {given}{skipped}"
        hint = f"start with a step that takes the list: {able}; or remove `aggregate:` for one job per input"
    else:
        message = f"{_step_label(where)} takes an aggregate's input files, but gets {given}{skipped}"
        hint = (
            f"make the rule an aggregate (aggregate: true), or start with a step that takes one file: {able}"
        )
    if skipped:
        hint += ", or remove the `when:` before it"
    own = scope.marks.get(())
    step, setting = nearest(scope.marks, where[:2]), scope.marks.get(("aggregate",))
    if own and step and setting and (step.file, step.via) != (own.file, None) == (setting.file, setting.via):
        where = ("aggregate",)  # the preset's steps meet the rule's own aggregate: the user's to fix
        hint = f"write the rule's own `steps:` instead of the preset's; {hint}"
    return _fail(scope, where[:2], message, hint)


def _taken(operators: Operators, name: str) -> frozenset[InputKind]:
    """What operator `name` takes as a job's input; nothing when it cannot be loaded."""
    try:
        return operators.get(name).takes
    except ConfigError:
        return frozenset()


def _check_placeholders(
    params: Mapping[str, Any], operator: type[Operator], scope: RuleScope, where: YamlPath
) -> None:
    """Every placeholder in the parameters must have a value when the job runs."""
    allowed = {key for key, _ in scope.matrix} | scope.per_job
    for param, value in params.items():
        if param in operator.record_params:
            continue  # a name that is no placeholder here is a field of the record, filled at run time
        for name in sorted(names_in_value(value) - operator.runtime_placeholders - allowed):
            if name == "key8":
                hint = "{key8} names an output after its job's key: it is available only in output"
            elif name in PATH_PLACEHOLDERS and scope.aggregate:
                hint = "an aggregate job has no single input; use its partition names (aggregate: {by: ...})"
            else:
                known = allowed | operator.runtime_placeholders
                listed = listing(f"{{{known_name}}}" for known_name in known)
                hint = did_you_mean(name, known, f"placeholders here: {listed}", braces=True)
            message = f"{_step_label(where)}: unknown placeholder {{{name}}}"
            raise _fail(scope, (*where, param), message, hint)


def _check_file_params(
    params: Mapping[str, Any], operator: type[Operator], scope: RuleScope, where: YamlPath
) -> None:
    """Parameters that name project files must stay inside the project, and be paths a file system
    can hold with every matrix value they use."""
    for param in operator.file_params:
        value = params.get(param)
        if not isinstance(value, str):
            continue
        if reason := escapes(value):
            raise _fail(
                scope,
                (*where, param),
                f"{_step_label(where)} parameter '{param}' escapes the project: {value!r} ({reason})",
                "write a path relative to the project root, without '..'",
            )
        path, problem = value, unusable(value)
        found = unusable_value(value, scope.matrix) if problem is None else None
        if found is not None:
            path, problem = text(found[2]), found[3]
        if problem:
            message = f"{_step_label(where)} parameter '{param}' {problem[0]}: {path!r}"
            raise _fail(scope, (*where, param), message, problem[1])


def _check_params(
    params: Mapping[str, Any],
    operator: type[Operator],
    checks: SchemaChecks,
    scope: RuleScope,
    where: YamlPath,
    registry: OperatorRegistry,
) -> None:
    """Validate the parameters once per combination of the matrix values they use: against the
    schema, then by the operator itself (`Operator.param_problem`; `registry` names its package
    when that method raises)."""
    if checks.vouched:
        return
    used = names_in_value(params)
    matrix = [(key, values) for key, values in scope.matrix if key in used]
    samples = dict.fromkeys(scope.per_job, SAMPLE)

    def sampled(error: ValidationError) -> bool:  # a choice among alternatives judges the value too
        judged = error.validator in VALUE_KEYWORDS or error.validator in ("anyOf", "oneOf")
        return judged and _uses_per_job(params, error.absolute_path, scope.per_job)

    keys = [key for key, _ in matrix]
    sole = {f"{{{key}}}": key for key in keys}
    # a parameter that is one matrix value, and so a wrong value is blamed where it was written
    alone = {
        param: sole[value] for param, value in params.items() if isinstance(value, str) and value in sole
    }
    for combination in itertools.product(*(range(len(values)) for _, values in matrix)):
        chosen = {key: values[index] for (key, values), index in zip(matrix, combination, strict=True)}
        at = dict(zip(keys, combination, strict=True))
        blamed = {
            (*where, param): mark
            for param, key in alone.items()
            if (mark := scope.marks.get(("matrix", key, at[key]))) is not None
        }
        marks = {**scope.marks, **blamed} if blamed else scope.marks
        concrete = operator.fill_params(params, {**samples, **chosen})
        try:
            checks.check(concrete, operator.params_schema, marks, prefix=where, rule=scope.rule, skip=sampled)
        except ConfigError as exc:
            mistyped = [key for path, key in _sole_matrix_values(params, sole) if _is_number(concrete, path)]
            if mistyped and "must be a string" in exc.message:  # `replacement: "{n}"`, n: [1, 2]
                key = mistyped[0]
                exc.hint = f"quote {{{key}}}'s values in matrix: ('{chosen[key]}'), which makes them strings"
            raise
        try:
            problem = operator.param_problem(concrete, scope.root)
        except Exception as exc:  # a fault of the operator's own code, not of the config
            raise error_at(
                nearest(marks, where),
                f"{_step_label(where)}: {raised('param_problem', exc)}",
                rule=scope.rule,
                hint=registry.repair_hint(str(where[2])),
            ) from None
        if problem is not None and not _uses_per_job(params, problem.path, scope.per_job):
            message = f"{_step_label(where)} parameter '{problem.path[0]}' {problem.message}"
            raise error_at(
                nearest(marks, (*where, *problem.path)), message, rule=scope.rule, hint=problem.hint
            )


def _sole_matrix_values(
    value: Any, sole: Mapping[str, str], path: YamlPath = ()
) -> list[tuple[YamlPath, str]]:
    """Where in a parameter value a string is exactly one matrix placeholder (a list item too:
    `argv: [echo, "{n}"]`), and that matrix key."""
    if isinstance(value, str):
        return [(path, sole[value])] if value in sole else []
    if isinstance(value, Mapping):
        items: Any = value.items()
    else:
        items = enumerate(value) if isinstance(value, list) else ()
    return [found for key, item in items for found in _sole_matrix_values(item, sole, (*path, key))]


def _is_number(value: Any, path: YamlPath) -> bool:
    """True when the value at `path` inside `value` is a number (a filled matrix value's type)."""
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(value, int | float) and not isinstance(value, bool)


def _uses_per_job(params: Any, path: Sequence[str | int], per_job: frozenset[str]) -> bool:
    """True when the value written at `path` (or a string above it) holds a per-job placeholder."""
    value = params
    for part in path:
        if isinstance(value, str):
            break
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(value, str) and bool(set(names_in(value)) & per_job)
