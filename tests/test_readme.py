"""The README's Quick start is the contract with a new user: its commands must stay the ones CI runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

MAIN_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/batchit -C site build"
SITE_PAGES = {
    "index.html",
    "about.html",
    "guide/incremental.html",
    "guide/rules.html",
    "sitemap.html",
    "gallery.html",
}
"""The demo site's HTML outputs: four pages, the aggregate listing and the photo gallery."""
SITE_OUTPUTS = len(SITE_PAGES) + 1 + 6 * 3 + 1
"""Every output: the pages, one stylesheet, six photos in three widths, the CDN manifest."""
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"


def quick_start_commands() -> list[str]:
    """The command lines of the fenced `sh` blocks in the README's "Quick start" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_quick_start_has_exactly_the_main_and_test_commands() -> None:
    assert quick_start_commands() == [MAIN_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    assert TEST_COMMAND in CI_RUN.read_text(encoding="utf-8")


def test_ci_script_fails_on_errors() -> None:
    assert "set -euo pipefail" in CI_RUN.read_text(encoding="utf-8")


def test_demo_site_config_is_where_the_main_command_points() -> None:
    assert (ROOT / "site" / "batchit.yaml").is_file()


def build_site(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the README's main command's last part, `batchit -C DIR build`, through `python -m batchit`."""
    return subprocess.run(
        [sys.executable, "-m", "batchit", "-C", str(root), "build", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def latest_summary(root: Path) -> dict[str, int]:
    """The `summary` counts of the latest run's manifest."""
    runs = root / ".batchit" / "runs"
    latest = (runs / "LATEST").read_text(encoding="utf-8").strip()
    manifest = json.loads((runs / latest / "manifest.json").read_text(encoding="utf-8"))
    return dict(manifest["summary"])


def test_demo_site_builds_and_a_second_build_does_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(ROOT / "site", site, ignore=shutil.ignore_patterns("_build", ".batchit"))
    out = site / "_build"

    first = build_site(site)
    assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
    pages = {path.relative_to(out).as_posix() for path in out.rglob("*.html")}
    assert pages == SITE_PAGES, sorted(pages)
    assert (out / "assets" / "style.css").read_bytes() == (site / "assets" / "style.css").read_bytes()
    assert 'href="../assets/style.css"' in (out / "guide" / "rules.html").read_text("utf-8")

    second = build_site(site)
    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}"
    summary = latest_summary(site)
    assert summary["built"] == 0, summary
    assert summary["up_to_date"] == SITE_OUTPUTS, summary
