"""Writing one run's record: manifest, signature, provenance, run data, report, copies, audit entry.

`Recorder` is made when a build starts: it checks the signing key then (so a bad
`BATCHIT_SIGNING_KEY` stops the build before any work) and logs every event to `events.jsonl`. Its
`write` is the build's last step. The manifest's signature covers a Statement naming the manifest's
sha256 (computed from the bytes, never by serialising outputs again), and the run's audit entry
records that sha256, so the audit log keeps every run's hash after retention removes the run.
The record is written in an order that a stop at any point leaves LATEST naming a whole record:
the run's files (`run.json` last), the report, the copies in `out`, LATEST, and only then retention
and the audit entry. A stop before the entry leaves a recorded run the log lacks: the next command
that takes the project lock appends its entry (`batchit.record.runs.audit_unaudited_run`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from batchit.errors import OutputConflictError
from batchit.fsutil import atomic_write_bytes, atomic_write_text
from batchit.model import MANIFEST_COPY, RESERVED_OUTPUTS, Config
from batchit.record.audit import append_audit, audit_head
from batchit.record.events import EventLog, EventSink
from batchit.record.manifest import RunInfo, render_manifest
from batchit.record.provenance import PROVENANCE, BuildRequest, manifest_statement, provenance_statement
from batchit.record.report import write_report
from batchit.record.rundata import RUN_FILE, JobRow, run_document
from batchit.record.runs import apply_retention, run_entry, runs_dir
from batchit.record.signing import SigningKey, first_key, load_signing_key, sign_envelope
from batchit.state.rows import ListedOutput
from batchit.state.store import StateStore

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"


@dataclass(frozen=True)
class RunRecord:
    """Where a run's record went, and which key signed it."""

    run_id: str
    manifest: Path
    report: Path
    key_id: str
    key_created: bool
    """The project had no key, so this run minted one (an error under `build --strict`)."""


class Recorder:
    """Records one run: events as they happen, everything else when the run ends."""

    def __init__(self, config: Config, run_id: str, emit: EventSink) -> None:
        self.config = config
        self.run_id = run_id
        self.run_dir = runs_dir(config) / run_id
        self.key = check_recordable(config)
        self.events = EventLog(self.run_dir, emit)
        """The event sink to hand the engine: it logs, then forwards to `emit`."""
        if self.key is not None:
            self._warn_if_exposed(self.key)

    def write(
        self,
        store: StateStore,
        info: RunInfo,
        statuses: dict[str, str],
        rows: list[JobRow],
        rules: tuple[str, ...],
        unvouched: Callable[[list[ListedOutput]], set[str]] | None = None,
        *,
        audit: dict[str, str] | None = None,
    ) -> RunRecord:
        """Write the run's record from the state store and the run's jobs; call under the project lock.

        `statuses` maps output paths to what the run did to them (the manifest's `status`), `rows`
        are the report's jobs, and `rules` are the rules named on the command line (none: all).
        `unvouched` picks, among the recorded outputs, those the manifest must leave out; `audit`
        holds further details for the run's audit entry.
        """
        config = self.config
        fsync = config.durability == "fsync"
        key = self.key or self._mint()
        info = replace(info, audit_head=audit_head(store))
        outputs = store.finished_outputs()
        left_out = unvouched(outputs) if unvouched is not None else set()
        if left_out:
            outputs = [output for output in outputs if output.path not in left_out]
        failures = list(store.load_failures().values())
        manifest = render_manifest(info, outputs, statuses, failures)
        digest = hashlib.sha256(manifest).hexdigest()
        files = {
            MANIFEST: manifest,
            SIGNATURE: sign_envelope(
                key,
                manifest_statement(
                    digest, info.run_id, key.key_id, info.audit_head, provenance=config.provenance
                ),
            ),
        }
        if config.provenance:
            request = BuildRequest(config.file, config.config_hash, config.out, rules, config.flags)
            files[PROVENANCE] = sign_envelope(key, provenance_statement(info, request, config.root, outputs))
        document = run_document(
            info,
            rows,
            (key.key_id, key.created),
            config.out,
            failures,
            self.events.warnings,
            self.events.retries,
        )
        document["provenance"] = config.provenance
        files[RUN_FILE] = json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")
        # run.json goes last of the run's files: it makes the folder a record (`apply_retention`).
        # A first stop signal waits for the record, unless the run was already stopped (SPEC 7).
        with _stop_signals_held(info.status != "interrupted"):
            for name, data in files.items():
                atomic_write_bytes(self.run_dir / name, data, fsync=fsync)
            report = write_report(self.run_dir)
            atomic_write_bytes(config.out_dir / MANIFEST_COPY, manifest, fsync=fsync)
            atomic_write_bytes(config.out_dir / f"{MANIFEST_COPY}.sig", files[SIGNATURE], fsync=fsync)
            atomic_write_text(self.run_dir.parent / "LATEST", self.run_id + "\n", fsync=fsync)
            removed = apply_retention(self.run_dir.parent, config.runs_keep)
            # Killed before this append, the run is recorded and not audited: the next command that
            # takes the lock appends its entry (`audit_unaudited_run`).
            entry = run_entry(info.run_id, info.status, info.summary, digest, key.key_id, removed)
            append_audit(config.state_dir, store, "run", {**entry, **(audit or {})}, fsync=fsync)
            self.events.close()
        return RunRecord(info.run_id, self.run_dir / MANIFEST, report, key.key_id, key.created)

    def _warn_if_exposed(self, key: SigningKey) -> None:
        """Say so when the private key file can be read by others than its owner (keygen writes it
        0600): batchit still signs with it, as the key is usable, but its signatures vouch less."""
        try:
            mode = Path(key.source).stat().st_mode
        except OSError:
            return  # `$BATCHIT_SIGNING_KEY` text, or a file the load just read and is now gone
        if mode & 0o077:
            shown = _shown(self.config.root, Path(key.source))
            self.events(
                {
                    "event": "warning",
                    "message": f"the signing key {shown} can be read by others (mode {mode & 0o777:o}); "
                    f"run `chmod 600 {shown}`",
                }
            )

    def _mint(self) -> SigningKey:
        """Create the project's key pair (it had none as the run started) and say so once, as an
        event; or take the pair another run made meanwhile (a sample building into its own folder
        runs beside a build)."""
        key = first_key(self.config.project_state_dir, os.environ)
        self.key = key
        if not key.created:
            return key
        public = Path(key.source).with_name("batchit.pub")
        self.events(
            {
                "event": "key_created",
                "key_id": key.key_id,
                "path": _shown(self.config.root, Path(key.source)),
                "public_key": _shown(self.config.root, public),
            }
        )
        return key


def check_recordable(config: Config) -> SigningKey | None:
    """What a run checks before any work, so that it can be recorded once its jobs ran: the signing
    key can be read (it is returned; None when the run must mint one), and the manifest copies can
    be written into `out`. A `Recorder` checks it as it is made; doit's sub-tasks, which record
    only after their jobs, call it before the first one."""
    key = load_signing_key(config.project_state_dir, os.environ)
    _check_copy_paths(config)
    return key


def _check_copy_paths(config: Config) -> None:
    """Refuse, before any work, a run whose manifest copies in `out` could not be written: a folder
    where one goes (a rename cannot replace it) would stop the record halfway, after the jobs ran."""
    for name in sorted(RESERVED_OUTPUTS):
        path = config.out_dir / name
        if path.is_dir() and not path.is_symlink():
            raise OutputConflictError(
                f"{config.out}/{name} is a folder, where batchit writes its copy of the run's manifest",
                hint=f"move {config.out}/{name} away; that name in `out` is batchit's",
            )


@contextlib.contextmanager
def _stop_signals_held(hold: bool) -> Iterator[None]:
    """Hold back a first SIGINT or SIGTERM while the block runs (writing a run's record takes a
    moment), then deliver it to the handler it was meant for; a second one is delivered at once.
    Only the main thread can set handlers: elsewhere, and with `hold` false, signals act as usual."""
    if not hold or threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[int, Any] = {}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        previous.clear()

    def hold_back(signum: int, frame: FrameType | None) -> None:
        if held:  # the second: as if nothing held it
            restore()
            signal.raise_signal(signum)
        held.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not None:  # None: a handler Python cannot put back
            previous[signum] = signal.signal(signum, hold_back)
    try:
        yield
    finally:
        restore()
    if held:
        signal.raise_signal(held[0])


def _shown(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
