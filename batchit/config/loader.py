"""`load_config`: the one entry point from `batchit.yaml` to a trusted `Config` (SPEC section 2).

Parsing and validation happen together, so every error names the file, the line, the rule and the
fix, and raises ConfigError before anything is built or written. The steps, in order: read the YAML,
check its shape, settle `out`, load the included presets, apply `--flag` overrides, build each rule
(expanding its preset), and order the rules so each comes after the rules it reads from. The JSON
Schema checks among them are skipped when a build recorded that they passed for the config as it is
(`batchit.config.validation`).
"""

from __future__ import annotations

import dataclasses
import math
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchit.config.hints import did_you_mean, listing
from batchit.config.paths import escapes, normalise, unusable
from batchit.config.presets import expand, load_presets, locate
from batchit.config.rules import RuleContext, build_rule
from batchit.config.steps import Operators
from batchit.config.structure import RULE, structure_schema
from batchit.config.units import parse_size
from batchit.config.validation import SchemaChecks, checked_config, vouched_for
from batchit.config.yaml12 import Document, Marks, error_at, marks_under, nearest, parse_scalar, read_document
from batchit.errors import ConfigError, UsageError
from batchit.globs import compile_glob, reaches_into
from batchit.hashing import blake3_hex
from batchit.model import STATE_DIR, Alerts, CheckedConfig, Config, Rule
from batchit.operators.registry import OperatorRegistry


def load_config(
    root: Path,
    file: str = "batchit.yaml",
    flag_overrides: Mapping[str, str] | None = None,
    registry: OperatorRegistry | None = None,
) -> Config:
    """Load and validate the project's config; every mistake in it raises ConfigError.

    `root` is the project root; `file` is relative to it or absolute. `flag_overrides` are the raw
    values of `--flag NAME=VALUE`, read as YAML 1.2 scalars. `registry` defaults to the built-in
    and installed operators.
    """
    root = root.resolve()
    path = root / file
    shown = _shown(path, root)
    config = read_document(
        path,
        shown,
        missing_hint="run batchit in the project directory (or -C DIR), or name the file with -f FILE",
    )
    data = config.data
    if isinstance(data, dict) and "presets" in data:
        raise error_at(
            config.marks.get(("presets",)),
            "presets are allowed only in included files",
            hint="move them to a file listed under include:",
        )
    operators = Operators(registry if registry is not None else OperatorRegistry.default())

    def read_include(spec: str) -> bytes:
        return locate(root, spec)[0].read_bytes()

    checks = SchemaChecks(
        vouched=vouched_for(root / STATE_DIR, shown, config.raw, read_include, operators.resolve)
    )
    checks.check(data, structure_schema(), config.marks)
    out = _out(data.get("out", "_build"), config)
    _out_is_no_file(root, out, config)
    out_real = _out_real(root, out, config)
    presets, included = load_presets(root, config, checks)
    flags = _flags(data.get("flags", {}), flag_overrides or {}, config)
    context = RuleContext(operators, checks, frozenset(data["rules"]), frozenset(flags), out, root)
    rule_marks = marks_under(config.marks, "rules")
    rules: dict[str, Rule] = {}
    for name, raw in data["rules"].items():
        marks = rule_marks[name]
        if "preset" in raw:
            raw, marks = expand(name, raw, marks, presets)
            checks.check(raw, RULE, marks, rule=name)
        rules[name] = build_rule(name, raw, marks, context)
    if out_real is not None:
        _refuse_out_over_inputs(out, out_real, rules, config)
    jobs = data.get("jobs", "auto")
    return Config(
        root=root,
        file=shown,
        out=out,
        rules=_ordered(rules, rule_marks),
        jobs=None if jobs == "auto" else jobs,
        durability=data.get("durability", "fast"),
        cache_max_size=parse_size(data.get("cache", {}).get("max_size", "2GB")),
        runs_keep=data.get("runs", {}).get("keep", 20),
        flags=flags,
        alerts=Alerts(**data["alerts"]) if "alerts" in data else None,
        provenance=data.get("provenance", True),
        config_hash=blake3_hex(b"".join(document.raw for document in (config, *included))),
        checked=None if checks.vouched else _checked(config, included, rules, operators),
        out_real=out_real,
    )


def _checked(
    config: Document, included: list[Document], rules: dict[str, Rule], operators: Operators
) -> CheckedConfig:
    """The record that this config passed its schema checks, for the build to keep."""
    specs = config.data.get("include", [])
    used = {step.operator for rule in rules.values() for step in rule.steps}
    return checked_config(
        config.file,
        config.raw,
        [(spec, document.raw) for spec, document in zip(specs, included, strict=True)],
        {name: operators.resolve(name) for name in used},
    )


def _shown(path: Path, root: Path) -> str:
    """The config file's path as the user knows it: relative to the root when inside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _out(value: str, config: Document) -> str:
    """`out`, normalised: a directory inside the project, neither the root itself nor in `.batchit`."""
    mark = config.marks.get(("out",))
    if escapes(value):
        raise error_at(
            mark, f"out {value!r} is absolute or names a parent (..)", hint="write a directory such as _build"
        )
    problem = unusable(value)
    if problem:
        raise error_at(mark, f"out {value!r} {problem[0]}", hint=problem[1])
    padded = _padded(value)
    if padded is not None:  # `out: "_build "` would write into a folder that only looks like _build
        raise error_at(mark, f"out {value!r} {padded[0]}", hint=f"write out: {padded[1]}")
    out = normalise(value)
    if not out:
        raise error_at(mark, "out may not be the project root", hint="write a directory such as _build")
    if out.split("/")[0] == STATE_DIR:
        raise error_at(mark, f"out may not be inside {STATE_DIR}", hint="write a directory such as _build")
    return out


def _padded(value: str) -> tuple[str, str] | None:
    """When a folder name in the path `value` starts or ends with whitespace: what is wrong, and
    the path without it (such a folder looks like the other in a listing, but is another one)."""
    padded = next((name for name in value.split("/") if name != name.strip()), None)
    if padded is None:
        return None
    fixed = normalise("/".join(name.strip() for name in value.split("/"))) or "_build"
    return (
        "has whitespace at the start or end of a folder name",
        f"{fixed} (a folder named {padded!r} looks like {padded.strip()!r} in a listing, but is "
        "another folder)",
    )


def _out_is_no_file(root: Path, out: str, config: Document) -> None:
    """`out`, or the nearest part of its path that exists, must be a folder: a file there (`out:
    batchit.yaml`) would fail every output's write."""
    path = root / out
    while not path.exists() and path != root:
        path = path.parent
    if path != root and not path.is_dir():
        shown = path.relative_to(root).as_posix()
        raise error_at(
            config.marks.get(("out",)),
            f"out {out!r} cannot be a folder: {shown} is a file",
            hint="name a folder for the outputs, such as _build",
        )


def _out_real(root: Path, out: str, config: Document) -> str | None:
    """The project folder `out` leads to through a symlink, when another than itself; None when it
    is no symlink or leads out of the project (outputs on another disk). It may lead to a folder of
    the project (a web server's `www`), never to the root or into `.batchit`. `root` is resolved."""
    real = (root / out).resolve()
    if real == root / out:
        return None
    try:
        inside = real.relative_to(root).as_posix()
    except ValueError:
        return None
    if inside == "." or inside.split("/")[0] == STATE_DIR:
        raise error_at(
            config.marks.get(("out",)),
            f"out {out!r} leads through a symlink to {'the project root' if inside == '.' else inside}",
            hint="make out a folder of its own, or a symlink to a folder that holds nothing else",
        )
    return inside


def _refuse_out_over_inputs(out: str, real: str, rules: dict[str, Rule], config: Document) -> None:
    """`out` leading to a folder a rule's glob could find inputs in would mix outputs with inputs
    (and the globs never look into `out`, so they would silently miss those inputs), unless the
    rule's exclude patterns leave the whole folder out."""
    reaching = _glob_reaching(real, rules)
    if reaching is not None:
        raise error_at(
            config.marks.get(("out",)),
            f"out {out!r} leads through a symlink to {real}, where rule {reaching[0]!r} may find "
            f"inputs ({reaching[1]!r})",
            hint=f"make out a folder of its own, or exclude '{real}/**' from the rule's inputs",
        )


def _glob_reaching(folder: str, rules: dict[str, Rule]) -> tuple[str, str] | None:
    """(rule, glob) of the first glob that could match a file in `folder`, unless that rule's
    exclude patterns leave the whole folder out; None when no glob reaches it."""
    probes = (f"{folder}/\0", f"{folder}/\0/\0")  # a file in it, and one deeper
    for rule in rules.values():
        excluded = [compile_glob(pattern).regex for pattern in rule.exclude]
        if all(any(rx.fullmatch(probe) for rx in excluded) for probe in probes):
            continue
        for pattern in rule.globs:
            if reaches_into(pattern, folder):
                return rule.name, pattern
    return None


SAMPLES_DIR = f"{STATE_DIR}/samples"
"""Where the state of samples built into folders of their own lives, one folder per `--out DIR`."""


def sample_into(config: Config, value: str) -> Config:
    """`config` building into `value` (`build --sample ... --out DIR`) with a state of its own
    under `.batchit/samples/`: the sample's outputs, records and cache never mix with the build's,
    and the config's own `out` stays a folder no glob walks. DIR must be a folder of the project
    no glob reaches (a later full build would read the sample's outputs as inputs) and apart
    from `out`; anything else is a UsageError."""
    fix = "name a folder of its own, such as --out _sample"
    problem = unusable(value)
    padded = _padded(value)
    if padded is not None:
        raise UsageError(f"--out {value!r} {padded[0]}", hint=f"write --out {padded[1]}")
    if escapes(value) or problem:
        what = problem[0] if problem else "is not a path relative to the project root (no leading /, no ..)"
        raise UsageError(f"--out {value!r} {what}", hint=fix)
    out = normalise(value)
    taken = {config.out, *([config.out_real] if config.out_real else [])}
    if not out or out.split("/")[0] == STATE_DIR or any(_nested(out, folder) for folder in taken):
        where = out or "the project root"
        raise UsageError(f"--out {where} overlaps the project, {STATE_DIR} or out ({config.out})", hint=fix)
    path = (config.root / out).resolve()
    if path != config.root / out or (path.exists() and not path.is_dir()):
        raise UsageError(f"--out {out} is a symlink or a file, not a folder of the project", hint=fix)
    for kind, reaching, harm in (
        (
            "inputs",
            _glob_reaching(out, config.rules),
            "a later build would read the sample's outputs as inputs",
        ),
        (
            "deps",
            _deps_reaching(out, config.rules),
            "the sample's outputs would change the key of its every job",
        ),
    ):
        if reaching is not None:
            raise UsageError(
                f"--out {out}: rule {reaching[0]!r} may find {kind} there ({reaching[1]!r}), so {harm}",
                hint=fix,
            )
    state = f"{SAMPLES_DIR}/{urllib.parse.quote(out, safe='')}"
    return dataclasses.replace(config, out=out, out_real=None, state=state, walled=frozenset(taken))


def _deps_reaching(folder: str, rules: dict[str, Rule]) -> tuple[str, str] | None:
    """(rule, pattern) of the first `deps` pattern that could match a file in `folder` (`exclude`
    leaves no dep out); None when none reaches it."""
    for rule in rules.values():
        for pattern in rule.deps:
            if reaches_into(pattern, folder):
                return rule.name, pattern
    return None


def _nested(one: str, other: str) -> bool:
    """True when one folder is the other or holds it."""
    return one == other or one.startswith(f"{other}/") or other.startswith(f"{one}/")


def _flags(declared: Mapping[str, Any], overrides: Mapping[str, str], config: Document) -> dict[str, Any]:
    """The declared flags with `--flag NAME=VALUE` overrides applied, each read as its declared
    value's type (a string flag takes the text as written); an unknown name or a value of the wrong
    kind is an error at the flag's line."""
    flags = dict(declared)
    for name, text in overrides.items():
        mark = nearest(config.marks, ("flags", name))
        if name not in flags:  # --flag changes a declared flag, so that a typo cannot pass unseen
            declare = f"declare it in {config.file} (flags: {{{name}: {text or '...'}}}), then --flag "
            declare += "changes it"
            known = f"known flags: {listing(flags)}; or {declare}"
            hint = did_you_mean(name, flags, known) if flags else declare
            raise ConfigError(f"--flag {name}: unknown flag", file=config.file, hint=hint)
        value = parse_scalar(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise error_at(mark, f"--flag {name}={text}: not a finite number", hint="write a finite number")
        declared_value = flags[name]
        if isinstance(declared_value, bool) and not isinstance(value, bool):
            raise error_at(
                mark,
                f"--flag {name}={text}: '{name}' is true or false, and {text!r} is neither",
                hint=f"write --flag {name}=true or --flag {name}=false (on, off, yes, no are strings)",
            )
        if _is_number(declared_value) and not _is_number(value):
            raise error_at(
                mark,
                f"--flag {name}={text}: '{name}' is a number ({declared_value}), and {text!r} is not",
                hint=f"write a number, such as --flag {name}={declared_value}",
            )
        flags[name] = text if isinstance(declared_value, str) else value  # a string flag takes it as written
    return flags


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered(rules: dict[str, Rule], marks: Mapping[str, Marks]) -> dict[str, Rule]:
    """The rules with each after those it reads from, otherwise in file order; a cycle is an error."""
    ordered: dict[str, Rule] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise error_at(
                nearest(marks[cycle[0]], ("inputs",)),
                f"rules read each other's outputs in a cycle: {' -> '.join(cycle)}",
                rule=cycle[0],
                hint="remove one of the {rule: ...} inputs in this cycle",
            )
        visiting.append(name)
        for upstream in rules[name].from_rules:
            visit(upstream)
        visiting.pop()
        ordered[name] = rules[name]

    for name in rules:
        visit(name)
    return ordered
