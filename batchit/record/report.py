"""A run's `report.html`: one self-contained page, `templates/report.html` with its blanks filled in.

The page needs no network and no JavaScript: CSS is inline, charts are inline SVG whose geometry is
computed here (fractions of the largest value), and a Content-Security-Policy forbids any request.
It is rendered from the run's `run.json` plus the summaries of the runs before it (the trend), so
`batchit report RUN_ID` can render it again at any time.

The template is a `string.Template`: the static page (markup and CSS) with a `$name` for each
dynamic part, which the functions here render, every value escaped. Every build writes a report,
and a template engine would cost more to import than the rest of a no-op build's record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from batchit.fsutil import atomic_write_text
from batchit.record.rundata import RUN_FILE, STAGES
from batchit.record.runs import RunSummary, list_runs
from batchit.resources import bundled_dir

REPORT_FILE = "report.html"
TEMPLATE = "report.html"
TREND_RUNS = 20
OUTCOMES = ("built", "restored", "up_to_date", "failed", "quarantined", "deferred")
"""The counts a trend column stacks, bottom to top."""
LABEL_WIDTH = 16
"""A bar's label longer than this (plus 5 characters of slack) is cut to fit, ending in an ellipsis."""

Row = Mapping[str, Any]
"""One row of a table in `run.json`."""
FAILURES = "<th>class</th><th>message</th><th>quarantine</th><th></th>"
SLOWEST = '<th>status</th><th class="num">seconds</th>'
REBUILT = "<th>status</th><th>reasons</th><th></th>"
"""The headers of the job tables' own columns (each starts with rule, output and input)."""


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


def render_report(run: dict[str, Any], trend: list[RunSummary]) -> str:
    """The report's HTML for a run document (`run.json`) and the runs up to it."""
    rules = sorted(run["rules"], key=lambda r: -float(r["seconds"]))
    rule_bars = bars([(r["rule"], float(r["seconds"])) for r in rules])
    stages = bars([(stage, float(run["stages"].get(stage, 0.0))) for stage in STAGES])
    columns = trend_columns(trend, run["run_id"])
    throughput = run["throughput"]
    shown = [*OUTCOMES, "pruned"]
    return _template().substitute(
        run_id=_e(run["run_id"]),
        status=_e(run["status"]),
        outcome_styles="".join(
            f".count-{n}, .seg-{n} {{ border-left-color: var(--{n}); fill: var(--{n}); }} " for n in OUTCOMES
        ),
        started=_e(run["started"]),
        finished=_e(run["finished"]),
        seconds=f"{run['seconds']:.2f}",
        jobs=_e(sum(r["jobs"] for r in run["rules"])),
        version=_e(run["batchit_version"]),
        key_id=_e(run["key_id"]),
        key_created=" (created for this run)" if run["key_created"] else "",
        counts="".join(
            f'  <div class="count count-{n}" data-count="{n}"><span class="n">{_e(run["summary"].get(n, 0))}'
            f'</span><span class="label">{_words(n)}</span></div>\n'
            for n in shown
        ),
        tp_jobs=_e(throughput["jobs"]),
        tp_jobs_per_second=f"{throughput['jobs_per_second']:.1f}",
        tp_bytes=_size(throughput["bytes"]),
        tp_bytes_per_second=_size(throughput["bytes_per_second"]),
        rules_chart=_bar_chart(rule_bars, "job seconds per rule")
        if rule_bars
        else '<p class="empty">No rules.</p>',
        stages_chart=_bar_chart(stages, "job seconds per stage"),
        outcome_headers="".join(f'<th class="num">{_words(n)}</th>' for n in OUTCOMES),
        rule_rows="".join(_rule_row(rule) for rule in rules),
        failures=_table(run, "failures", FAILURES, _failure_cells, "No failures."),
        slowest=_table(run, "slowest", SLOWEST, _slowest_cells, "No job ran.", note=False),
        rebuilt=_table(
            run, "rebuilt", REBUILT, _rebuilt_cells, "Nothing was rebuilt: every output was up to date."
        ),
        deferred=_table(run, "deferred", "<th>why</th>", _deferred_cells, "No deferred jobs."),
        retries=_retries(run),
        warnings=_warnings(run),
        trend_chart=_trend_chart(columns),
        legend="".join(
            f'<span><i class="seg-{n}" style="background: var(--{n})"></i>{_words(n)}</span>'
            for n in OUTCOMES
        ),
        trend_rows="".join(_trend_row(index, column) for index, column in enumerate(columns, start=1)),
        provenance=',\n  <a href="provenance.intoto.json">provenance.intoto.json</a>'
        if run["provenance"]
        else "",
        audit_head=_e(run["audit_head"] or "none"),
    )


def write_report(run_dir: Path) -> Path:
    """Render a recorded run's report from its `run.json` and the runs before it; return its path."""
    run = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    trend = [r for r in list_runs(run_dir.parent) if r.run_id <= run_dir.name][-TREND_RUNS:]
    path = run_dir / REPORT_FILE
    atomic_write_text(path, render_report(run, trend))
    return path


def _template() -> Template:
    """The page with its blanks; like any template engine, without the file's final newline."""
    text = (bundled_dir("templates") / TEMPLATE).read_text(encoding="utf-8")
    return Template(text.removesuffix("\n"))


def _e(value: object) -> str:
    """`value` as HTML text: `&`, `<`, `>` and both quotes escaped, as in text or an attribute."""
    return (
        str(value)
        .replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def _words(name: str) -> str:
    """An outcome's name as a label: `up_to_date` -> `up to date`."""
    return _e(name.replace("_", " "))


def _size(value: float) -> str:
    """Bytes in SI units (1 kB = 1000 bytes, as sizes in `batchit.yaml` count)."""
    units = ("B", "kB", "MB", "GB")
    power = 0
    while value >= 1000 and power < len(units) - 1:
        value /= 1000
        power += 1
    return f"{value:.0f} B" if power == 0 else f"{value:.1f} {units[power]}"


def _label(text: str) -> str:
    """A bar's label, cut to LABEL_WIDTH characters (ellipsis included) when it is much longer."""
    return text if len(text) <= LABEL_WIDTH + 5 else text[: LABEL_WIDTH - 1] + "…"


def _bar_chart(items: Iterable[Bar], label: str) -> str:
    """A horizontal bar chart as inline SVG, 26 pixels per bar."""
    items = list(items)
    height = 26 * len(items) + 8
    parts = [
        f'<svg class="bars" role="img" aria-label="{_e(label)}" viewBox="0 0 500 {height}" width="500" '
        f'height="{height}">\n'
    ]
    for index, bar in enumerate(items):
        y = 26 * index + 4
        parts.append(
            f'  <text x="104" y="{y + 15}" text-anchor="end" class="label">{_e(_label(bar.label))}</text>\n'
            f'  <rect x="112" y="{y + 3}" width="{max(290 * bar.fraction, 1):.1f}" height="16" rx="2" '
            'class="bar"/>\n'
            f'  <text x="{118 + 290 * bar.fraction:.1f}" y="{y + 15}" class="value">{_e(bar.text)}</text>\n'
        )
    return "".join(parts) + "</svg>"


def _rule_row(rule: Row) -> str:
    counts = "".join(f'<td class="num">{_e(rule["counts"].get(n, 0))}</td>' for n in OUTCOMES)
    return (
        f'<tr><td>{_e(rule["rule"])}</td><td class="num">{_e(rule["jobs"])}</td>{counts}'
        f'<td class="num">{rule["seconds"]:.3f}</td></tr>\n'
    )


def _table(
    run: Row, name: str, head: str, cells: Callable[[Row], str], empty: str, *, note: bool = True
) -> str:
    """The job table `name` of `run.json` (rule, output, input, then the columns `head` names and
    `cells` fills), or a line saying it is empty; with `note`, the count of rows left out under it."""
    rows = run[name]
    if not rows:
        return f'<p class="empty">{empty}</p>'
    body = "".join(f"<tr>{_job_cells(run, row)}{cells(row)}</tr>\n" for row in rows)
    table = (
        f"<table>\n<thead><tr><th>rule</th><th>output</th><th>input</th>{head}</tr></thead>\n"
        f"<tbody>\n{body}</tbody>\n</table>\n"
    )
    return table + _note(run, name) + "\n" if note else table


def _job_cells(run: Row, row: Row) -> str:
    return (
        f'<td>{_e(row["rule"])}</td><td class="path">{_e(run["out"])}/{_e(row["output"])}</td>'
        f'<td class="path">{_e(row["inputs"])}</td>'
    )


def _log_cell(row: Row) -> str:
    return f'<td><a href="{_e(row["log"])}">log</a></td>' if row["log"] else "<td></td>"


def _failure_cells(row: Row) -> str:
    return (
        f'<td><code>{_e(row["class"])}</code></td><td class="msg">{_e(row["message"])}</td>'
        f'<td class="path">{_e(row["quarantine"] or "")}</td>{_log_cell(row)}'
    )


def _slowest_cells(row: Row) -> str:
    return f'<td>{_e(row["status"])}</td><td class="num">{row["seconds"]:.3f}</td>'


def _rebuilt_cells(row: Row) -> str:
    reasons = "".join(f"<li>{_e(reason)}</li>" for reason in row["reasons"])
    return f'<td>{_e(row["status"])}</td><td><ul class="reasons">{reasons}</ul></td>{_log_cell(row)}'


def _deferred_cells(row: Row) -> str:
    return f'<td class="msg">{_e(row["message"])}</td>'


def _note(run: Row, name: str) -> str:
    """The line saying how many rows of table `name` `run.json` left out, if any."""
    left_out = run[f"{name}_left_out"]
    if not left_out:
        return ""
    return (
        f'<p class="note">{_e(left_out)} more row(s) left out; '
        "the manifest and events.jsonl hold them all.</p>\n"
    )


def _retries(run: Row) -> str:
    """The retries section; none at all for a run without retries (or recorded before they were)."""
    rows = run.get("retries")
    if not rows:
        return ""
    body = "".join(
        f'<tr><td>{_e(row["rule"])}</td><td class="path">{_e(row["output"])}</td>'
        f"<td>{_e(row['attempt'])}</td><td>{_e(row['delay'])}</td>"
        f'<td class="msg">{_e(row["message"])}</td></tr>\n'
        for row in rows
    )
    return (
        '<h2 id="retries">Retries</h2>\n<table>\n<thead><tr><th>rule</th><th>output</th>'
        "<th>failed attempt</th><th>wait (s)</th><th>error</th></tr></thead>\n"
        f"<tbody>\n{body}</tbody>\n</table>\n" + _note(run, "retries") + "\n"
    )


def _warnings(run: Row) -> str:
    """The warnings section; none at all for a run without warnings."""
    if not run["warnings"]:
        return ""
    items = "".join(f"<li>{_e(row['message'])}</li>" for row in run["warnings"])
    return f'<h2 id="warnings">Warnings</h2>\n<ul>{items}</ul>\n' + _note(run, "warnings") + "\n"


def _trend_chart(columns: list[Column]) -> str:
    """The recent runs as stacked columns of outcomes, the current one marked, up to its `</svg>`."""
    width = max(len(columns) * 34 + 40, 720)
    parts = [
        f'<svg class="trend" role="img" aria-label="job outcomes of recent runs" viewBox="0 0 {width} 170" '
        f'width="{width}" height="170">\n'
        f'  <line x1="30" y1="140" x2="{width - 6}" y2="140" stroke="#d0d7de"/>\n'
    ]
    for index, column in enumerate(columns):
        x = 40 + 34 * index
        top: float = 140
        for name, fraction, count in column.segments:
            if not count:
                continue
            height = max(fraction * 120, 1.5)
            top -= height
            parts.append(
                f'  <rect class="seg-{name}" x="{x}" y="{top:.1f}" width="22" height="{height:.1f}">'
                f"<title>{_e(column.run_id)}: {count} {_words(name)}</title></rect>\n"
            )
        parts.append(f'  <text x="{x + 11}" y="156" text-anchor="middle" class="tick">{index + 1}</text>\n')
        if column.current:
            parts.append(f'<text x="{x + 11}" y="{top - 4:.1f}" text-anchor="middle">▼</text>')
    return "".join(parts)


def _trend_row(index: int, column: Column) -> str:
    counts = "".join(f'<td class="num">{count}</td>' for _, _, count in column.segments)
    current = ' class="current"' if column.current else ""
    return (
        f'<tr{current}><td class="num">{index}</td><td><code>{_e(column.run_id)}</code></td>'
        f'<td>{_e(column.status)}</td>{counts}<td class="num">{_e(column.seconds)}</td></tr>\n'
    )
