"""The command handlers: each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse

from batchit.cli import console, print_json, project_root
from batchit.config import load_config, sample_into
from batchit.engine import BuildOptions, BuildOutcome, plan_build, run_build
from batchit.errors import OutputConflictError, UsageError
from batchit.model import STATE_DIR, Config
from batchit.operators.registry import OperatorRegistry
from batchit.plan.sample import parse_sample


def _flags(pairs: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--flag {pair!r} is not NAME=VALUE", hint="write it as --flag watermark=false")
        flags[name] = value
    return flags


def check_command_line(args: argparse.Namespace) -> None:
    """Raise the UsageError of a build flag that is wrong whatever the project holds (`--flag` not
    NAME=VALUE, `--sample` no size, `--out` without `--sample`): `watch` refuses it before it
    waits for changes, none of which could fix it."""
    _flags(getattr(args, "flag", []))
    if getattr(args, "sample", None) is not None:
        parse_sample(args.sample)
    if getattr(args, "sample_out", None) is not None and args.sample is None:
        raise UsageError("--out DIR is where a sample is built", hint="add --sample (--sample 5%)")


def load(args: argparse.Namespace) -> tuple[Config, OperatorRegistry]:
    """The config the command line names (`-f`, `--flag`), with the operator registry it uses."""
    check_command_line(args)
    registry = OperatorRegistry.default()
    config = load_config(project_root(), args.file, _flags(getattr(args, "flag", [])), registry)
    into = getattr(args, "sample_out", None)
    if into is not None:
        config = sample_into(config, into)
    return config, registry


def _options(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions(
        rules=tuple(args.rules),
        jobs=args.jobs,
        executor=args.executor[0],
        dask_address=args.executor[1],
        fail_fast=args.fail_fast,
        dry_run=args.dry_run,
        force=args.force,
        use_cache=args.use_cache,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        only_failed=args.only_failed,
        strict=args.strict,
        seed=args.seed,
        sample=parse_sample(args.sample) if args.sample is not None else None,
        sample_apart=args.sample_out is not None,
        second_signal_exit=args.second_signal_exit,
    )


def build(args: argparse.Namespace) -> int:
    """`batchit build`: run every stale job, commit, prune, write the run's manifest."""
    if args.dry_run:
        return plan(args)
    return build_loaded(args, *load(args))


def build_loaded(args: argparse.Namespace, config: Config, registry: OperatorRegistry) -> int:
    """`batchit build` of a config already loaded (`batchit watch` keeps it to know `out`)."""
    with console.Console(log_format=args.log_format, progress=args.progress) as screen:
        outcome = run_build(config, registry, _options(args), screen.emit)
        screen.summary(outcome, config.out, config.state if config.state != STATE_DIR else None)
    return outcome.exit_code


def plan(args: argparse.Namespace) -> int:
    """`batchit plan`: what a build would do and why, changing nothing."""
    config, registry = load(args)
    with console.Console(log_format=args.log_format, progress=False) as screen:
        outcome = plan_build(config, registry, _options(args), with_prunes=True, emit=screen.emit)
    if getattr(args, "json", False):
        print_json(_plan_json(outcome, config.out))
    else:
        _print_plan(outcome, config.out)
    return 0


def _plan_json(outcome: BuildOutcome, out: str) -> dict[str, object]:
    return {
        "summary": {**outcome.counts, "prune": len(outcome.pruned)},
        "prune": [f"{out}/{path}" for path in outcome.pruned],
        "jobs": [
            {
                "rule": j.rule,
                "output": f"{out}/{j.output}",
                "action": j.action,
                "reasons": j.reasons,
                "inputs": list(j.inputs),
                "action_key": j.key,
            }
            for j in outcome.jobs
        ],
    }


def _print_plan(outcome: BuildOutcome, out: str) -> None:
    by_rule: dict[str, list[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for job in outcome.jobs:
        tally = counts.setdefault(job.rule, {})
        tally[job.action] = tally.get(job.action, 0) + 1
        if job.action != "skip":
            why = "; ".join(job.reasons)
            by_rule.setdefault(job.rule, []).append(f"  {job.action:<8} {out}/{job.output}  ({why})")
    for rule, tally in counts.items():
        words = {
            "run": "to run",
            "restore": "to restore from cache",
            "skip": "up to date",
            "refuse": "refused (the build stops)",
        }
        print(f"{rule}: " + ", ".join(f"{n} {words.get(a, a)}" for a, n in sorted(tally.items())))
        for line in by_rule.get(rule, []):
            print(line)
    for path in outcome.pruned:
        print(f"  prune    {out}/{path}  (no current job produces it)")
    todo = outcome.counts.get("run", 0) + outcome.counts.get("restore", 0)
    line = f"plan: {todo} of {len(outcome.jobs)} jobs to do" if outcome.jobs else "plan: no jobs"
    line += f", {len(outcome.pruned)} output(s) to prune" if outcome.pruned else ""
    refused = outcome.counts.get("refuse", 0)
    if refused:
        line += f"; {refused} refused: a build stops (exit 2), as each one's reason says"
    print(line)


def explain(args: argparse.Namespace) -> int:
    """`batchit explain PATH`: why an output is or is not up to date."""
    from batchit.explain import explain as explain_output

    config, registry = load(args)
    result = explain_output(config, registry, args.path)
    if args.json:
        print_json(result.as_json())
        return 0
    verdict = "up to date" if result.action == "skip" else f"stale ({result.action})"
    print(f"{result.output}: {verdict}")
    print(f"  rule {result.rule}, job {result.job_id}")
    for reason in result.reasons:
        print(f"  - {reason}")
    unknown = (
        "(none: no current job writes this path)"
        if result.action in ("prune", "kept")
        else "(not known until upstream jobs run)"
    )
    print(f"  action key {result.key or unknown}")
    if result.recorded_key and result.recorded_key != result.key:
        print(f"  recorded   {result.recorded_key}")
    return 0


def clean(args: argparse.Namespace) -> int:
    """`batchit clean [--orphans] [--dry-run]`: remove outputs."""
    from batchit.clean import clean as clean_outputs
    from batchit.fsutil import shown_path

    config, registry = load(args)
    cleaned = clean_outputs(config, registry, orphans=args.orphans, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in cleaned.removed:
        print(f"{verb} {config.out}/{shown_path(path)}")
    print(f"clean: {verb} {len(cleaned.removed)} file(s)")
    if cleaned.kept:
        listed = "\n  ".join(f"{config.out}/{shown_path(path)}: {why}" for path, why in cleaned.kept.items())
        raise OutputConflictError(
            f"clean {'would leave' if args.dry_run else 'left'} {len(cleaned.kept)} path(s) that may not "
            f"hold a file batchit wrote:\n  {listed}",
            hint="batchit removes only regular files it wrote inside `out`; deal with these yourself",
        )
    return 0


def quarantine_list(args: argparse.Namespace) -> int:
    """`batchit quarantine list`: inputs set aside, with the reason."""
    from batchit.record.quarantine import quarantined
    from batchit.state.store import StateStore

    config, _ = load(args)
    store = StateStore.open_readonly(config.state_dir / "state.db")
    held = quarantined(store)
    if store:
        store.close()
    if args.json:
        print_json(
            [
                {
                    "rule": f.rule,
                    "input": f.input,
                    "class": f.error_class,
                    "message": f.message,
                    "quarantine": f.quarantine,
                    "run_id": f.run_id,
                }
                for f in held
            ]
        )
        return 0
    for failure in held:
        print(f"{failure.input}  ({failure.rule}, run {failure.run_id})")
        print(f"  {failure.error_class}: {failure.message.splitlines()[0] if failure.message else ''}")
        print(f"  copy: {failure.quarantine}")
    print(f"quarantine: {len(held)} input(s)")
    return 0


def quarantine_release(args: argparse.Namespace) -> int:
    """`batchit quarantine release [PATH]`: let quarantined inputs be built again."""
    from batchit.record.quarantine import releasable, release
    from batchit.record.runs import audit_unaudited_run
    from batchit.state.lock import ProjectLock
    from batchit.state.store import StateStore

    config, _ = load(args)
    released = []
    if not (config.state_dir / "state.db").exists():  # never built: nothing is quarantined
        if args.path is not None:  # as for any path that is not quarantined
            raise UsageError(f"{args.path} is not quarantined: this project has never been built")
    else:
        if args.path is not None:  # refuse before the lock, whose taking writes our pid into its file
            held = StateStore.open_readonly(config.state_dir / "state.db")
            try:
                releasable(config.root, held, args.path)
            finally:
                if held:
                    held.close()
        with ProjectLock(config.state_dir / "lock"):
            store = StateStore.open(config.state_dir / "state.db")
            try:
                fsync = config.durability == "fsync"
                audit_unaudited_run(config.state_dir, store, fsync=fsync)  # a killed build's run comes first
                released = release(config.root, config.state_dir, store, args.path)
            finally:
                store.close()
    for failure in released:
        print(f"released {failure.input} ({failure.rule})")
    print(f"quarantine: released {len(released)} input(s); the next build tries them again")
    return 0


def replay(args: argparse.Namespace) -> int:
    """`batchit replay RUN_ID [--failed]`: re-run that run's jobs on the current files."""
    from batchit.replay import replay_run

    config, registry = load(args)
    with console.Console(log_format=args.log_format, progress=args.progress) as screen:
        outcome = replay_run(config, registry, args.run_id, failed_only=args.failed, emit=screen.emit)
        screen.summary(outcome, config.out)
    return outcome.exit_code
