"""What an operator is: a named, versioned, schema-checked step of a pipeline.

An operator is a class with class attributes describing it (what enters the action key, which pool
runs it, which parameters it takes) and one method, `run(value, ctx, **params)`, which takes the value
the step before produced and returns the next. Operators hold no state between calls: the same class
is called from worker processes, threads and Dask workers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from batchit.errors import PermanentError
from batchit.hashing import blake3_hex
from batchit.placeholders import names_in_value, substitute_value

LARGEST_COUNT = 2**31 - 1
"""The schema maximum of a count or a pixel distance: more than any text or image needs, and what
the C code under an operator (regular expressions, Pillow) holds without overflowing."""

JSON_INDENT: dict[str, Any] = {
    "type": "integer",
    "minimum": 0,
    "maximum": 8,
    "default": 2,
    "description": "JSON indentation; 0 writes one compact line.",
}
"""The schema of an `indent` parameter of an operator that writes JSON (cdn.manifest, data.dump)."""

InputKind = Literal["file", "files"]
"""What a job's pipeline starts from: "file", its one input file; "files", an aggregate's list of them."""

BOTH_KINDS: frozenset[InputKind] = frozenset({"file", "files"})

RUN_TIME_PASS = frozenset({"-"})
"""Kept by `Operator.fill_params` in a record parameter: no placeholder is named `-`, but a keep
set that is not empty leaves the escapes `{{` and `}}` for the operator's pass at run time."""


@dataclass(frozen=True)
class InputFile:
    """A pipeline's starting value: one input file, read only when a step asks for its bytes."""

    path: str
    """Project-relative POSIX path."""
    absolute: Path

    def read_bytes(self) -> bytes:
        """The file's content."""
        return self.absolute.read_bytes()

    def read_text(self) -> str:
        """The file's content decoded as UTF-8 (an undecodable file is a permanent error)."""
        try:
            return self.absolute.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PermanentError(f"{self.path} is not valid UTF-8: {exc}") from exc


@dataclass(frozen=True)
class UpstreamSource:
    """Where an input produced by another rule came from: that rule's job, its inputs, its matrix values."""

    rule: str
    inputs: tuple[str, ...]
    """The upstream job's project-relative inputs (one path, unless it is an aggregate)."""
    matrix: Mapping[str, Any]
    """The upstream job's matrix values (`{"width": 320}`); empty without a matrix."""


JOB_LOG = logging.getLogger("batchit.job")
"""Where a job's steps log unless the job captures their log (`python` and `shell` steps do)."""


@dataclass
class JobContext:
    """What a step may know about its job besides its value (SPEC section 12)."""

    input: str | list[str]
    """The input's project-relative path, or the list of them for an aggregate."""
    output: str
    """The output's path relative to `out`."""
    rule: str
    key: str
    """The job's action key: a deterministic seed for any randomness."""
    root: Path
    """Absolute project root."""
    out: str = "_build"
    """The output root, relative to `root` (inputs of an aggregate that reads another rule live there)."""
    log: logging.Logger = JOB_LOG
    discovered: set[str] = field(default_factory=set)
    """Project-relative files this job read beyond its inputs; they enter its next action key."""
    read_hashes: dict[str, str] = field(default_factory=dict)
    """The BLAKE3 of the bytes read, for discovered files a step hashed as it read them: the key
    then holds what the job used, even if the file is edited before the build commits the job."""
    sources: Mapping[str, UpstreamSource] = field(default_factory=dict)
    """For an aggregate over other rules' outputs (`inputs: {rule: NAME}`): each such input's path
    -> the job that produced it. Empty for every other job."""

    def project_path(self, relative: str) -> Path:
        """The absolute path of a project-relative file."""
        return self.root / relative

    def note_read(self, relative: str, data: bytes | None = None) -> None:
        """Record that the job read `relative`, so a change to it makes the job stale; with `data`,
        the bytes it read (else the file as the build finds it once the job is done counts)."""
        self.discovered.add(relative)
        if data is not None:
            self.read_hashes[relative] = blake3_hex(data)


@dataclass(frozen=True)
class ParamProblem:
    """A parameter value the schema allows but the operator can tell, before any job runs, it cannot
    use (a Markdown extension that is not installed): refused when the config loads, exit 2, rather
    than failing every job of the rule for a mistake in the config."""

    path: tuple[str | int, ...]
    """Where in the step's parameters: `("extensions", 1)`; the first part names the parameter."""
    message: str
    """What is wrong, following "step N (name) parameter 'P' "."""
    hint: str


class Operator:
    """Base class of all operators; subclasses set the class attributes and implement `run`."""

    name: ClassVar[str]
    version: ClassVar[str]
    """Bump when the operator's output for the same input and parameters changes."""
    params_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}
    """JSON Schema of the step's parameters, checked when the config loads."""
    resources: ClassVar[Literal["cpu", "io"]] = "cpu"
    file_params: ClassVar[tuple[str, ...]] = ()
    """Parameters naming project files whose content enters the action key (a template, a logo)."""
    path_aware: ClassVar[bool] = False
    """True when the operator can see paths: then input paths and the output template enter the key."""
    runtime_placeholders: ClassVar[frozenset[str]] = frozenset()
    """Placeholders the operator fills itself at run time (`{in}`, `{out}` for `shell`)."""
    record_params: ClassVar[frozenset[str]] = frozenset()
    """Parameters whose placeholders that are neither output placeholders nor matrix keys name
    fields of the record the step receives, filled by the operator at run time (`http.enrich`'s
    `url: https://api.example.com/items/{id}`)."""
    coordinator_only: ClassVar[bool] = False
    """True when every job must run in the coordinating process (a rate limit shared by the whole
    run): a rule with such a step is `resources: io`, which keeps its jobs on the coordinator's
    threads under every executor."""
    libraries: ClassVar[tuple[str, ...]] = ()
    """Distributions whose versions enter the action key."""
    imports_user_code: ClassVar[bool] = False
    """True when the operator finds a module through the import path, so `sys.path` decides which
    file enters the key."""
    validate_section: ClassVar[str | None] = None
    """A section of the rule's `validate:` whose keys become this step's parameters (unless the step
    sets them itself), so a rule-wide guard reaches the operator that can apply it."""
    logs_output: ClassVar[bool] = False
    """True for operators that run user code or commands: their job's log (stdout, stderr and
    `ctx.log` at debug level) is kept under the run's `logs/`."""
    cheap: ClassVar[bool] = False
    """True when re-running costs no more than restoring a copy: a pipeline of only cheap steps is
    not kept in the cache (its result would just duplicate bytes already on disk)."""
    takes: ClassVar[frozenset[InputKind]] = BOTH_KINDS
    """Which of a job's inputs, as they are, the operator can take: a rule's first step (or one after
    steps a `when:` may skip) gets "file" (one input file) or, in an aggregate, "files" (the list
    of them). Empty when it needs a value an earlier step makes (image.resize needs image.load's
    picture). The config refuses a rule whose steps would hand one an input it cannot take: every
    job would fail on it."""
    ends_with: ClassVar[str | None] = None
    """The operator that must come after this one when its value is never bytes or text, whatever
    the input (image.resize makes a picture, which image.save encodes); None when its value may end
    a pipeline. The config refuses a rule whose last step to run would be such an operator."""

    @classmethod
    def param_problem(cls, params: Mapping[str, Any], root: Path) -> ParamProblem | None:
        """What makes `params` unusable in any job of the project at `root` although they pass the
        schema, or None.

        Called when the config loads, with the step's parameters as the schema check sees them
        (matrix values filled in; a value holding a per-job placeholder is not judged), and only
        when the schema checks run: a config a build already vouched for skips it, so `run` must
        still report the same mistake. It must be cheap and import nothing heavy.
        """
        return None

    def sees_paths(self, params: Mapping[str, Any]) -> bool:
        """Whether this step, with `params` (placeholders filled), can see the input paths or the
        output path: then they enter the action key, and jobs that differ only by path never share
        one. `path_aware` says so for every use of the operator; a step that reads a path only
        under some parameters (a format told by the extension) says so here."""
        return self.path_aware

    def library_versions(self) -> dict[str, str]:
        """Versions of the libraries whose behaviour shapes this operator's output."""
        if not self.libraries:
            return {}
        import importlib.metadata  # ~25 ms to import, which operators naming no library never need

        versions: dict[str, str] = {}
        for dist in self.libraries:
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                versions[dist] = "missing"
        return versions

    def key_files(self, params: Mapping[str, Any], root: Path) -> dict[str, Path]:
        """Files whose content enters the action key, by a label that is stable across machines.

        Called as the build plans, before any job runs; RecipeError for parameters that name
        something no job could use (a `python` step's module that is not there), which the
        planner reports as a config error of the rule (exit 2).
        """
        return {
            f"{name}:{params[name]}": root / str(params[name])
            for name in self.file_params
            if isinstance(params.get(name), str)
        }

    def key_folders(self, params: Mapping[str, Any], root: Path) -> list[str]:
        """Project-relative folders whose entries decide which files `key_files` names (an operator
        that finds a module by looking in folders, `imports_user_code`): a file appearing in one
        may change the key though no file it named changed. A remembered plan holds only while
        none of them changed (batchit.plan.snapshot). None by default."""
        return []

    @classmethod
    def fill_params(cls, params: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """The step's parameters with their placeholders filled from `values`, but those the
        operator fills at run time: `runtime_placeholders`, and in `record_params` every name that
        `values` lacks (there `{{` and `}}` stay escaped for the operator's own pass)."""
        filled = {}
        for name, value in params.items():
            keep = cls.runtime_placeholders
            if name in cls.record_params:
                keep = keep | RUN_TIME_PASS | (names_in_value(value) - values.keys())
            filled[name] = substitute_value(value, values, keep)
        return filled

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """Transform `value` (what the previous step returned) into the next step's value."""
        raise NotImplementedError


def as_bytes(value: Any, step: str) -> bytes:
    """Coerce a pipeline value to bytes (an InputFile is read, str is UTF-8 encoded)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, InputFile):
        return value.read_bytes()
    raise PermanentError(f"step {step} needs bytes or text, got {type(value).__name__}")


def as_text(value: Any, step: str) -> str:
    """Coerce a pipeline value to text (bytes and files are decoded as UTF-8)."""
    if isinstance(value, str):
        return value
    if isinstance(value, InputFile):
        return value.read_text()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PermanentError(f"step {step}: input is not valid UTF-8: {exc}") from exc
    raise PermanentError(f"step {step} needs text, got {type(value).__name__}")
