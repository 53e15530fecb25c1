"""The rows of the state store (batchit.state.store) as the rest of batchit reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

StatRow = tuple[str, int, int, int, int, str]
"""A stat-cache row: (path, size, mtime_ns, ctime_ns, inode, blake3)."""


class Owned(NamedTuple):
    """The part of an output's record that planning needs (loaded for every output, so kept small).

    The stat fields come from the stat cache when it vouches for the recorded hash (else None), so
    an unchanged output is recognised without a second row per output.
    """

    rule: str
    action_key: str | None
    blake3: str | None
    size: int | None
    mtime_ns: int | None
    ctime_ns: int | None
    inode: int | None

    @property
    def stat(self) -> tuple[int | None, ...]:
        """(size, mtime_ns, ctime_ns, inode) as recorded: equal to a StatTuple when it vouches."""
        return self[3:]


class ListedOutput(NamedTuple):
    """What a run's manifest and provenance say about one output: its record's listed fields.

    A tuple in the manifest's field order, read for every output of every run: unpacking it costs
    less than building an `OutputRecord`, which is most of writing a record for 10,000 outputs.
    """

    path: str
    rule: str
    action_key: str | None
    blake3: str
    sha256: str | None
    size: int | None
    inputs: str
    """Canonical JSON text: [{"blake3":..,"path":..}]."""


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """What batchit recorded about one output it owns."""

    path: str
    job_id: str
    rule: str
    action_key: str | None
    blake3: str | None
    sha256: str | None
    size: int | None
    inputs: str
    discovered: str
    recipe: str | None
    status: str
    run_id: str | None


@dataclass(frozen=True, slots=True)
class Failure:
    """A job that failed in its latest attempt and has not succeeded since."""

    job_id: str
    rule: str
    input: str
    output: str | None
    error_class: str
    message: str
    run_id: str
    quarantine: str | None = None
    """Where the input was copied (project-relative) when the failure is permanent."""
    inputs_key: str | None = None
    """The input hashes the job failed on, joined: the quarantine holds while they are unchanged."""
