"""Run alerts (SPEC section 6): POST a run's summary to `alerts.webhook`.

The request carries `Idempotency-Key: <run id>` so a receiver can drop duplicates of a retried
delivery. Delivery is retried with backoff for at most 30 s (after a connection error, a 429 or a
5xx, never waiting less than the answer's Retry-After); an alert that cannot be delivered is
reported to the caller and never changes the build's exit code.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchit.execute.retry import retry_after_seconds
from batchit.model import Alerts, Config

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
    """POST `payload` as JSON; return None when delivered, else why not (after retrying to `deadline`)."""
    import httpx

    headers = {"Idempotency-Key": run_id, "User-Agent": "batchit"}
    give_up = time.monotonic() + deadline
    attempt = 0
    problem = "not attempted"
    while True:
        attempt += 1
        remaining = give_up - time.monotonic()
        try:
            response = httpx.post(
                webhook, json=payload, headers=headers, timeout=min(10.0, max(remaining, 0.1))
            )
            if response.status_code < 300:
                return None
            problem = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                return problem  # refused or sent elsewhere (3xx): retrying cannot help
            floor = retry_after_seconds(response.headers.get("Retry-After")) or 0.0
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            floor = 0.0
        jitter = random.uniform(0, min(5.0, 0.25 * 2**attempt))  # noqa: S311 - jitter, not crypto
        pause = max(jitter, floor)
        if time.monotonic() + pause >= give_up:
            return f"{problem} (gave up after {attempt} attempts)"
        time.sleep(pause)
