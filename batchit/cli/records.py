"""The commands about run records: keygen, verify, reconcile, runs, report, gc and audit verify.

`batchit.cli.parser` defines their arguments; each handler takes the parsed arguments and returns an
exit code (0, or 1 when the command ran and found something wrong; usage errors raise).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchit.cli import one_line, print_json, project_root
from batchit.config import load_config
from batchit.errors import UsageError
from batchit.model import MANIFEST_COPY, STATE_DIR, Config
from batchit.operators.registry import OperatorRegistry
from batchit.record.recorder import MANIFEST
from batchit.record.runs import in_progress, latest_run, read_json_object
from batchit.record.signing import PUBLIC_NAME, TrustedKey, generate_keys, keys_dir, load_public_key


def _config(args: argparse.Namespace) -> Config:
    """The project's config, refused when `.batchit` holds the state of another config file that
    still exists: `gc` would apply this one's `runs.keep` and `cache.max_size` to that config's
    records and cache, and `verify` would look for that config's outputs in this one's `out`."""
    from batchit.plan.ownership import refuse_foreign_state
    from batchit.state.store import StateStore

    config = load_config(project_root(), args.file, {}, OperatorRegistry.default())
    store = StateStore.open_readonly(config.state_dir / "state.db")
    try:
        refuse_foreign_state(config, store)
    finally:
        if store:
            store.close()
    return config


def keygen(args: argparse.Namespace) -> int:
    """`batchit keygen [--force]`: write `.batchit/keys/batchit.key` (0600) and `batchit.pub`.

    Under the project lock: a build signs its record with the key it finds (or mints) at its end.
    """
    from batchit.state.lock import ProjectLock

    with ProjectLock(project_root() / STATE_DIR / "lock"):
        key = generate_keys(project_root() / STATE_DIR, force=args.force)
    public = keys_dir(Path(STATE_DIR)) / PUBLIC_NAME
    print(f"keygen: key id {key.key_id}")
    print(f"  private key: {keys_dir(Path(STATE_DIR))}/batchit.key (mode 0600; keep it secret)")
    print(f"  public key:  {public} (give it to whoever verifies: batchit verify --key {public})")
    return 0


def verify(args: argparse.Namespace) -> int:
    """`batchit verify [MANIFEST] [--key PUBKEY ...] [--json]`."""
    from batchit.record.verify import verify_manifest

    manifest, base = _manifest_and_base(args.manifest, lambda: _config(args))
    result = verify_manifest(manifest, base, _trusted(args.key))
    if args.json:
        print_json(result.as_json())
        return result.exit_code
    print(f"verify: {manifest} (outputs under {base})")
    for problem in result.problems:
        where = f"{one_line(problem.path)}: " if problem.path else ""
        print(f"  {problem.kind}: {where}{problem.detail}")
    if result.problems:
        print(f"verify: FAILED: {len(result.problems)} problem(s), {result.outputs} output(s) listed")
    else:
        vouched = ", as does the run's provenance" if result.provenance else ""
        print(f"verify: ok: signed by key {result.key_id}, {result.outputs} output(s) match{vouched}")
    return result.exit_code


def _manifest_and_base(named: str | None, config: Callable[[], Config]) -> tuple[Path, Path]:
    """The manifest to check and the folder its outputs resolve against (SPEC section 4)."""
    if named is None:
        manifest = _latest_manifest(project_root() / STATE_DIR / "runs")
        if manifest is None:
            raise UsageError(
                "no manifest to check: no run is recorded here", hint="run `batchit build` first"
            )
        return manifest, config().out_dir
    path = Path(named)
    if path.is_dir():  # a copied `out` (its batchit-manifest.json), or a run's folder (its manifest.json)
        path = next((path / name for name in (MANIFEST_COPY, MANIFEST) if (path / name).is_file()), path)
    if not path.is_file():
        what = f"{path} holds neither {MANIFEST_COPY} nor {MANIFEST}" if path.is_dir() else None
        what = what or (f"{path} is not a file" if path.exists() else f"{path} does not exist")
        raise UsageError(
            f"no manifest to check: {what}",
            hint=f"name a run's {MANIFEST} (or its folder under .batchit/runs), or a copied {MANIFEST_COPY}",
        )
    base = path.parent if path.name == MANIFEST_COPY else config().out_dir
    return path, base


def _latest_manifest(runs: Path) -> Path | None:
    """The latest run's manifest, None when no run is recorded; a latest run whose manifest is
    gone is an error naming it, not a project without runs."""
    run_id = latest_run(runs)
    if run_id is None:
        return None
    manifest = runs / run_id / MANIFEST
    if not manifest.is_file():
        raise UsageError(
            f"the latest run's manifest {manifest} is missing",
            hint="run `batchit build` to record the outputs again, or name another run's manifest",
        )
    return manifest


def _trusted(paths: list[str]) -> list[TrustedKey]:
    if paths:
        return [load_public_key(Path(p)) for p in paths]
    own = keys_dir(project_root() / STATE_DIR) / PUBLIC_NAME
    if not own.is_file():
        raise UsageError(
            f"no public key to verify with: {own.relative_to(project_root())} does not exist",
            hint="pass the signer's public key with --key PUBKEY",
        )
    return [load_public_key(own)]


def reconcile(args: argparse.Namespace) -> int:
    """`batchit reconcile [--json]`: missing, orphaned and modified outputs (exit 1), duplicates."""
    from batchit.clean import produced_outputs
    from batchit.record.reconcile import reconcile as compare

    config = _config(args)
    manifest_path = _latest_manifest(config.state_dir / "runs")
    manifest = _manifest_outputs(manifest_path) if manifest_path else None
    result = compare(config.out_dir, produced_outputs(config, OperatorRegistry.default()), manifest)
    if args.json:
        print_json(result.as_json())
        return result.exit_code
    against = f"run {result.manifest_run}" if result.manifest_run else "no manifest"
    print(f"reconcile: sources vs {against} vs {config.out}/")
    for kind, findings in (
        ("missing", result.missing),
        ("orphan", result.orphans),
        ("modified", result.modified),
    ):
        for finding in findings:
            print(f"  {kind}: {config.out}/{one_line(finding.path)}: {finding.detail}")
    for digest, paths in result.duplicates:
        print(f"  same content ({digest[:16]}...): {', '.join(f'{config.out}/{one_line(p)}' for p in paths)}")
    counts = f"{len(result.missing)} missing, {len(result.orphans)} orphaned, {len(result.modified)} modified"
    print(
        f"reconcile: {'FAILED' if result.exit_code else 'ok'}: {counts}, {len(result.duplicates)} duplicated"
    )
    return result.exit_code


def _manifest_outputs(path: Path) -> dict[str, Any]:
    """The manifest at `path`, checked to be one whose outputs `reconcile` can compare."""
    document = read_json_object(path) or {}
    outputs = document.get("outputs")
    if (
        not isinstance(document.get("run_id"), str)
        or not isinstance(outputs, list)
        or not all(isinstance(entry, dict) and isinstance(entry.get("path"), str) for entry in outputs)
    ):
        raise UsageError(
            f"{path} is not a batchit manifest (damaged, or not JSON)",
            hint="`batchit verify` says what is wrong with it; `batchit build` records the outputs again",
        )
    return document


def runs(args: argparse.Namespace) -> int:
    """`batchit runs [--json]`: the runs still kept, oldest first."""
    from batchit.record.runs import list_runs

    found = list_runs(project_root() / STATE_DIR / "runs")
    if args.json:
        print_json([r.as_json() for r in found])
        return 0
    names = ("built", "restored", "up_to_date", "failed", "quarantined", "deferred", "pruned")
    print(
        f"{'run':<28} {'status':<12}"
        + "".join(f"{n.replace('_', ' '):>12}" for n in names)
        + f"{'seconds':>10}"
    )
    for run in found:
        counts = "".join(f"{run.summary.get(n, 0):>12}" for n in names)
        seconds = "" if run.seconds is None else f"{run.seconds:.2f}"
        print(f"{run.run_id:<28} {run.status:<12}{counts}{seconds:>10}")
    print(f"runs: {len(found)} kept")
    return 0


def report(args: argparse.Namespace) -> int:
    """`batchit report [RUN_ID]`: render the run's report again and print its path."""
    from batchit.record.report import write_report
    from batchit.record.rundata import RUN_FILE
    from batchit.record.runs import find_run

    run_dir = find_run(project_root() / STATE_DIR / "runs", args.run_id)
    if not (run_dir / RUN_FILE).is_file():
        raise _no_record(run_dir)
    print(write_report(run_dir))
    return 0


def _no_record(run_dir: Path) -> UsageError:
    """Why a run folder without its record (`run.json`) has no report: its run is still going (a
    doit run before `_record`), or it stopped before writing it (killed, or stopped by an error;
    the next build removes the folder), and where what it did so far is logged."""
    from batchit.record.events import EVENTS_FILE

    if in_progress(run_dir):
        why = "it is still running; its report is written when it ends"
    else:
        why = "it stopped before writing it (it was killed, or stopped by an error)"
    events = run_dir / EVENTS_FILE
    logged = (
        f"what it did is logged in {STATE_DIR}/runs/{run_dir.name}/{EVENTS_FILE}; "
        if events.is_file()
        else ""
    )
    return UsageError(
        f"run {run_dir.name} has no record: {why}",
        hint=logged + "`batchit runs` lists the runs with a report",
    )


def gc(args: argparse.Namespace) -> int:
    """`batchit gc`: apply `runs.keep` and `cache.max_size` now."""
    from batchit.record.runs import collect_garbage

    done = collect_garbage(_config(args))
    cache = f"{done.cache_entries} cache entries ({done.cache_bytes} bytes)"
    litter = f", and {done.litter} file(s) killed runs left" if done.litter else ""
    print(f"gc: removed {len(done.runs)} run record(s) and {cache}{litter}")
    return 0


def audit(args: argparse.Namespace) -> int:
    """`batchit audit verify`: check the audit log's chain against the head in the state store, and
    name a run that a killed build recorded without its entry (the chain holds; the entry is added by
    the next command that takes the project lock)."""
    from batchit.record.audit import audit_head, unsettled_audit, verify_audit
    from batchit.record.runs import unaudited_run
    from batchit.state.store import StateStore

    state_dir = project_root() / STATE_DIR
    store = StateStore.open_readonly(state_dir / "state.db")
    head, unsettled = (audit_head(store), unsettled_audit(state_dir, store)) if store else (None, b"")
    if store:
        store.close()
    missed = unaudited_run(state_dir, head) if store else None
    check = verify_audit(state_dir, head, unsettled)
    if check.broken is not None:
        print(f"audit: BROKEN at line {check.broken.line}: {check.broken.reason}")
    else:
        print(f"audit: ok: {check.entries} entries, head {head or 'none'}")
    if unsettled:
        written_later = len(unsettled.splitlines())
        print(
            f"  {written_later} of them committed by a command that was stopped before writing "
            "them to the log; the next command that records an entry writes them"
        )
    if missed is not None:
        print(
            f"  run {missed} is recorded but has no entry in the log: the build that recorded it "
            "stopped before writing it (it was killed, or failed to write its record); the next "
            "build (or clean, gc, quarantine release) adds it"
        )
    return check.exit_code
