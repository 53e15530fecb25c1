"""The report in a real browser: Debian's chromium driven by Playwright, with the network off.

The report must render without console errors, make no request at all (everything is inline), and
show the counts with JavaScript on and off. CI installs chromium (`.ci/run`), so the test runs there;
elsewhere it is skipped only when `/usr/bin/chromium` is missing. Playwright's own browser downloads
are never used (`executable_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import MARKDOWN_RULE, Project

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; CI installs it)",
    ),
]

PAGES = "version: 1\nout: _build\nrules:\n" + MARKDOWN_RULE


@pytest.fixture
def report(project: Project) -> Path:
    """The report of a run that built two pages and quarantined one undecodable input."""
    project.config(PAGES)
    project.write({"pages/a.md": "# A\n", "pages/b.md": "# B\n", "pages/bad.md": b"\xff\xfe broken"})
    project.build(expect=1)
    runs = project.root / ".batchit/runs"
    return runs / (runs / "LATEST").read_text().strip() / "report.html"


@pytest.mark.parametrize("javascript", [True, False], ids=["js-on", "js-off"])
def test_report_renders_offline_with_no_requests_and_no_console_errors(
    report: Path, javascript: bool
) -> None:
    from playwright.sync_api import Route, sync_playwright

    url = report.as_uri()
    requests: list[str] = []
    blocked: list[str] = []
    errors: list[str] = []

    def only_the_report(route: Route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context(
                java_script_enabled=javascript, viewport={"width": 1100, "height": 900}
            )
            page = context.new_page()
            page.route("**/*", only_the_report)
            page.on("request", lambda request: requests.append(request.url))
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url, wait_until="load")
            counts = {
                name: page.locator(f'[data-count="{name}"] .n').inner_text()
                for name in ("built", "up_to_date", "failed", "quarantined")
            }
            status = page.locator("#status").inner_text()
            failures_visible = page.get_by_text("not valid utf-8").first.is_visible()
            charts = page.locator("svg").count()
            context.close()
        finally:
            browser.close()
    assert errors == []
    assert blocked == []
    assert set(requests) <= {url}
    assert counts == {"built": "2", "up_to_date": "0", "failed": "0", "quarantined": "1"}
    assert status.lower() == "failed"
    assert failures_visible
    assert charts >= 3
