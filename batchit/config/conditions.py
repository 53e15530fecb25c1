"""`when:` conditions: Jinja2 sandbox expressions over `flags`, matrix values and `input` (SPEC section 2).

A condition is compiled by `SandboxedEnvironment.compile_expression`, never by Python's `eval`, and
its syntax tree tells which flags it reads: those flags' values enter the action key of the jobs
whose steps it guards, so flipping an unrelated flag rebuilds nothing.

Jinja2 is imported when the first condition is parsed, not with this module: the planner imports
this module on every build, and a config without conditions should not pay ~25 ms for Jinja2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from batchit.config.hints import did_you_mean
from batchit.placeholders import PATH_PLACEHOLDERS

PLACEHOLDER_IN_TEXT = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
"""A `{name}` in a string of a condition (not the `{{ }}` of Jinja2 text)."""

if TYPE_CHECKING:
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

_N = TypeVar("_N", bound="nodes.Node")

CONDITION_VARIABLES = frozenset({"flags", "input"})
"""What every condition may read, besides the rule's matrix keys."""

INPUT_ATTRIBUTES = frozenset({"size", "path", "ext"})
"""What `input` offers a condition (SPEC section 2): anything else would be undefined at plan time."""


class ConditionError(ValueError):
    """A condition that cannot be compiled or reads something that does not exist."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


CONDITION_GLOBALS = frozenset({"range", "dict"})
"""Jinja2's globals a condition may call; `lipsum`, `cycler`, `joiner` and `namespace` decide
nothing, and `lipsum(1000000)` alone kept `plan` busy for over a minute."""


@cache
def _environment() -> SandboxedEnvironment:
    """One sandbox for every condition (an environment is costly to build and safe to share).

    Strictly undefined: an attribute a value lacks (`input.path.suffix`) or one the sandbox refuses
    (`__class__`) is an error, not an undefined that compares unequal and tests false, which would
    switch the step off without a word.
    """
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(undefined=StrictUndefined)
    environment.globals = {name: environment.globals[name] for name in CONDITION_GLOBALS}
    return environment


def _parse(expr: str) -> nodes.Expr:
    """The expression's syntax tree, parsed exactly as `compile_expression` parses it."""
    from jinja2 import TemplateError
    from jinja2.parser import Parser

    parser = Parser(_environment(), expr, state="variable")
    try:
        tree = parser.parse_expression()
        if not parser.stream.eos:
            parser.fail("unexpected text after the expression")
    except TemplateError as exc:
        raise ConditionError(
            f"invalid condition {expr!r}: {exc.message}", "write a Jinja2 expression"
        ) from None
    return tree


def _nodes(tree: nodes.Expr, kinds: type[_N] | tuple[type[_N], ...]) -> Iterator[_N]:
    """The nodes of the given kinds in the tree, its root included (`find_all` skips the root)."""
    if isinstance(tree, kinds):
        yield tree
    yield from tree.find_all(kinds)


def _flag_reads(tree: nodes.Expr) -> tuple[set[str], bool]:
    """The flag names read as `flags.NAME` or `flags["NAME"]`, and whether `flags` is used otherwise."""
    from jinja2 import nodes

    read: set[str] = set()
    constant_reads = 0
    for node in _nodes(tree, (nodes.Getattr, nodes.Getitem)):
        key: str | None = None
        if isinstance(node, nodes.Getattr):
            key = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value if isinstance(node.arg.value, str) else None
        target = getattr(node, "node", None)
        if isinstance(target, nodes.Name) and target.name == "flags" and key is not None:
            read.add(key)
            constant_reads += 1
    uses = sum(1 for name in _nodes(tree, nodes.Name) if name.name == "flags")
    return read, uses > constant_reads


def flags_read(expr: str) -> set[str]:
    """The names of the flags a condition reads, so exactly their values enter the action key.

    Exact for every condition `load_config` accepted (it refuses a condition that reads `flags` in
    any other way than `flags.NAME` or `flags["NAME"]`).
    """
    return _flag_reads(_parse(expr))[0]


def check_condition(expr: str, variables: Collection[str], flags: Collection[str]) -> None:
    """Refuse a condition that does not parse, or reads an unknown variable or flag.

    `variables` are the names it may read besides `flags` and `input` (the rule's matrix keys);
    `flags` are the declared flag names. Jinja2 would quietly treat an unknown name as undefined,
    so a typo would switch a step off without a word: here it is a config error instead.
    """
    from jinja2 import nodes

    tree = _parse(expr)
    read, dynamic = _flag_reads(tree)
    if dynamic:
        raise ConditionError(
            f"condition {expr!r} reads flags indirectly",
            "read each flag as flags.NAME, so batchit knows which flags a step depends on",
        )
    unknown_flags = sorted(read - set(flags))
    if unknown_flags:
        flag = unknown_flags[0]
        raise ConditionError(
            f"condition reads unknown flag '{flag}'",
            did_you_mean(flag, flags, f"declare '{flag}' under flags:"),
        )
    allowed = CONDITION_VARIABLES | set(variables) | set(_environment().globals)
    unknown_names = sorted({node.name for node in _nodes(tree, nodes.Name)} - allowed)
    if unknown_names:
        name = unknown_names[0]
        if name in PATH_PLACEHOLDERS:
            fix = f"a condition has no {{{name}}}: it reads input.path and input.ext instead"
        elif name.isidentifier() and not name.startswith("_"):
            fix = did_you_mean(name, allowed, f"declare '{name}' under matrix: (a matrix key is a variable)")
        else:
            known = ", ".join(sorted(CONDITION_VARIABLES | set(variables)))
            fix = f"a condition reads these names (flags as flags.NAME): {known}"
        raise ConditionError(f"condition reads unknown name '{name}'", fix)
    unknown_attributes = sorted(_input_reads(tree) - INPUT_ATTRIBUTES)
    if unknown_attributes:
        attribute = unknown_attributes[0]
        raise ConditionError(
            f"condition reads unknown attribute 'input.{attribute}'",
            did_you_mean(attribute, INPUT_ATTRIBUTES, "input has size, path and ext"),
        )
    _refuse_placeholders_in_strings(tree, set(variables))
    compile_condition(expr)


def _refuse_placeholders_in_strings(tree: nodes.Expr, variables: set[str]) -> None:
    """Refuse a string in the condition that holds a placeholder (`'{width}' == '320'`): nothing
    fills it, so the comparison is of the braces as written and the step is switched off (or on)
    for every job without a word. The variable is what the condition must read."""
    from jinja2 import nodes

    for node in _nodes(tree, nodes.Const):
        if not isinstance(node.value, str):
            continue
        for name in PLACEHOLDER_IN_TEXT.findall(node.value):
            if name in variables:
                fix = f"read the matrix key as a variable: {name} == ..., not '{{{name}}}'"
            elif name in PATH_PLACEHOLDERS:
                fix = "a condition reads input.path and input.ext instead"
            else:
                continue
            raise ConditionError(
                f"condition holds the placeholder {{{name}}} in a string, where nothing fills it", fix
            )


def _input_reads(tree: nodes.Expr) -> set[str]:
    """The attribute names read from `input` as `input.NAME` or `input["NAME"]`."""
    from jinja2 import nodes

    read: set[str] = set()
    for node in _nodes(tree, (nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not (isinstance(target, nodes.Name) and target.name == "input"):
            continue
        if isinstance(node, nodes.Getattr):
            read.add(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            read.add(str(node.arg.value))
    return read


def compile_condition(expr: str) -> Callable[[Mapping[str, Any]], bool]:
    """A function that evaluates the condition in Jinja2's sandbox over a mapping of variables.

    The mapping holds `flags` (a dict), the matrix values by name and `input` (with `.size`,
    `.path`, `.ext`); the result is the expression's truth value. Raises ConditionError when the
    expression does not compile, and the function raises it when evaluating fails (a flag of the
    wrong type, a division by zero, a range the sandbox refuses, an undefined or unsafe
    attribute), so a plan reports a config error instead of a traceback.
    """
    from jinja2 import TemplateError

    try:
        compiled = _environment().compile_expression(expr, undefined_to_none=False)
    except TemplateError as exc:
        raise ConditionError(
            f"invalid condition {expr!r}: {exc.message}", "write a Jinja2 expression"
        ) from None

    def condition(values: Mapping[str, Any]) -> bool:
        try:
            return bool(compiled(**values))
        except Exception as exc:  # the user's expression may raise anything: all of it is the config's
            raise ConditionError(
                f"condition {expr!r} failed: {type(exc).__name__}: {exc}",
                "make the condition work for every input and flag value (e.g. flags.NAME|int)",
            ) from None

    return condition
