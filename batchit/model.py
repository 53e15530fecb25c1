"""The validated configuration: frozen records that every layer past the config boundary can trust.

`batchit.config.load_config` is the only producer of these; nothing downstream re-validates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

Resources = Literal["cpu", "io"]
Durability = Literal["fast", "fsync"]


@dataclass(frozen=True)
class Step:
    """One operator call in a rule's pipeline, with its parameters as written (placeholders intact)."""

    operator: str
    params: dict[str, Any]
    when: str | None = None
    line: int | None = None
    file: str | None = None
    """The file `line` is in: the config's, or an included preset file's."""


@dataclass(frozen=True)
class Aggregate:
    """How an aggregate rule groups its inputs: all in one job, by a placeholder expression, or by regex."""

    by: str | None = None
    partition: str | None = None


@dataclass(frozen=True)
class Retry:
    """Retry policy for transient failures; `attempts` counts every attempt, the first included."""

    attempts: int = 1
    backoff: float = 0.2
    max_backoff: float = 10.0


@dataclass(frozen=True)
class Rule:
    """One rule of `batchit.yaml`: which inputs, which outputs, through which steps."""

    name: str
    globs: tuple[str, ...]
    """Project-relative glob patterns (`**` crosses directories)."""
    from_rules: tuple[str, ...]
    """Upstream rules whose outputs are inputs of this one (`inputs: {rule: NAME}`)."""
    exclude: tuple[str, ...]
    output: str
    """Output path template, relative to `out`."""
    steps: tuple[Step, ...]
    matrix: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    deps: tuple[str, ...] = ()
    """Extra files (globs) whose content enters every job's key."""
    resources: Resources = "cpu"
    concurrency: int | None = None
    aggregate: Aggregate | None = None
    expect: dict[str, Any] | None = None
    retry: Retry = field(default_factory=Retry)
    validate: dict[str, Any] | None = None
    line: int | None = None


@dataclass(frozen=True)
class Alerts:
    """Where and when a run's summary is POSTed."""

    webhook: str
    when: Literal["failure", "always"] = "failure"


@dataclass(frozen=True)
class CheckedConfig:
    """What a config's schema checks depended on, after they ran and passed.

    A build records it in `.batchit/validated.json`; the next load of the config, unchanged, can
    then skip those checks (see `batchit.config.validation`).
    """

    file: str
    """The config file as the user named it (the record's key)."""
    digest: str
    """BLAKE3 over everything the checks depend on."""
    includes: tuple[str, ...]
    """The `include:` entries, whose files' bytes are part of the digest."""
    operators: tuple[str, ...]
    """The operators the steps use, whose parameter schemas are part of the digest."""


STATE_DIR = ".batchit"

MOST_WORKERS = 1024
"""The largest worker count `jobs` and `-j` take: more would only exhaust the machine's processes."""
"""batchit's own folder in a project: the state store, run records, cache and keys."""

MANIFEST_COPY = "batchit-manifest.json"
"""The manifest copy every build leaves in `out` (SPEC section 5); no job may write it."""

RESERVED_OUTPUTS = frozenset({MANIFEST_COPY, f"{MANIFEST_COPY}.sig"})
"""The names in `out` that batchit keeps for itself."""


@dataclass(frozen=True)
class Config:
    """A loaded and validated project configuration."""

    root: Path
    """Absolute, resolved project root (the directory holding the config file)."""
    file: str
    """The config file's path as the user named it, for messages."""
    out: str
    """Output root, relative to `root`, normalised POSIX."""
    rules: dict[str, Rule]
    """Rules in an order where every rule comes after the rules it reads from."""
    jobs: int | None = None
    """Default worker count; None means the CPU count."""
    durability: Durability = "fast"
    cache_max_size: int = 2_000_000_000
    runs_keep: int = 20
    flags: dict[str, Any] = field(default_factory=dict)
    alerts: Alerts | None = None
    provenance: bool = True
    config_hash: str = ""
    """BLAKE3 of the config file and every included file, in load order."""
    checked: CheckedConfig | None = None
    """Set when this load ran the schema checks, for the build to record; None when an earlier
    build's record showed they had passed for this config as it is."""
    out_real: str | None = None
    """The project folder `out` leads to through a symlink, when it leads to another one than itself."""
    state: str = STATE_DIR
    """Where this config's state lives, relative to `root`: `.batchit`, or for a sample built into
    a folder of its own (`build --sample --out DIR`), a folder under `.batchit/samples/`."""
    walled: frozenset[str] = frozenset()
    """Other project folders no glob walks: the config's own `out` while a sample builds elsewhere."""

    @property
    def unwalked(self) -> frozenset[str]:
        """Project-relative folders no input glob descends into: `out` (and the folder it leads
        to), and batchit's own state."""
        return frozenset({self.out, STATE_DIR} | ({self.out_real} if self.out_real else set()) | self.walled)

    @cached_property
    def out_dir(self) -> Path:
        """The absolute output root."""
        return self.root / self.out

    @cached_property
    def state_dir(self) -> Path:
        """The absolute directory of this config's state store, records, cache and quarantine."""
        return self.root / self.state

    @property
    def project_state_dir(self) -> Path:
        """The absolute `.batchit` directory, which holds the signing keys of every build."""
        return self.root / STATE_DIR
