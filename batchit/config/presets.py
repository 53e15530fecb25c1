"""Presets: rule skeletons in included files, filled in from a rule's `with:` (SPEC section 2).

`include: [path, batchit:NAME]` loads files that hold only `presets:`. A rule saying `preset: NAME`
gets the skeleton with every `${param}` replaced (a string that is exactly `${param}` takes the
value's own type; `$${` is a literal `${`), and its own keys replace the skeleton's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from batchit.config.hints import did_you_mean, listing
from batchit.config.paths import escapes, normalise, unusable
from batchit.config.structure import PRESET_FILE
from batchit.config.validation import SchemaChecks
from batchit.config.yaml12 import Document, Mark, Marks, YamlPath, error_at, marks_under, read_document
from batchit.fsutil import resolves_inside
from batchit.placeholders import text
from batchit.resources import bundled_dir

BUNDLED_PREFIX = "batchit:"
PARAM = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${name}` is a preset parameter; `$${` is a literal `${`."""


def bundled_preset_dir() -> Path:
    """Where `batchit:NAME` presets live."""
    return bundled_dir("rules")


@dataclass(frozen=True)
class Preset:
    """A rule skeleton from an included file."""

    name: str
    skeleton: dict[str, Any]
    """Rule keys, `${param}` placeholders unreplaced, without `params`."""
    defaults: dict[str, Any]
    marks: Marks
    """Positions in the included file, relative to the skeleton."""
    bundled: str | None = None
    """`batchit:NAME` when the preset is one of batchit's own, whose file the user cannot edit."""


def load_presets(
    root: Path, config: Document, checks: SchemaChecks
) -> tuple[dict[str, Preset], list[Document]]:
    """The presets of every included file, and those files in load order (for the config hash)."""
    presets: dict[str, Preset] = {}
    origin: dict[str, str] = {}
    documents = []
    seen: dict[Path, str] = {(root / config.file).resolve(): "the config file itself"}
    for index, spec in enumerate(config.data.get("include", [])):
        mark = config.marks.get(("include", index))
        path, shown = locate(root, spec, mark)
        if path.resolve() in seen:
            raise error_at(
                mark,
                f"include {spec!r} is {seen[path.resolve()]}",
                hint="include each preset file once, and never the config file",
            )
        seen[path.resolve()] = f"the same file as include {spec!r}"
        document = read_document(path, shown)
        checks.check(document.data, PRESET_FILE, document.marks)
        marks = marks_under(document.marks, "presets")
        for name, skeleton in document.data["presets"].items():
            if name in presets:
                raise error_at(
                    marks[name][()],
                    f"preset '{name}' is also defined in {origin[name]}",
                    hint="rename one of them",
                )
            body = {key: value for key, value in skeleton.items() if key != "params"}
            bundled = spec if spec.startswith(BUNDLED_PREFIX) else None
            presets[name] = Preset(name, body, dict(skeleton.get("params", {})), marks[name], bundled)
            origin[name] = document.file
        documents.append(document)
    return presets, documents


def locate(root: Path, spec: str, mark: Mark | None = None) -> tuple[Path, str]:
    """The file an `include:` item names, and how messages show it."""
    if spec.startswith(BUNDLED_PREFIX):
        directory = bundled_preset_dir()
        path = directory / f"{spec[len(BUNDLED_PREFIX) :]}.yaml"
        available = {f"{BUNDLED_PREFIX}{found.stem}" for found in directory.glob("*.yaml")}
        if spec not in available:
            hint = did_you_mean(spec, available, f"bundled: {listing(available)}")
            raise error_at(mark, f"unknown bundled preset file {spec!r}", hint=hint)
        return path, str(path)
    if escapes(spec):
        raise error_at(
            mark, f"include {spec!r} escapes the project", hint="write it relative to the project root"
        )
    problem = unusable(spec)
    if problem:
        raise error_at(mark, f"include {spec!r} {problem[0]}", hint=problem[1])
    if (root / spec).is_dir():
        inside = sorted(found.relative_to(root).as_posix() for found in (root / spec).glob("*.y*ml"))
        hint = "name the preset file in it" + (f", such as {inside[0]}" if inside else "")
        raise error_at(mark, f"include {spec!r} is a folder, not a file", hint=hint)
    if not (root / spec).is_file():
        raise error_at(
            mark, f"included file {spec!r} not found", hint="include paths are relative to the project root"
        )
    if not resolves_inside(root.resolve(), root / spec):
        raise error_at(
            mark,
            f"include {spec!r} is a symlink leading outside the project",
            hint="copy the file into the project",
        )
    return root / spec, normalise(spec)


def expand(
    rule: str, raw: Mapping[str, Any], marks: Marks, presets: Mapping[str, Preset]
) -> tuple[dict[str, Any], Marks]:
    """The rule a `preset:` rule stands for, and the marks of its values (in whichever file they are)."""
    name = raw["preset"]
    if name not in presets:
        hint = did_you_mean(name, presets, "include the file that defines it (include: [...])")
        raise error_at(marks.get(("preset",)), f"unknown preset '{name}'", rule=rule, hint=hint)
    preset = presets[name]
    given: dict[str, Any] = raw.get("with", {})
    own = {key: value for key, value in raw.items() if key not in ("preset", "with")}
    kept = {key: value for key, value in preset.skeleton.items() if key not in own}
    known = _params_in(preset.skeleton) | set(preset.defaults)
    extra = sorted(set(given) - known)
    if extra:
        hint = did_you_mean(extra[0], known, f"its parameters: {listing(known)}")
        raise error_at(
            marks.get(("with", extra[0])),
            f"preset '{name}' has no parameter '{extra[0]}'",
            rule=rule,
            hint=hint,
        )
    values = {**preset.defaults, **given}
    missing = sorted(_params_in(kept) - set(values))  # a key the rule replaces needs none of its own
    if missing:
        raise error_at(
            marks.get(("preset",)),
            f"preset '{name}' needs a value for ${{{missing[0]}}}",
            rule=rule,
            hint=f"add it to the rule: with: {{{missing[0]}: ...}}",
        )
    filled = {key: _fill(value, values) for key, value in kept.items()}
    merged_marks = {path: mark for path, mark in preset.marks.items() if path and path[0] in filled}
    if preset.bundled and ("preset",) in marks:
        merged_marks = _at_use(merged_marks, marks[("preset",)], preset)
    merged_marks.update(_given_marks(kept, given, marks))
    merged_marks.update((path, mark) for path, mark in marks.items() if not path or path[0] in own)
    return {**filled, **own}, merged_marks


def _at_use(preset_marks: Marks, use: Mark, preset: Preset) -> Marks:
    """The marks of a bundled preset's values moved to the rule's `preset:` line, each naming its
    line in the preset: an error they meet is about how the rule uses the preset (the user cannot
    edit batchit's own file, which is somewhere inside the installed package)."""
    return {
        path: replace(use, via=f"preset '{preset.name}' of {preset.bundled}, line {mark.line}")
        for path, mark in preset_marks.items()
    }


def _given_marks(kept: Mapping[str, Any], given: Mapping[str, Any], marks: Marks) -> Marks:
    """Marks at the rule's `with:` entries for the values they fill in, each naming its parameter.

    A mistake in `with: {widths: 320}` then points at that line of the user's file, not at the
    `${widths}` in the preset file, which the user did not write and should not edit.
    """
    placed: Marks = {}
    for path, param in _param_paths(kept, ()):
        if param not in given or ("with", param) not in marks:
            continue
        via = f"preset parameter '{param}'"
        for written, mark in marks.items():
            if written[:2] == ("with", param):
                placed[(*path, *written[2:])] = replace(mark, via=via)
    return placed


def _param_paths(value: Any, path: YamlPath) -> Iterator[tuple[YamlPath, str]]:
    """Where in a skeleton value a string uses a `${param}`, with the first parameter it uses."""
    if isinstance(value, str):
        names = [match.group(1) for match in PARAM.finditer(value) if match.group(1)]
        if names:
            yield path, names[0]
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _param_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _param_paths(item, (*path, index))


def _params_in(value: Any) -> set[str]:
    """The `${param}` names used anywhere in a skeleton value."""
    if isinstance(value, str):
        return {match.group(1) for match in PARAM.finditer(value) if match.group(1)}
    if isinstance(value, Mapping):
        return set().union(*(_params_in(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_params_in(item) for item in value))
    return set()


def _fill(value: Any, values: Mapping[str, Any]) -> Any:
    """`value` with its `${param}` placeholders replaced; an exact `${param}` keeps the value's type."""
    if isinstance(value, str):
        whole = PARAM.fullmatch(value)
        if whole and whole.group(1):
            return values[whole.group(1)]
        return PARAM.sub(lambda match: text(values[match.group(1)]) if match.group(1) else "${", value)
    if isinstance(value, Mapping):
        return {key: _fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    return value
