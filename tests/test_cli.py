"""The command-line contract (SPEC section 4): entry points, global flags, exit codes, output."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COPY_CONFIG, MARKDOWN_RULE, Project

PAGES = "version: 1\nrules:\n" + MARKDOWN_RULE


@pytest.fixture
def pages(project: Project) -> Project:
    """Two Markdown pages rendered to HTML fragments."""
    project.config(PAGES)
    project.write({"pages/a.md": "# A\n", "pages/b.md": "# B\n"})
    return project


def test_console_script_and_python_m_are_the_same_program(pages: Project) -> None:
    script = Path(sys.executable).parent / "batchit"
    via_script = subprocess.run([script, "plan"], cwd=pages.root, capture_output=True, text=True, check=False)
    via_module = pages.run("plan")
    assert via_script.returncode == via_module.code == 0
    assert via_script.stdout == via_module.stdout


def test_dash_c_changes_into_the_project_first(pages: Project, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "batchit", "-C", str(pages.root), "build", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (pages.root / "_build/a.html").exists()


def test_a_second_dash_c_is_relative_to_the_first_as_in_git(pages: Project) -> None:
    top = pages.root.parent
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchit",
            "-C",
            str(top.parent),
            "-C",
            f"{top.name}/{pages.root.name}",
            "plan",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "plan: 2 of 2 jobs to do" in result.stdout


def test_dash_f_names_another_config_file(pages: Project) -> None:
    (pages.root / "batchit.yaml").rename(pages.root / "other.yaml")
    assert pages.run("-f", "other.yaml", "build", "--no-progress").code == 0
    assert (pages.root / "_build/b.html").exists()


def test_a_renamed_config_takes_over_the_state_and_rebuilds_nothing(pages: Project) -> None:
    pages.build()
    (pages.root / "batchit.yaml").rename(pages.root / "renamed.yaml")
    assert pages.run("-f", "renamed.yaml", "build", "--no-progress").code == 0
    assert pages.manifest()["summary"]["built"] == 0
    assert pages.manifest()["summary"]["up_to_date"] == 2


@pytest.mark.parametrize("out", ["_build", "_other"])
def test_a_second_config_in_one_root_is_refused_before_it_prunes_or_disowns_the_first(
    pages: Project, out: str
) -> None:
    pages.build()
    other = f"version: 1\nout: {out}\nruns: {{keep: 1}}\ncache: {{max_size: 1}}\nrules:\n"
    pages.write({"other.yaml": other + MARKDOWN_RULE.replace("{stem}", "x-{stem}")})
    pages.build()  # two runs: other.yaml's runs.keep would remove one
    before = pages.recorded()
    refused = (["build", "--no-progress"], ["plan"], ["explain", "x-a.html"], ["clean"], ["reconcile"])
    for command in (*refused, ["gc"], ["verify"]):  # gc would apply other.yaml's runs.keep and cache
        result = pages.run("-f", "other.yaml", *command)
        assert result.code == 2, result.describe()
        assert "other.yaml: .batchit/ holds the state of batchit.yaml, which still exists" in result.stderr
        assert "if other.yaml replaces batchit.yaml, delete batchit.yaml" in result.stderr
    assert pages.recorded() == before
    assert not (pages.root / "_other").exists()
    pages.build()
    assert pages.manifest()["summary"]["built"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--no-progress", "pagez"], "did you mean 'pages'?"),
        (["-C", "no-such-dir", "plan"], "cannot change into no-such-dir"),
        (["build", "--flag", "novalue"], "is not NAME=VALUE"),
        (["explain", "nothing.html"], "no rule produces 'nothing.html'"),
        (["build", "-j", "99999999999999999999"], "must be at most 1024"),
    ],
    ids=["unknown-rule", "bad-directory", "bad-flag", "unknown-output", "too-many-workers"],
)
def test_usage_errors_exit_2_with_a_message(pages: Project, args: list[str], message: str) -> None:
    result = pages.run(*args)
    assert result.code == 2, result.describe()
    assert message in result.stderr


def test_two_jobs_writing_one_output_exits_2_and_writes_nothing(project: Project) -> None:
    project.config(PAGES.replace('output: "{stem}.html"', 'output: "{ext}.html"'))
    project.write({"pages/a.md": "# A\n", "pages/b.md": "# B\n"})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "two jobs write one output _build/md.html" in result.stderr
    assert "rule 'pages'" in result.stderr
    assert not (project.root / ".batchit").exists()
    assert not (project.root / "_build").exists()


def test_two_inputs_differing_only_by_extension_are_told_apart_by_the_hint(project: Project) -> None:
    project.config(PAGES.replace('output: "{stem}.html"', 'output: "{path}.html"').replace("*.md", "*"))
    project.write({"pages/a.md": "# A\n", "pages/a.txt": "A\n"})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "fix: put {ext}, {name} into `output` (it differs between them)" in result.stderr
    project.config(PAGES.replace('output: "{stem}.html"', 'output: "{path}-{ext}.html"').replace("*.md", "*"))
    project.build()


def test_plan_changes_nothing(pages: Project) -> None:
    result = pages.run("plan")
    assert result.code == 0
    assert "pages: 2 to run" in result.stdout
    assert not (pages.root / ".batchit").exists()
    assert not (pages.root / "_build").exists()


def test_build_dry_run_is_plan(pages: Project) -> None:
    assert pages.run("build", "--dry-run").stdout == pages.run("plan").stdout


def test_plan_json_puts_each_job_on_a_line_of_its_own(pages: Project) -> None:
    result = pages.run("plan", "--json")
    assert result.code == 0, result.describe()
    document = json.loads(result.stdout)
    job_lines = [line.strip().rstrip(",") for line in result.stdout.splitlines() if '"rule": ' in line]
    assert [json.loads(line) for line in job_lines] == document["jobs"]
    assert len(job_lines) == len(document["jobs"]) > 1


def test_explain_json_of_an_up_to_date_output(pages: Project) -> None:
    pages.build()
    result = pages.run("explain", "a.html", "--json")
    explained = json.loads(result.stdout)
    assert explained["up_to_date"] is True
    assert explained["output"] == "_build/a.html"
    assert explained["action_key"] == explained["recorded_key"]
    assert [i["path"] for i in explained["inputs"]] == ["pages/a.md"]


@pytest.mark.parametrize("spelling", ["_build/a.html", "./_build/a.html", "ABSOLUTE"])
def test_explain_accepts_the_path_with_the_out_prefix(pages: Project, spelling: str) -> None:
    pages.build()
    pages.write({"pages/a.md": "# A, edited\n"})
    path = str(pages.root / "_build/a.html") if spelling == "ABSOLUTE" else spelling
    result = pages.run("explain", path)
    assert result.code == 0, result.describe()
    assert "stale" in result.stdout
    assert "input changed: pages/a.md" in result.stdout


def test_explain_says_an_output_no_job_produces_is_pruned_next(project: Project) -> None:
    project.config(
        'version: 1\nrules:\n  css:\n    inputs: ["*.css"]\n    output: "{stem}.{key8}.css"\n'
        "    steps: [file.copy: {}]\n"
    )
    project.write({"site.css": "a{}"})
    project.build()
    (old,) = (p.name for p in (project.root / "_build").glob("site.*.css"))
    project.write({"site.css": "b{}"})
    result = project.run("explain", old)
    assert result.code == 0, result.describe()
    assert "no current job produces it: the next full build removes it" in result.stdout
    assert "its job now writes _build/site." in result.stdout
    assert "action key (none: no current job writes this path)" in result.stdout, result.describe()
    assert "upstream" not in result.stdout  # nothing upstream: the path is simply no job's any more


def test_explain_of_an_input_names_the_outputs_made_from_it(pages: Project) -> None:
    pages.build()
    result = pages.run("explain", "pages/a.md")
    assert result.code == 2, result.describe()
    assert "pages/a.md is an input, not an output: it makes _build/a.html" in result.stderr, result.describe()
    assert "batchit explain _build/a.html" in result.stderr


def test_explain_of_a_path_outside_the_project_says_so(pages: Project, tmp_path: Path) -> None:
    result = pages.run("explain", str(tmp_path / "elsewhere.html"))
    assert result.code == 2, result.describe()
    assert f"{tmp_path / 'elsewhere.html'} is outside the project" in result.stderr, result.describe()


def test_explain_of_a_job_that_failed_says_so(project: Project) -> None:
    project.config(
        "version: 1\nrules:\n  tag:\n    inputs: ['*.txt']\n    output: '{stem}.out'\n"
        "    retry: {attempts: 1}\n    steps: [python: {function: 'flaky:run', version: '1'}]\n"
    )
    project.write(
        {
            "a.txt": "a\n",
            "flaky.py": "from batchit.errors import TransientError\n\n"
            "def run(value, ctx):\n    raise TransientError('service down')\n",
        }
    )
    project.build(expect=1)
    result = project.run("explain", "a.out")
    assert result.code == 0, result.describe()
    assert "failed in run " in result.stdout, result.describe()
    assert "TransientError: step 1 (python): service down" in result.stdout


def test_explain_names_a_file_batchit_did_not_write_as_plan_does(pages: Project) -> None:
    pages.write({"_build/a.html": "mine"})
    assert "refuse   _build/a.html  (a file batchit did not write is there" in pages.run("plan").stdout
    result = pages.run("explain", "a.html")
    assert "a file batchit did not write is there: a build stops (exit 2)" in result.stdout, result.describe()


def test_manifest_records_every_output_with_hashes_and_inputs(pages: Project) -> None:
    pages.build()
    runs = pages.root / ".batchit" / "runs"
    run_id = (runs / "LATEST").read_text().strip()
    assert re.fullmatch(r"\d{8}T\d{9}Z-[0-9a-f]{6}", run_id)
    manifest = pages.manifest()
    assert manifest["format"] == "batchit-manifest"
    assert manifest["run_id"] == run_id
    entry = next(o for o in manifest["outputs"] if o["path"] == "a.html")
    assert set(entry) == {"path", "blake3", "sha256", "size", "rule", "action_key", "status", "inputs"}
    assert entry["inputs"][0]["path"] == "pages/a.md"
    assert entry["size"] == (pages.root / "_build/a.html").stat().st_size
    assert (pages.root / "_build/batchit-manifest.json").read_bytes() == (
        runs / run_id / "manifest.json"
    ).read_bytes()


def test_manifest_is_canonical_and_repeats_across_no_op_runs(pages: Project) -> None:
    pages.build()
    pages.build()
    second_raw = (pages.root / "_build/batchit-manifest.json").read_text()
    pages.build()
    third_raw = (pages.root / "_build/batchit-manifest.json").read_text()
    second, third = json.loads(second_raw), json.loads(third_raw)
    assert second_raw == json.dumps(second, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    volatile = {"run_id", "started", "finished", "summary", "audit_head"}  # each run appends an audit entry
    assert second["run_id"] != third["run_id"]
    assert {k: v for k, v in second.items() if k not in volatile} == {
        k: v for k, v in third.items() if k not in volatile
    }


def test_progress_bar_with_eta_on_a_terminal_only(pages: Project) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchit", "build"],
        cwd=pages.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes when the build exits
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    assert b"eta" in seen and b"2/2" in seen

    pages.build("--force")
    plain = pages.run("build", "--force")
    assert "eta" not in plain.stderr


def test_json_log_format_reports_errors_as_json_too(project: Project) -> None:
    project.config(
        "version: 1\nrules:\n  pages:\n    inputs: [x]\n    ouput: y\n    steps: [file.copy: {}]\n"
    )
    result = project.run("build", "--no-progress", "--log-format", "json")
    assert result.code == 2
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines[0]["event"] == "error"
    assert "ouput" in lines[0]["message"]


@pytest.mark.parametrize(
    "args",
    [("--log-format", "json", "-j", "0"), ("--log-format=json", "--no-such-flag")],
    ids=["bad-value", "unknown-flag"],
)
def test_json_log_format_reports_usage_errors_of_the_command_line_as_json(
    project: Project, args: tuple[str, ...]
) -> None:
    project.config(COPY_CONFIG)
    result = project.run("build", *args)
    assert result.code == 2, result.describe()
    [line] = [json.loads(line) for line in result.stderr.splitlines()]
    assert line["event"] == "error" and line["exit_code"] == 2
    assert "error:" in line["message"]
