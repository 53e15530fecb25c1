"""A run's `report.html`: one self-contained page rendered with Jinja2 from `templates/report.html.j2`.

The page needs no network and no JavaScript: CSS is inline, charts are inline SVG whose geometry is
computed here (fractions of the largest value), and a Content-Security-Policy forbids any request.
It is rendered from the run's `run.json` plus the summaries of the runs before it (the trend), so
`batchit report RUN_ID` can render it again at any time.

Compiling the template takes ~25 ms, a good part of a no-op build, so the compiled template is kept
in Jinja2's per-user bytecode cache (a directory in the system's temp dir that only the user may
use); Jinja2 recompiles when the template's source, Jinja2 or Python changes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined, UndefinedError
from jinja2.bccache import Bucket

from batchit.errors import UsageError
from batchit.fsutil import atomic_write_text
from batchit.record.rundata import RUN_FILE, STAGES
from batchit.record.runs import RunSummary, list_runs, read_json_object
from batchit.resources import bundled_dir

REPORT_FILE = "report.html"
TEMPLATE = "report.html.j2"
TREND_RUNS = 20
OUTCOMES = ("built", "restored", "up_to_date", "failed", "quarantined", "deferred")
"""The counts a trend column stacks, bottom to top."""


@dataclass(frozen=True)
class Bar:
    """One bar of a horizontal bar chart: its label, the value's text and its length (0..1)."""

    label: str
    text: str
    fraction: float


@dataclass(frozen=True)
class Column:
    """One run in the trend chart: stacked segments (outcome, fraction of the tallest run, count)."""

    run_id: str
    status: str
    seconds: str
    segments: tuple[tuple[str, float, int], ...]
    current: bool


def bars(items: list[tuple[str, float]], unit: str = "s") -> list[Bar]:
    """Bars for (label, value) pairs, scaled so the largest value spans the chart."""
    top = max((value for _, value in items), default=0.0) or 1.0
    return [Bar(label, f"{value:.3f} {unit}", value / top) for label, value in items]


def trend_columns(runs: list[RunSummary], current: str) -> list[Column]:
    """Stacked columns of job outcomes for recent runs, scaled to the run with the most jobs."""
    totals = [sum(r.summary.get(k, 0) for k in OUTCOMES) for r in runs]
    top = max(totals, default=0) or 1
    return [
        Column(
            run.run_id,
            run.status,
            "" if run.seconds is None else f"{run.seconds:.2f}s",
            tuple((k, run.summary.get(k, 0) / top, run.summary.get(k, 0)) for k in OUTCOMES),
            run.run_id == current,
        )
        for run in runs
    ]


def _size(value: float) -> str:
    """Bytes in SI units (1 kB = 1000 bytes, as sizes in `batchit.yaml` count)."""
    units = ("B", "kB", "MB", "GB")
    power = 0
    while value >= 1000 and power < len(units) - 1:
        value /= 1000
        power += 1
    return f"{value:.0f} B" if power == 0 else f"{value:.1f} {units[power]}"


class _CompiledTemplates(FileSystemBytecodeCache):
    """Jinja2's per-user cache of compiled templates; one that cannot be written is only a miss."""

    def dump_bytecode(self, bucket: Bucket) -> None:
        """Store the compiled template, unless the cache directory refuses it."""
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


@cache
def _environment() -> Environment:
    """The report's Jinja2 environment, with the compiled-template cache when the user has one."""
    try:
        compiled: _CompiledTemplates | None = _CompiledTemplates()
    except (OSError, RuntimeError):  # no safe per-user directory: compile every time
        compiled = None
    env = Environment(
        loader=FileSystemLoader(bundled_dir("templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        bytecode_cache=compiled,
    )
    env.filters["size"] = _size
    return env


def render_report(run: dict[str, Any], trend: list[RunSummary]) -> str:
    """The report's HTML for a run document (`run.json`) and the runs up to it."""
    env = _environment()
    rules = sorted(run["rules"], key=lambda r: -float(r["seconds"]))
    charts = {
        "rules": bars([(r["rule"], float(r["seconds"])) for r in rules]),
        "stages": bars([(stage, float(run["stages"].get(stage, 0.0))) for stage in STAGES]),
        "trend": trend_columns(trend, run["run_id"]),
    }
    return env.get_template(TEMPLATE).render(run=run, rules=rules, charts=charts, outcomes=OUTCOMES)


def write_report(run_dir: Path) -> Path:
    """Render a recorded run's report from its `run.json` and the runs before it; return its path.

    A `run.json` that is missing or damaged (not a JSON object, or without what the report shows)
    is a UsageError naming the run: its manifest may still verify, but it has no report to render.
    """
    run = read_json_object(run_dir / RUN_FILE)
    if run is None:
        raise _damaged(run_dir, "missing, or not a JSON object")
    trend = [r for r in list_runs(run_dir.parent) if r.run_id <= run_dir.name][-TREND_RUNS:]
    try:
        html = render_report(run, trend)
    except (KeyError, TypeError, ValueError, AttributeError, UndefinedError) as exc:  # data, not template
        raise _damaged(run_dir, f"{type(exc).__name__}: {exc}") from exc
    path = run_dir / REPORT_FILE
    atomic_write_text(path, html)
    return path


def _damaged(run_dir: Path, why: str) -> UsageError:
    return UsageError(
        f"run {run_dir.name} has no report to render: its {RUN_FILE} is damaged ({why})",
        hint="pick another run (`batchit runs` lists them)",
    )
