"""`batchit.doit` with the real `doit` command (SPEC section 9), on a project with a rule graph.

Each test writes a batchit project and a `dodo.py` that says `task_site = batchit.doit.tasks("site")`,
then runs `python -m doit ...` in a subprocess, as a user's terminal or CI would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Hooks, Project, Result, plan_event, process_gone, wait_until
from PIL import Image

from batchit.state.lock import ProjectLock

pytestmark = pytest.mark.slow  # each doit and batchit run is a fresh interpreter

CONFIG = """\
version: 1
out: _build
rules:
  thumbs:
    inputs: ["images/*.png"]
    matrix: {width: [16, 32]}
    output: "img/{stem}-{width}-{key8}.webp"
    steps:
      - image.load: {}
      - image.resize: {width: "{width}"}
      - image.save: {format: webp, quality: high}
  cdn:
    inputs: {rule: thumbs}
    aggregate: true
    output: cdn.json
    steps:
      - cdn.manifest: {}
"""

DODO = """\
import batchit.doit

DOIT_CONFIG = {"verbosity": 2}
task_site = batchit.doit.tasks("site")
"""


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_project(top: Path) -> Project:
    """`top/dodo.py` and the batchit project `top/site` with three images."""
    top.mkdir(parents=True, exist_ok=True)
    (top / "dodo.py").write_text(DODO, encoding="utf-8")
    site = Project(top / "site")
    site.root.mkdir(parents=True)
    site.config(CONFIG)
    site.write({f"images/{name}.png": png(name) for name in ("red", "green", "blue")})
    return site


@pytest.fixture
def site(tmp_path: Path) -> Project:
    """A batchit project in `site/` beside a dodo.py that exposes it to doit."""
    return make_project(tmp_path)


def doit(site: Project | Path, *args: str) -> Result:
    """Run `python -m doit ARGS` in the folder holding dodo.py (the project's parent, or the path)."""
    proc = subprocess.run(
        [sys.executable, "-m", "doit", *args],
        cwd=site.root.parent if isinstance(site, Project) else site,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def executed(result: Result) -> list[str]:
    """The tasks doit ran (its reporter prints `.  NAME` for those, `-- NAME` for up-to-date ones)."""
    return [line[3:] for line in result.stdout.splitlines() if line.startswith(".  ")]


def outputs(site: Project) -> dict[str, bytes]:
    """Every output but the manifest copies, whose run ids differ between runs."""
    return {k: v for k, v in site.snapshot("_build").items() if "batchit-manifest" not in k}


def test_doit_list_shows_one_sub_task_per_job_and_record(site: Project) -> None:
    result = doit(site, "list", "--all", "--private")
    assert result.code == 0, result.describe()
    names = [line.split()[0] for line in result.stdout.splitlines()]
    thumbs = [n for n in names if n.startswith("site:img/")]
    assert len(thumbs) == 6 and all(n.endswith(".webp") for n in thumbs)
    assert {"site", "site:cdn.json", "site:_record"} <= set(names)


def test_doit_builds_and_a_second_doit_runs_nothing(site: Project) -> None:
    first = doit(site)
    assert first.code == 0, first.describe()
    assert len(executed(first)) == 6 + 1 + 1  # thumbnails, the aggregate, _record
    assert len(list((site.root / "_build" / "img").iterdir())) == 6
    assert site.manifest()["summary"]["built"] == 7
    second = doit(site)
    assert second.code == 0, second.describe()
    assert executed(second) == []


def test_batchit_build_after_doit_builds_nothing(site: Project) -> None:
    assert doit(site).code == 0
    site.build()
    summary = site.manifest()["summary"]
    assert (summary["built"], summary["restored"], summary["up_to_date"]) == (0, 0, 7)


def test_doit_leaves_the_plan_the_next_build_replays(site: Project) -> None:
    assert doit(site).code == 0
    site.build()
    assert plan_event(site)["replayed"] is True
    assert site.manifest()["summary"]["up_to_date"] == 7


def test_doit_writes_the_manifest_copies_in_out_again_when_one_was_deleted(site: Project) -> None:
    assert doit(site).code == 0
    (site.root / "_build/batchit-manifest.json.sig").unlink()
    result = doit(site)
    assert result.code == 0, result.describe()
    assert executed(result) == ["site:_record"]
    assert site.run("verify", "_build").code == 0


def test_doit_after_batchit_build_runs_nothing(site: Project) -> None:
    site.build()
    result = doit(site)
    assert result.code == 0, result.describe()
    assert executed(result) == []


def test_a_task_of_the_users_reading_a_batchit_output_runs_after_the_job_writing_it(site: Project) -> None:
    # The user's task comes first in dodo.py and names the output as doit users do, relative to
    # the dodo.py's folder: doit makes it depend on the sub-task whose target that file is.
    (site.root.parent / "dodo.py").write_text(
        textwrap.dedent(
            """\
            import shutil
            import batchit.doit

            DOIT_CONFIG = {"verbosity": 2}

            def task_publish():
                return {
                    "actions": [lambda: shutil.copyfile("site/_build/cdn.json", "published.json")],
                    "file_dep": ["site/_build/cdn.json"],
                    "targets": ["published.json"],
                }

            task_site = batchit.doit.tasks("site")
            """
        ),
        encoding="utf-8",
    )
    result = doit(site, "publish")
    assert result.code == 0, result.describe()
    assert executed(result)[-2:] == ["site:cdn.json", "publish"]
    assert (site.root.parent / "published.json").read_bytes() == (site.root / "_build/cdn.json").read_bytes()
    by_target = doit(site, "site/_build/cdn.json")  # doit runs a task named by its target
    assert by_target.code == 0, by_target.describe()
    assert executed(by_target) == []


def test_a_config_doit_built_with_keeps_the_state_from_any_other(site: Project) -> None:
    assert doit(site).code == 0
    site.write({"other.yaml": CONFIG.replace("cdn.json", "other.json")})
    refused = site.run("-f", "other.yaml", "build", "--no-progress")
    assert refused.code == 2, refused.describe()
    assert "other.yaml: .batchit/ holds the state of batchit.yaml" in refused.stderr
    dodo = site.root.parent / "dodo.py"
    other_dodo = DODO.replace('tasks("site")', 'tasks("site", config_file="other.yaml")')
    dodo.write_text(other_dodo, encoding="utf-8")
    result = doit(site, "list")
    assert result.code == 3, result.describe()
    assert result.stderr.startswith("ERROR: batchit: other.yaml: .batchit/ holds the state of batchit.yaml")
    assert (site.root / "_build/cdn.json").exists()


KEYED_CHAIN = """\
version: 1
out: _build
rules:
  pages:
    inputs: ["src/*.txt"]
    output: "pages/{stem}.txt"
    steps: [text.load: {}]
  hashed:
    inputs: {rule: pages}
    output: "hashed/{stem}-{key8}.txt"
    steps: [file.copy: {}]
  mirror:
    inputs: {rule: hashed}
    output: "mirror/{stem}.txt"
    steps: [text.load: {}, text.replace: {pattern: o, replacement: "0"}]
"""
"""`mirror` reads outputs whose names are not known when doit loads the tasks."""


@pytest.mark.parametrize("parallel", [(), ("-n", "2", "-P", "process")])
def test_a_rule_reading_key8_names_builds_on_the_first_doit_run(
    tmp_path: Path, parallel: tuple[str, ...]
) -> None:
    site = make_project(tmp_path)
    site.config(KEYED_CHAIN)
    site.write({"src/note.txt": "hello world\n"})
    first = doit(site, *parallel)
    assert first.code == 0, first.describe()
    [mirrored] = (site.root / "_build/mirror").iterdir()
    assert mirrored.read_text() == "hell0 w0rld\n"
    assert executed(doit(site)) == []
    site.write({"src/note.txt": "good night\n"})  # a new {key8} name beside the old, until `_record`
    again = doit(site, *parallel)
    assert again.code == 0, again.describe()
    [mirrored] = (site.root / "_build/mirror").iterdir()
    assert mirrored.read_text() == "g00d night\n"
    site.build()
    assert site.manifest()["summary"]["up_to_date"] == 3


def test_key8_outputs_sharing_a_name_until_their_keys_are_known_build_under_doit(tmp_path: Path) -> None:
    """`note.txt` and `note.md` give `hashed/note-{key8}.txt` twice while their keys are unknown:
    doit gets two sub-tasks of distinct names. A job reading one of them cannot tell which it reads
    until the next doit run (the README says so)."""
    site = make_project(tmp_path)
    chain = KEYED_CHAIN.split("  mirror:")[0].replace('["src/*.txt"]', '["src/*"]')
    site.config(chain.replace('"pages/{stem}.txt"', '"pages/{name}"'))
    site.write({"src/note.txt": "hello\n", "src/note.md": "world\n"})
    listed = doit(site, "list", "--all")
    assert "hashed/note-{key8}.txt #1" in listed.stdout and "hashed/note-{key8}.txt #2" in listed.stdout
    first = doit(site)
    assert first.code == 0, first.describe()
    assert sorted(p.read_text() for p in (site.root / "_build/hashed").iterdir()) == ["hello\n", "world\n"]
    assert executed(doit(site)) == []
    site.build()
    assert site.manifest()["summary"]["up_to_date"] == 4


def test_a_changed_input_reruns_its_jobs_and_the_aggregate_only(site: Project) -> None:
    assert doit(site).code == 0
    site.write({"images/red.png": png("orange")})
    result = doit(site)
    assert result.code == 0, result.describe()
    ran = executed(result)
    assert sorted(n.split("/")[-1].rsplit("-", 1)[0] for n in ran if "img/" in n) == ["red-16", "red-32"]
    assert "site:cdn.json" in ran and "site:_record" in ran
    assert len(list((site.root / "_build" / "img").iterdir())) == 6  # _record pruned the old names
    assert site.manifest()["summary"]["built"] == 3


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_parallel_doit_builds_the_same_bytes_as_a_serial_run(tmp_path: Path, kind: str) -> None:
    serial, parallel = make_project(tmp_path / "serial"), make_project(tmp_path / "parallel")
    assert doit(serial).code == 0
    result = doit(parallel, "-n", "2", "-P", kind)
    assert result.code == 0, result.describe()
    assert outputs(parallel) == outputs(serial)
    assert len(outputs(serial)) == 7


CHAIN = """\
version: 1
out: _build
rules:
  lower:
    inputs: ["notes/*.txt"]
    output: "lower/{stem}.txt"
    steps:
      - text.load: {}
      - text.replace: {pattern: "[A-Z]", replacement: "x"}
  copy:
    inputs: {rule: lower}
    output: "copy/{name}"
    steps:
      - file.copy: {}
"""


def test_a_chain_of_one_input_rules_reruns_only_what_an_edit_reaches(tmp_path: Path) -> None:
    site = make_project(tmp_path)
    site.config(CHAIN)
    site.write({f"notes/{name}.txt": f"{name} Note\n" for name in ("a", "b", "c")})
    first = doit(site)
    assert first.code == 0, first.describe()
    assert len(executed(first)) == 6 + 1
    site.write({"notes/a.txt": "a Bote\n", "notes/b.txt": "b Note, longer\n"})
    second = doit(site)
    assert second.code == 0, second.describe()
    # a's `lower` output is unchanged ("a xote" either way), so its copy stays up to date
    ran = sorted(executed(second))
    assert ran == ["site:_record", "site:copy/b.txt", "site:lower/a.txt", "site:lower/b.txt"]
    assert site.read("_build/copy/b.txt") == "b xote, longer\n"
    third = doit(site)
    assert third.code == 0, third.describe()
    assert executed(third) == []
    site.build()
    assert site.manifest()["summary"]["up_to_date"] == 6


def test_a_sub_task_fails_while_a_batchit_build_holds_the_lock(site: Project) -> None:
    with ProjectLock(site.root / ".batchit" / "lock"):
        result = doit(site)
    assert result.code != 0
    assert "another batchit run" in result.stdout + result.stderr


def test_a_failing_job_fails_its_sub_task_with_batchits_message(site: Project) -> None:
    site.write({"images/broken.png": b"\x89PNG\r\n\x1a\n not really"})
    result = doit(site)
    assert result.code != 0
    assert "PermanentError" in result.stdout + result.stderr


def test_blake3_checker_ignores_a_touch_and_sees_a_change(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("one", encoding="utf-8")
    (tmp_path / "dodo.py").write_text(
        textwrap.dedent(
            """\
            import shutil
            import batchit.doit

            DOIT_CONFIG = {"check_file_uptodate": batchit.doit.Blake3Checker, "verbosity": 2}

            def task_copy():
                return {
                    "actions": [lambda: shutil.copyfile("src.txt", "dst.txt")],
                    "file_dep": ["src.txt"],
                    "targets": ["dst.txt"],
                }
            """
        ),
        encoding="utf-8",
    )

    def ran() -> list[str]:
        result = doit(tmp_path)
        assert result.code == 0, result.describe()
        return executed(result)

    assert ran() == ["copy"]
    os.utime(tmp_path / "src.txt", ns=(1, 1))
    assert ran() == []
    (tmp_path / "src.txt").write_text("two", encoding="utf-8")
    assert ran() == ["copy"]


GATED_STEP = """\
def work(value, ctx):
    if (ctx.root / "gate").exists():
        (ctx.root / "started").touch()
        with open(ctx.root / "gate") as gate:  # a FIFO: blocks until opened for writing: never
            gate.read()
    return value
"""


def test_a_killed_doit_run_leaves_its_mark_and_the_next_run_sweeps_its_litter(tmp_path: Path) -> None:
    site = make_project(tmp_path)
    site.config(
        'version: 1\nout: _build\nrules:\n  copy:\n    inputs: ["images/*.png"]\n    output: "{name}"\n'
        '    steps: [python: {function: "gated:work", version: "1"}]\n'
    )
    site.write({"gated.py": GATED_STEP})
    os.mkfifo(site.root / "gate")
    command = [sys.executable, "-m", "doit", "-n", "2", "-P", "process"]
    run = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL)
    wait_until(lambda: (site.root / "started").exists(), "a sub-task to start its job")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    assert (site.root / ".batchit/build-in-progress").exists(), "a sub-task marks the run unfinished"

    # What the writer of the killed job and its cache copy could have left, had the kill come later.
    litter = [site.root / "_build/.batchit-tmp-0123456789ab-0-red.png", site.root / ".batchit/cache/ab/ab12"]
    for path in litter:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    (site.root / "gate").unlink()
    rerun = doit(site)
    assert rerun.code == 0, rerun.describe()
    assert not any(path.exists() for path in litter)
    assert not (site.root / ".batchit/build-in-progress").exists()
    assert site.run("reconcile").code == 0


LONG_STEP = """\
import time


def work(value, ctx):
    if (ctx.root / "gate").exists():
        (ctx.root / "started").touch()
        while (ctx.root / "gate").exists():  # a long job: Python code running on
            time.sleep(0.01)
    return value
"""


@pytest.mark.parametrize("parallel", [(), ("-n", "2", "-P", "process")], ids=["serial", "processes"])
def test_ctrl_c_during_doit_stops_the_run_without_quarantining_the_running_job(
    tmp_path: Path, parallel: tuple[str, ...]
) -> None:
    site = make_project(tmp_path)
    site.config(
        'version: 1\nout: _build\nrules:\n  copy:\n    inputs: ["images/*.png"]\n    output: "{name}"\n'
        '    steps: [python: {function: "long:work", version: "1"}]\n'
    )
    site.write({"long.py": LONG_STEP, "gate": ""})
    command = [sys.executable, "-m", "doit", *parallel]
    run = subprocess.Popen(
        command,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: (site.root / "started").exists(), "a sub-task to start its job")
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in doit's terminal: doit and its processes
    _, err = run.communicate(timeout=60)

    assert run.returncode != 0, err
    held = site.run("quarantine", "list", "--json")
    assert json.loads(held.stdout) == [], held.describe()  # the user stopped it: no fault of the input
    assert not list((site.root / "_build").glob(".batchit-tmp-*"))
    (site.root / "gate").unlink()
    rerun = doit(site)
    assert rerun.code == 0, rerun.describe()
    assert sorted(p.name for p in (site.root / "_build").glob("*.png")) == [
        "blue.png",
        "green.png",
        "red.png",
    ]


def test_doit_after_clean_restores_a_page_whose_template_extends_another(tmp_path: Path) -> None:
    """A sub-task plans its job alone, reading rows one at a time: it too finds what the job
    discovered when it last ran, so the page is keyed as then and comes from the cache."""
    site = make_project(tmp_path)
    site.config(
        'version: 1\nout: _build\nrules:\n  pages:\n    inputs: ["pages/*.md"]\n    output: "{stem}.html"\n'
        "    steps: [text.load: {}, template.render: {template: t/page.html}]\n"
    )
    site.write(
        {
            "pages/a.md": "hello\n",
            "t/page.html": "{% extends 't/base.html' %}{% block body %}{{ content }}{% endblock %}",
            "t/base.html": "<main>{% block body %}{% endblock %}</main>",
        }
    )
    site.build()
    assert site.run("clean").code == 0
    result = doit(site)
    assert result.code == 0, result.describe()
    [page] = [o for o in site.manifest()["outputs"] if o["path"] == "a.html"]
    assert page["status"] == "restored"


@pytest.mark.parametrize("parallel", [(), ("-n", "2", "-P", "thread"), ("-n", "2", "-P", "process")])
def test_ctrl_c_stops_the_commands_doit_sub_tasks_run(tmp_path: Path, parallel: tuple[str, ...]) -> None:
    """A command runs in a process group of its own; a Ctrl-C to doit reaches it all the same."""
    site = make_project(tmp_path)
    site.config(
        'version: 1\nout: _build\nrules:\n  copy:\n    inputs: ["images/*.png"]\n    output: "{name}"\n'
        '    steps: [shell: {argv: [sh, -c, "echo $$ > started.$(basename {in}); sleep 300; cat {in}"]}]\n'
    )
    command = [sys.executable, "-m", "doit", *parallel]
    run = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL)
    try:

        def started() -> list[str]:
            return [text for p in site.root.glob("started.*") if (text := p.read_text().strip()).isdigit()]

        wait_until(lambda: bool(started()), "a command to start")
        [command_pid] = map(int, started()[:1])
        os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        run.wait(timeout=60)
        wait_until(lambda: process_gone(command_pid), "the command to stop")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


@contextlib.contextmanager
def doit_thread_sub_tasks(tmp_path: Path, site: Project) -> Iterator[subprocess.Popen[bytes]]:
    """`doit -n 2 -P thread` in `tmp_path`, handed over once both sub-tasks' commands have started
    (each writes its pid to `started.<name>`); then doit must exit and the commands must be gone.
    Whatever is left is killed."""
    command = [sys.executable, "-m", "doit", "-n", "2", "-P", "thread"]
    run = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL)

    def started() -> list[int]:
        texts = [p.read_text().strip() for p in site.root.glob("started.*")]
        return [int(text) for text in texts if text.isdigit()]

    try:
        wait_until(lambda: len(started()) == 2, "both sub-tasks' commands to start")
        yield run
        run.wait(timeout=60)
        for command_pid in started():
            wait_until(lambda pid=command_pid: process_gone(pid), "the commands to stop", timeout=10)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        for command_pid in started():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(command_pid, signal.SIGKILL)


def test_ctrl_c_that_the_system_gives_a_sub_tasks_thread_stops_doit_and_its_commands(tmp_path: Path) -> None:
    """`-P thread`: the system may hand a Ctrl-C to any thread of doit's, whose Python handler then
    waits for the main thread, which sleeps until a sub-task reports: the commands are told at once
    all the same, and doit stops once they have."""
    site = make_project(tmp_path)
    site.config(
        'version: 1\nout: _build\nrules:\n  copy:\n    inputs: ["images/*.png"]\n    output: "{name}"\n'
        '    steps: [shell: {argv: [sh, -c, "echo $$ > started.$(basename {in}); sleep 300; cat {in}"]}]\n'
    )
    with doit_thread_sub_tasks(tmp_path, site) as run:
        for thread in Path(f"/proc/{run.pid}/task").iterdir():
            if int(thread.name) != run.pid:
                os.kill(int(thread.name), signal.SIGINT)  # taken by that thread, not doit's main one


COUNT_INTERRUPTS = """\
import os, signal, sys, time

name = os.path.basename(sys.argv[1])
got = []


def note(signum, frame):
    got.append(signum)
    with open(f"interrupts.{name}", "a") as log:
        log.write("I")


signal.signal(signal.SIGINT, note)
with open(f"started.{name}", "w") as started:
    started.write(str(os.getpid()))
while not got:
    time.sleep(0.01)
time.sleep(1)  # a second SIGINT would come meanwhile
"""


def test_one_ctrl_c_reaches_each_command_of_doit_thread_sub_tasks_once(tmp_path: Path) -> None:
    """The handler and the thread woken by the signal wakeup fd both see a Ctrl-C; the commands,
    some of which take a second one as "stop now", get it once."""
    site = make_project(tmp_path)
    site.config(
        'version: 1\nout: _build\nrules:\n  copy:\n    inputs: ["images/*.png"]\n    output: "{name}"\n'
        f'    steps: [shell: {{argv: ["{sys.executable}", count.py, "{{in}}"]}}]\n'
    )
    site.write({"count.py": COUNT_INTERRUPTS})
    with doit_thread_sub_tasks(tmp_path, site) as run:
        os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does

    got = {p.name: p.read_text() for p in site.root.glob("interrupts.*")}
    assert got and set(got.values()) == {"I"}, got


def test_a_command_that_ignores_ctrl_c_does_not_outlive_doit_thread_sub_tasks(tmp_path: Path) -> None:
    """doit leaves its `-P thread` workers, daemon threads, running as it exits after a Ctrl-C:
    their commands are killed then, not left running on their own."""
    site = make_project(tmp_path)
    site.config(
        'version: 1\nout: _build\nrules:\n  copy:\n    inputs: ["images/*.png"]\n    output: "{name}"\n'
        "    steps: [shell: {argv: [sh, -c, \"trap '' INT; echo $$ > started.$(basename {in}); "
        'sleep 300; cat {in}"]}]\n'
    )
    with doit_thread_sub_tasks(tmp_path, site) as run:
        os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does; the commands ignore it


def test_a_doit_run_alerts_as_a_build_does(site: Project, webhook: str) -> None:
    """`when: always`: the recorded run's summary; a failed job: the alert of the run recorded as
    doit exits, since doit runs no `_record` after a failure."""
    site.config(CONFIG + f'alerts: {{webhook: "{webhook}", when: always}}\n')
    assert doit(site).code == 0
    [(headers, body)] = Hooks.received
    assert body["status"] == "ok" and body["summary"]["built"] == 7
    assert headers["Idempotency-Key"] == body["run_id"] == site.manifest()["run_id"]
    site.write({"images/broken.png": b"\x89PNG\r\n\x1a\n not really"})
    assert doit(site).code != 0
    failed = Hooks.received[1][1]
    assert failed["status"] == "failed"
    [failure] = failed["failures"]
    assert (failure["input"], failure["quarantined"]) == ("images/broken.png", True)
