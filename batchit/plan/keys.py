"""Action keys (SPEC section 3): the BLAKE3 hash of a canonical JSON document describing a job.

The document is `{"discovered", "inputs", "paths", "recipe", "v"}` with sorted keys. The recipe (the
steps with their substituted parameters, operator and library versions, deps, files named by
parameters, contracts and the flags read) is the same for most jobs of a rule, so it is serialised once
and the per-job document is built by concatenating canonical fragments: no per-job `json.dumps` of a
nested structure, which is what keeps planning 100,000 jobs under a second.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from blake3 import blake3

from batchit.hashing import blake3_hex, canonical_json, json_string

KEY_FORMAT = 1
"""Bumped whenever the key document's layout changes, so old keys never match new ones."""


@dataclass(frozen=True, slots=True)
class StepCall:
    """A step ready to run: operator name, import target, version, parameters after substitution."""

    operator: str
    target: str
    version: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Recipe:
    """A rule's recipe for some jobs: the canonical document, its hash and the steps to run."""

    doc: str
    hash: str
    steps: tuple[StepCall, ...]
    path_aware: bool
    key_tail: bytes
    """The end of every path-blind key document of this recipe, encoded once for all its jobs."""


def make_recipe(
    steps: Sequence[StepCall],
    *,
    libraries: Mapping[str, Mapping[str, str]],
    deps: Mapping[str, str],
    files: Mapping[str, str],
    expect: Mapping[str, Any] | None,
    flags: Mapping[str, Any],
    path_aware: bool,
    validate: Mapping[str, Any] | None = None,
) -> Recipe:
    """Serialise a recipe canonically and hash it."""
    doc = canonical_json(
        {
            "deps": {nfc(path): digest for path, digest in deps.items()},
            "expect": expect,
            "files": {nfc(label): digest for label, digest in files.items()},
            "flags": dict(flags),
            "libraries": {name: dict(v) for name, v in libraries.items()},
            "steps": [{"op": s.operator, "params": s.params, "version": s.version} for s in steps],
            "validate": validate,
        }
    )
    tail = f',"paths":null,"recipe":{doc},"v":{KEY_FORMAT}}}'.encode()
    return Recipe(doc, blake3_hex(doc.encode()), tuple(steps), path_aware, tail)


def nfc(path: str) -> str:
    """A path as the key document writes it: Unicode NFC (SPEC section 3), so a checkout on a file
    system that stores names decomposed (macOS) keys its jobs as one that stores them composed."""
    return path if path.isascii() else unicodedata.normalize("NFC", path)


@dataclass(frozen=True, slots=True)
class Seen:
    """What a path-aware step can see of its job besides its input bytes: the input paths, the
    rule's output template, the job's matrix values (which, with the input paths, render that
    template but for `{key8}`) and the rule's name (`rule` in a template, `ctx.rule`)."""

    input_paths: Sequence[str]
    output_template: str
    rule: str
    matrix: Mapping[str, Any]


def action_key(
    recipe: Recipe, input_hashes: Sequence[str], discovered: Mapping[str, str], seen: Seen | None
) -> str:
    """The action key of one job.

    What the job's steps can see enters only for path-aware recipes, which must be given `seen`;
    the rendered output path never does, so jobs computing the same bytes share a key.
    """
    inputs = '["' + '","'.join(input_hashes) + '"]' if input_hashes else "[]"
    disc = canonical_json({nfc(path): digest for path, digest in discovered.items()}) if discovered else "{}"
    head = f'{{"discovered":{disc},"inputs":{inputs}'
    if not recipe.path_aware:
        return blake3(head.encode() + recipe.key_tail).hexdigest()
    assert seen is not None, "a path-aware recipe's key holds what its steps see"
    paths = (
        '{"inputs":['
        + ",".join(json_string(nfc(p)) for p in seen.input_paths)
        + '],"matrix":'
        + (canonical_json(dict(seen.matrix)) if seen.matrix else "{}")
        + ',"output":'
        + json_string(seen.output_template)
        + ',"rule":'
        + json_string(seen.rule)
        + "}"
    )
    return blake3_hex(f'{head},"paths":{paths},"recipe":{recipe.doc},"v":{KEY_FORMAT}}}'.encode())


def recipe_differences(old_doc: str, new_doc: str) -> list[str]:
    """Human-readable differences between two recipe documents, for `explain` and the plan's reasons."""
    old: dict[str, Any] = json.loads(old_doc)
    new: dict[str, Any] = json.loads(new_doc)
    changes = _file_changes(old, new)
    old_steps, new_steps = old.get("steps", []), new.get("steps", [])
    if len(old_steps) != len(new_steps):
        changes.append(f"steps changed: {len(old_steps)} -> {len(new_steps)} steps")
    for index, (a, b) in enumerate(zip(old_steps, new_steps, strict=False), start=1):
        if a["op"] != b["op"]:
            changes.append(f"step {index}: operator {a['op']} -> {b['op']}")
        elif a["version"] != b["version"]:
            changes.append(f"step {index} ({b['op']}): operator version {a['version']} -> {b['version']}")
        elif a["params"] != b["params"]:
            for name in sorted(set(a["params"]) | set(b["params"])):
                if a["params"].get(name) != b["params"].get(name):
                    changes.append(
                        f"step {index} ({b['op']}): parameter {name}: "
                        f"{json.dumps(a['params'].get(name))} -> {json.dumps(b['params'].get(name))}"
                    )
    for field in ("libraries", "expect", "validate", "flags"):
        if old.get(field) != new.get(field):
            changes.append(f"{field} changed: {json.dumps(old.get(field))} -> {json.dumps(new.get(field))}")
    return changes


def _file_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for field, label in (("deps", "dep"), ("files", "file")):
        found.extend(hash_map_changes(label, old.get(field, {}), new.get(field, {})))
    return found


def hash_map_changes(label: str, before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """`<label> added|removed|changed: <name>` for each difference between two name -> hash maps."""
    found: list[str] = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            found.append(f"{label} added: {name}")
        elif name not in after:
            found.append(f"{label} removed: {name}")
        elif before[name] != after[name]:
            found.append(f"{label} changed: {name}")
    return found
