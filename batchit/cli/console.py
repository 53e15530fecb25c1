"""What a build shows a person or a machine: a progress bar, failure lines, JSON events, a summary.

Progress goes to stderr and only on a terminal; `--log-format json` makes every stderr line one JSON
object, so CI logs can be parsed.
"""

from __future__ import annotations

import json
import sys
from types import TracebackType
from typing import Any, TextIO

from batchit.cli.streams import escaped_controls
from batchit.engine import BuildOutcome, Event


class Console:
    """Receives the engine's events and renders them for the chosen output format."""

    def __init__(
        self, *, log_format: str = "text", progress: bool = True, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.json = log_format == "json"
        self.show_progress = progress and not self.json and self.stream.isatty()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Console:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def emit(self, event: Event) -> None:
        """Handle one engine event."""
        if self.json:
            self.stream.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
            self.stream.flush()
            return
        kind = event.get("event")
        if kind == "plan" and self.show_progress and event["total"]:
            self._start_progress(int(event["total"]))
        elif kind == "job":
            if self._task is not None:
                self._progress.advance(self._task)
            if event["status"] in ("failed", "quarantined"):  # the quarantine's warning follows
                self.error(f"FAILED {event['rule']}: {event['output']}\n  {event['message']}")
            elif event["status"] == "deferred":  # the next build tries it again
                self.error(f"deferred {event['rule']}: {event['output']}\n  {event['message']}")
        elif kind == "warning":
            self.error(f"warning: {event['message']}")

    def error(self, text: str) -> None:
        """Print a line for a person, above the progress bar when there is one; control characters
        in it (a command's stderr quoted in a failure) are shown escaped, not sent to the terminal."""
        text = escaped_controls(text, keep="\n\t")
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _start_progress(self, total: int) -> None:
        from rich.console import Console as RichConsole
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("building"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=RichConsole(file=self.stream),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("build", total=total)

    def summary(self, outcome: BuildOutcome, out: str, sample_state: str | None = None) -> None:
        """The one-screen end-of-build summary; `sample_state` is the state folder of a sample built
        into a folder of its own, whose quarantine the `quarantine` commands do not see."""
        counts = outcome.counts
        if self.json:
            self.emit(
                {
                    "event": "summary",
                    "run_id": outcome.run_id,
                    "seconds": round(outcome.seconds, 3),
                    "manifest": str(outcome.manifest) if outcome.manifest else None,
                    "report": str(outcome.record.report) if outcome.record else None,
                    "key_id": outcome.record.key_id if outcome.record else None,
                    **counts,
                }
            )
            return
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        parts = [
            f"{counts[k]} {k.replace('_', ' ')}"
            for k in ("built", "restored", "up_to_date", "failed", "quarantined", "deferred", "pruned")
            if counts.get(k)
        ]
        if outcome.unfinished:  # a stop signal, or --fail-fast, left them unrun
            done = "finished" if outcome.interrupted else "run"
            parts.append(f"{outcome.unfinished} not {done} (the next build runs them)")
        status = "INTERRUPTED" if outcome.interrupted else "FAILED" if outcome.exit_code else "ok"
        print(f"batchit: {status}: {', '.join(parts) or 'nothing to do'} in {outcome.seconds:.2f}s")
        if outcome.manifest is not None:
            print(f"  outputs: {out}/   manifest: {outcome.manifest}")
        if outcome.record is not None:
            print(f"  report: {outcome.record.report}   key id: {outcome.record.key_id}")
            if outcome.record.key_created:
                print("  created a signing key (.batchit/keys/); verifiers need .batchit/keys/batchit.pub")
        for job, result in outcome.failures[:10]:
            first_line = escaped_controls(result.message.splitlines()[0])
            print(f"  failed: {job.rule}: {out}/{job.output}: {result.error_class}: {first_line}")
        if len(outcome.failures) > 10:
            print(f"  ... and {len(outcome.failures) - 10} more failures (see the manifest)")
        for reason in outcome.strict_failures:
            print(f"  --strict fails the build: {reason}")
        if outcome.quarantined_inputs and sample_state is not None:
            print(
                f"  {outcome.quarantined_inputs} input(s) stay quarantined in this sample and exit 1 until "
                f"they change, or until you remove {sample_state}/ (the sample's own state)"
            )
        elif outcome.quarantined_inputs:
            print(
                f"  {outcome.quarantined_inputs} input(s) stay quarantined and exit 1 until they change or "
                "are released: `batchit quarantine list`"
            )
