"""Run alerts (SPEC section 6): POST a run's summary to `alerts.webhook`.

The request carries `Idempotency-Key: <run id>` so a receiver can drop duplicates of a retried
delivery. Delivery is retried with backoff for at most 30 s (after a connection error, a 429 or a
5xx, never waiting less than the answer's Retry-After), a deadline on the whole delivery however
slowly the webhook answers; an alert that cannot be delivered is reported to the caller and never
changes the build's exit code.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchit.execute.retry import retry_after_seconds
from batchit.model import Alerts, Config

if TYPE_CHECKING:
    import httpx  # imported when an alert is sent: most runs send none

DEADLINE = 30.0
"""Seconds spent trying to deliver one alert, retries included."""


def should_alert(alerts: Alerts | None, failed: bool) -> bool:
    """True when the config asks for an alert about a run with (or, `when: always`, without) failures."""
    return alerts is not None and (failed or alerts.when == "always")


def alert_failure(
    rule: str, inputs: tuple[str, ...], output: str, error_class: str, message: str, quarantined: bool
) -> dict[str, Any]:
    """One entry of an alert's `failures`: the job's rule, its input (None for an aggregate), its
    output (relative to `out`), the error and whether its input was quarantined."""
    return {
        "rule": rule,
        "input": inputs[0] if len(inputs) == 1 else None,
        "output": output,
        "class": error_class,
        "message": message,
        "quarantined": quarantined,
    }


def alert(
    config: Config,
    run_id: str,
    status: str,
    summary: dict[str, int],
    failures: list[dict[str, Any]],
    manifest: str | None,
    warn: Callable[[str], None],
) -> None:
    """POST a run's summary to `alerts.webhook` when the config asks for one about this run (a run
    whose status is not ok, or every run with `when: always`); a failed delivery is only a warning.

    `failures` are `alert_failure` entries; the first 100 are sent."""
    if config.alerts is None or not should_alert(config.alerts, status != "ok"):
        return
    payload = {
        "run_id": run_id,
        "status": status,
        "summary": summary,
        "failures": failures[:100],
        "manifest": manifest,
        "report": str(Path(manifest).with_name("report.html")) if manifest else None,
    }
    problem = send_alert(config.alerts.webhook, run_id, payload)
    if problem is not None:
        warn(f"alert to {shown_webhook(config.alerts.webhook)} not delivered: {problem}")


def shown_webhook(webhook: str) -> str:
    """The webhook as a warning names it: its scheme and host only. Many services put the secret
    that lets anyone post into the URL's path (a chat's incoming webhook) or its user part, and a
    warning ends up in CI logs that others read."""
    parts = urllib.parse.urlsplit(webhook)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


def send_alert(webhook: str, run_id: str, payload: dict[str, Any], deadline: float = DEADLINE) -> str | None:
    """POST `payload` as JSON; return None when delivered, else why not (after retrying to `deadline`).

    The deadline bounds the whole delivery, httpx's import and client included. httpx's timeouts
    bound each phase of a request (connecting, each read), never a whole one: a server that sends
    its answer a byte at a time would hold the build for as long as it trickles. So the attempts run
    in a thread of their own, which this one waits for until the deadline and then leaves behind
    (a daemon: it makes no further attempt, and its request ends with its own timeouts)."""
    delivery = _Delivery(webhook, run_id, payload, time.monotonic() + deadline)
    thread = threading.Thread(target=delivery.run, name="batchit-alert", daemon=True)
    thread.start()
    thread.join(max(0.0, delivery.give_up - time.monotonic()))
    late = f"{delivery.problem} (gave up after {delivery.attempts} attempts, {deadline:g} s)"
    delivery.settle(late)  # unless it ended meanwhile
    delivery.stop.set()
    return delivery.outcome


@dataclass
class _Delivery:
    """One alert's attempts, made by the thread that calls `run`, until `give_up` (monotonic)."""

    webhook: str
    run_id: str
    payload: dict[str, Any]
    give_up: float
    attempts: int = 0
    problem: str = "no answer"
    """Why the last attempt failed (while one is under way: no answer yet)."""
    outcome: str | None = None
    """None when delivered, else why not; settled once `over`."""
    over: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    """Set once the caller stopped waiting: no further attempt starts."""

    def run(self) -> None:
        import httpx

        with httpx.Client(headers={"Idempotency-Key": self.run_id, "User-Agent": "batchit"}) as client:
            self.settle(self._attempts(client))

    def _attempts(self, client: httpx.Client) -> str | None:
        """Attempt the delivery until it succeeds, is refused, or the next attempt would start
        past the deadline: None when delivered, else why not."""
        import httpx

        while not self.stop.is_set():
            self.attempts += 1
            timeout = min(10.0, max(self.give_up - time.monotonic(), 0.1))
            try:
                response = client.post(self.webhook, json=self.payload, timeout=timeout)
                if response.status_code < 300:
                    return None
                self.problem = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    return self.problem  # refused or sent elsewhere (3xx): retrying cannot help
                floor = retry_after_seconds(response.headers.get("Retry-After")) or 0.0
            except httpx.HTTPError as exc:
                self.problem = f"{type(exc).__name__}: {exc}"
                floor = 0.0
            jitter = random.uniform(0, min(5.0, 0.25 * 2**self.attempts))  # noqa: S311 - jitter, not crypto
            pause = max(jitter, floor)
            if time.monotonic() + pause >= self.give_up:
                break
            self.stop.wait(pause)
        return f"{self.problem} (gave up after {self.attempts} attempts)"

    def settle(self, outcome: str | None) -> None:
        """Say how the delivery ended, unless that was said first (by the other thread)."""
        with self.lock:
            if not self.over:
                self.over, self.outcome = True, outcome
