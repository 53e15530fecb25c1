"""Failure handling (SPEC section 6): quarantine, retries, alerts, replay, through the real CLI."""

from __future__ import annotations

import hashlib
import io
import json
import re
from typing import NamedTuple

import pytest
from conftest import PICKY, PICKY_MODULE, Hooks, Project

from batchit.engine.closing import BULK_FROM
from batchit.execute.pools import PROCESSES_FROM


def test_permanent_failure_quarantines_the_input_and_the_rest_build(picky: Project) -> None:
    result = picky.build(expect=1)
    assert picky.read("_build/a.txt") == "A\n"
    assert picky.read("_build/c.txt") == "C\n"
    copy = picky.root / ".batchit/quarantine/parse/in/b.txt"
    assert copy.read_text() == "bad\n"
    reason = json.loads((copy.parent / "b.txt.reason.json").read_text())
    assert reason["class"] == "PermanentError"
    assert "cannot parse in/b.txt" in reason["message"]
    assert reason["run_id"] == picky.manifest()["run_id"]
    assert "quarantined" in result.stdout
    failure = picky.manifest()["failures"][0]
    assert failure["quarantine"] == ".batchit/quarantine/parse/in/b.txt"
    assert picky.manifest()["summary"]["quarantined"] == 1


def test_the_input_of_a_job_that_never_wrote_its_output_goes_without_a_prune(picky: Project) -> None:
    picky.build(expect=1)
    (picky.root / "in/b.txt").unlink()
    picky.build()
    assert picky.manifest()["summary"]["pruned"] == 0, "nothing was written, so nothing was removed"


def test_a_failure_shared_by_identical_inputs_says_whose_it_was(project: Project) -> None:
    project.config(
        'version: 1\nrules:\n  t:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        "    steps: [text.load: {}]\n"
    )
    project.write({"in/a.txt": b"\xff\xfe", "in/b.txt": b"\xff\xfe"})  # not UTF-8; one key: run once
    project.build(expect=1)
    messages = {f["input"]: f["message"] for f in project.manifest()["failures"]}
    assert messages["in/a.txt"].startswith("step 1 (text.load): in/a.txt is not valid utf-8")
    assert messages["in/b.txt"].startswith("the same as in/a.txt (one action key), which failed: ")


RECIPE_FAULTS = {
    "template-undefined": (
        "template.render: {template: t.j2}",
        {"t.j2": "{{ oops.x }}"},
        {"t.j2": "{{ content }}"},
    ),
    "replace-bad-group": ('text.replace: {pattern: "(a)", replacement: "\\\\2"}', {}, {}),
    "replace-unknown-group-name": ('text.replace: {pattern: "(?P<t>a)", replacement: "\\\\g<nope>"}', {}, {}),
    "load-unknown-encoding": ("text.load: {encoding: nope}", {}, {}),
    "python-parameters-not-matching": (
        'python: {function: "kw:kw", version: "1", extra: 2}',
        {"kw.py": "def kw(value, ctx, needed):\n    return value\n"},
        {"kw.py": "def kw(value, ctx, needed=1, extra=0):\n    return value\n"},
    ),
    "shell-missing-program": ("shell: {argv: [no-such-program-here, '{in}']}", {}, {}),
    "python-module-failing-to-import": (
        'python: {function: "boom:f", version: "1"}',
        {"boom.py": "raise RuntimeError('settings missing')\n\ndef f(value, ctx):\n    return value\n"},
        {"boom.py": "def f(value, ctx):\n    return value\n"},
    ),
    "template-including-itself": (
        "template.render: {template: t.j2}",
        {"t.j2": '{% include "t.j2" %}'},
        {"t.j2": "{{ content }}"},
    ),
    "python-async-function": (
        'python: {function: "aw:aw", version: "1"}',
        {"aw.py": "async def aw(value, ctx):\n    return value\n"},
        {"aw.py": "def aw(value, ctx):\n    return value\n"},
    ),
    "python-generator-as-the-last-step": (
        'python: {function: "gen:lines", version: "1"}',
        {"gen.py": "def lines(value, ctx):\n    yield value\n"},
        {"gen.py": "def lines(value, ctx):\n    return value\n"},
    ),
}
"""A step whose recipe is at fault, the files it needs, and the files that fix it (none: the fix is
the step `text.load: {}`)."""


@pytest.mark.parametrize("fault", RECIPE_FAULTS.values(), ids=RECIPE_FAULTS.keys())
def test_a_fault_of_the_recipe_fails_its_jobs_without_quarantining_their_inputs(
    project: Project, fault: tuple[str, dict[str, str], dict[str, str]]
) -> None:
    step, files, fixed = fault
    rule = 'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n    steps:\n'
    project.config(rule + f"      - {step}\n")
    project.write({"in/a.txt": "a\n", **files})
    project.build(expect=1)
    assert project.manifest()["failures"][0]["class"] == "RecipeError"
    assert not (project.root / ".batchit/quarantine").exists()
    if fixed:
        project.write(fixed)
    else:
        project.config(rule + "      - text.load: {}\n")
    assert project.build().stdout.startswith("batchit: ok: 1 built"), "the next build tries again"


def test_the_json_log_calls_a_job_whose_input_was_quarantined_quarantined(picky: Project) -> None:
    result = picky.run("build", "--no-progress", "--log-format", "json")
    assert result.code == 1, result.describe()
    events = [json.loads(line) for line in result.stderr.splitlines()]
    statuses = {e["input"]: e["status"] for e in events if e["event"] == "job"}
    summary = picky.manifest()["summary"]
    assert sorted(statuses.values()).count("quarantined") == summary["quarantined"] == 1
    assert "failed" not in statuses.values()


def test_an_async_python_function_is_named_and_the_json_log_stays_json(project: Project) -> None:
    """An async function returns a coroutine that nothing awaits: Python's warning about it would be
    a line of the JSON log that is not JSON."""
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [python: {function: "aw:aw", version: "1"}]\n'
    )
    project.write({"in/a.txt": "a\n", "aw.py": "async def aw(value, ctx):\n    return value\n"})
    result = project.run("build", "--no-progress", "--log-format", "json")
    assert result.code == 1, result.describe()
    events = [json.loads(line) for line in result.stderr.splitlines()]
    [failed] = [e for e in events if e["event"] == "job"]
    assert "aw:aw is an async function" in failed["message"], failed


@pytest.mark.parametrize(
    ("definition", "message", "fix"),
    [
        (
            "def f(value):",
            "pick:f cannot take the value and the job's context: too many positional arguments",
            "define it as `def f(value, ctx, **params)`",
        ),
        (
            "def f(value, ctx):",
            "pick:f cannot take this step's keys: got an unexpected keyword argument 'size'",
            "give f a parameter for each of the step's keys (besides function and version)",
        ),
        (
            "def f(value, ctx, size, name):",
            "pick:f cannot take this step's keys: missing a required argument: 'name'",
            "add the key to the step, or give f's parameter a default",
        ),
    ],
    ids=["no-ctx", "no-parameter-for-a-key", "a-parameter-no-key-gives"],
)
def test_a_python_function_of_the_wrong_signature_is_told_how_it_is_called(
    project: Project, definition: str, message: str, fix: str
) -> None:
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [python: {function: "pick:f", version: "1", size: 3}]\n'
    )
    project.write({"in/a.txt": "a\n", "pick.py": f"{definition}\n    return b'x'\n"})
    result = project.build(expect=1)
    [failure] = project.manifest()["failures"]
    assert failure["class"] == "RecipeError" and message in failure["message"], failure
    assert f"fix: {fix}" in result.stderr, result.describe()


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("{'a': 1}", "the last step (python) returned dict; a pipeline must end in bytes or str"),
        ("None", "the last step (python) returned NoneType"),
        ("'ok \\udcff'", "the last step (python) returned text that is not valid Unicode (a lone surrogate"),
    ],
    ids=["dict", "none", "lone-surrogate"],
)
def test_a_python_step_ending_in_what_cannot_be_written_names_the_step(
    project: Project, returned: str, message: str
) -> None:
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [python: {function: "ends:ends", version: "1"}]\n'
    )
    project.write({"in/a.txt": "a\n", "ends.py": f"def ends(value, ctx):\n    return {returned}\n"})
    project.build(expect=1)
    [failure] = project.manifest()["failures"]
    assert failure["class"] == "PermanentError" and failure["message"].startswith(message), failure
    assert not (project.root / "_build/a.txt").exists()


def test_quarantined_input_is_not_retried_while_unchanged(picky: Project) -> None:
    picky.build(expect=1)
    again = picky.build(expect=1)
    assert picky.manifest()["summary"]["quarantined"] == 1
    assert picky.manifest()["summary"]["built"] == 0
    assert "stay quarantined" in again.stdout


def test_the_report_of_a_later_run_shows_why_an_input_stays_quarantined(picky: Project) -> None:
    picky.build(expect=1)
    picky.build(expect=1)
    run = picky.root / ".batchit/runs" / picky.manifest()["run_id"]
    (failure,) = json.loads((run / "run.json").read_text())["failures"]
    assert (failure["class"], failure["message"]) == (
        "PermanentError",
        "step 1 (python): cannot parse in/b.txt",
    )
    assert "cannot parse in/b.txt" in (run / "report.html").read_text()


@pytest.mark.parametrize("spelled", ["./in/b.txt", "in//b.txt", "ABSOLUTE"])
def test_release_takes_the_input_path_however_it_is_spelled(picky: Project, spelled: str) -> None:
    picky.build(expect=1)
    path = str(picky.root / "in/b.txt") if spelled == "ABSOLUTE" else spelled
    released = picky.run("quarantine", "release", path)
    assert released.code == 0, released.describe()
    assert "released in/b.txt (parse)" in released.stdout


def test_fixing_a_quarantined_input_rebuilds_it(picky: Project) -> None:
    picky.build(expect=1)
    picky.write({"in/b.txt": "better\n"})
    picky.build()
    assert picky.read("_build/b.txt") == "BETTER\n"
    assert picky.manifest()["failures"] == []
    listed = json.loads(picky.run("quarantine", "list", "--json").stdout)
    assert listed == []


def test_release_lets_the_input_run_again(picky: Project) -> None:
    picky.build(expect=1)
    listed = json.loads(picky.run("quarantine", "list", "--json").stdout)
    assert [(q["rule"], q["input"], q["class"]) for q in listed] == [("parse", "in/b.txt", "PermanentError")]
    assert picky.run("quarantine", "release", "in/b.txt").code == 0
    assert not (picky.root / ".batchit/quarantine/parse/in/b.txt").exists()
    picky.build(expect=1)  # still bad: tried again, quarantined again
    assert picky.manifest()["summary"]["quarantined"] == 1
    assert picky.run("quarantine", "release", "in/nope.txt").code == 2


def test_releasing_everything_when_nothing_is_held_is_the_same_before_the_first_build(
    picky: Project,
) -> None:
    before = picky.run("quarantine", "release")
    assert (before.code, before.stdout.splitlines()[-1]) == (
        0,
        "quarantine: released 0 input(s); the next build tries them again",
    )
    assert picky.run("quarantine", "release", "in/b.txt").code == 2
    picky.write({"in/b.txt": "fine now\n"})
    picky.build()
    after = picky.run("quarantine", "release")
    assert (after.code, after.stdout) == (before.code, before.stdout)


def test_only_failed_retries_just_the_failed_jobs(picky: Project) -> None:
    picky.build(expect=1)
    picky.write({"in/a.txt": "a changed\n"})  # stale, but not a failed job
    picky.build("--only-failed", expect=1)
    statuses = {o["path"]: o["status"] for o in picky.manifest()["outputs"]}
    assert statuses["a.txt"] == "unchanged"
    assert picky.read("_build/a.txt") == "A\n"
    assert picky.manifest()["summary"]["quarantined"] == 1


BELOW_PICKY = (
    '  copy:\n    inputs: {rule: parse}\n    output: "copy/{stem}.txt"\n    steps: [file.copy: {}]\n'
    "  joined:\n    inputs: {rule: copy}\n    aggregate: true\n    output: all.txt\n"
    '    steps: [python: {function: "joiner:join", version: "1"}]\n'
)
"""Two rules below PICKY's: a copy of each output, and an aggregate joining the copies."""
JOINER_MODULE = "def join(files, ctx):\n    return ''.join(f.read_text() for f in files)\n"


def test_only_failed_after_a_fix_rebuilds_what_reads_the_retried_outputs(picky: Project) -> None:
    """The jobs below a retried one follow it, so the tree ends as a full build leaves it; jobs
    stale for other reasons stay held."""
    picky.config(PICKY + BELOW_PICKY)
    picky.write({"joiner.py": JOINER_MODULE, "in/b.txt": "good\n"})
    picky.build()
    picky.write({"in/b.txt": "bad\n"})
    picky.build(expect=1)  # in/b.txt is quarantined: its copy goes, all.txt goes on without it
    picky.write({"in/b.txt": "fixed\n", "in/c.txt": "c changed\n"})
    picky.build("--only-failed")
    assert picky.read("_build/copy/b.txt") == "FIXED\n"
    assert picky.read("_build/all.txt") == "A\nFIXED\nC\n", "in/c.txt's change waits for a full build"
    statuses = {o["path"]: o["status"] for o in picky.manifest()["outputs"]}
    assert (statuses["b.txt"], statuses["copy/b.txt"], statuses["all.txt"]) == ("built",) * 3
    assert statuses["c.txt"] == statuses["copy/c.txt"] == "unchanged"
    picky.build()
    assert picky.read("_build/all.txt") == "A\nFIXED\nC CHANGED\n"


@pytest.mark.parametrize("damage", ["edited", "deleted"])
def test_a_run_lists_only_the_outputs_it_left_alone_that_are_as_recorded(picky: Project, damage: str) -> None:
    """A signed manifest vouches for what it lists: an output a partial build leaves alone that was
    changed or deleted by hand since is left out, with a warning, and the next build of its rule
    writes it again."""
    picky.config(PICKY + BELOW_PICKY)
    picky.write({"joiner.py": JOINER_MODULE})
    picky.build(expect=1)
    target = picky.root / "_build/copy/a.txt"
    if damage == "edited":
        target.write_text("scribbled\n")
    else:
        target.unlink()
    result = picky.build("parse", expect=1)
    assert ("is gone" if damage == "deleted" else "was changed since batchit wrote it") in result.stderr
    listed = {o["path"] for o in picky.manifest()["outputs"]}
    assert "copy/a.txt" not in listed and "copy/c.txt" in listed
    verified = picky.run("verify")
    assert verified.code == 0, verified.describe()
    picky.build(expect=1)
    assert picky.read("_build/copy/a.txt") == "A\n"
    assert "copy/a.txt" in {o["path"] for o in picky.manifest()["outputs"]}


def test_a_partial_build_checks_thousands_of_outputs_it_left_alone_at_once(project: Project) -> None:
    """Over BULK_FROM outputs left alone, their records are read in one query: same outcome."""
    project.config(
        'version: 1\nrules:\n  many:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        "    steps: [file.copy: {}]\n"
        '  one:\n    inputs: ["solo/*.txt"]\n    output: "solo/{stem}.txt"\n    steps: [file.copy: {}]\n'
    )
    project.write({f"in/{n:04}.txt": f"{n}\n" for n in range(BULK_FROM + 1)} | {"solo/s.txt": "s\n"})
    project.build()
    (project.root / "_build/0007.txt").write_text("scribbled\n")
    (project.root / "_build/0008.txt").touch()  # a new stat, the same bytes: still as recorded
    project.build("one")
    listed = {o["path"] for o in project.manifest()["outputs"]}
    assert "0007.txt" not in listed and {"0008.txt", "solo/s.txt"} <= listed
    assert len(listed) == BULK_FROM + 1


def test_only_failed_runs_the_jobs_a_transient_failure_blocked(project: Project) -> None:
    """Jobs blocked by an upstream failure count as failed, so `--only-failed` runs them too, once
    the retried job succeeds."""
    flaky = FLAKY.replace("ATTEMPTS", "2").replace("backoff: 0.01", "backoff: 0")
    project.config(flaky + BELOW_PICKY.replace("{rule: parse}", "{rule: fetch}"))
    project.write({"flaky.py": FLAKY_MODULE, "joiner.py": JOINER_MODULE, "in/one.txt": "payload\n"})
    project.build(expect=1)  # two attempts, both busy: copy and joined are blocked
    assert project.manifest()["summary"]["failed"] == 3
    assert not (project.root / "_build/copy/one.txt").exists()
    project.build("--only-failed")  # the third attempt succeeds
    assert project.read("_build/copy/one.txt") == project.read("_build/all.txt") == "payload\n"
    assert "plan: 0 of 3 jobs to do" in project.run("plan").stdout


def test_only_failed_and_replay_prune_nothing(picky: Project) -> None:
    """Partial builds hold every job they were not asked to run, so an output whose input is gone
    stays until the next full build."""
    picky.build(expect=1)
    (picky.root / "in/a.txt").unlink()
    picky.write({"in/b.txt": "fixed\n"})
    picky.build("--only-failed")
    assert picky.read("_build/a.txt") == "A\n"
    assert picky.manifest()["summary"]["pruned"] == 0
    replayed = picky.run("replay", picky.manifest()["run_id"], "--no-progress")
    assert replayed.code == 0, replayed.describe()
    assert picky.read("_build/a.txt") == "A\n"
    assert picky.manifest()["summary"]["pruned"] == 0
    picky.build()
    assert not (picky.root / "_build/a.txt").exists()
    assert picky.manifest()["summary"]["pruned"] == 1


def test_a_released_input_is_retried_by_only_failed(picky: Project) -> None:
    """Released, its job is no longer quarantined but still failed: every build retries it."""
    picky.build(expect=1)
    assert picky.run("quarantine", "release", "in/b.txt").code == 0
    assert json.loads(picky.run("quarantine", "list", "--json").stdout) == []
    retried = picky.build("--only-failed", expect=1)  # still bad: quarantined again
    assert "quarantined in/b.txt" in retried.stdout + retried.stderr, retried.describe()
    assert picky.manifest()["summary"]["quarantined"] == 1


FLAKY = """\
version: 1
rules:
  fetch:
    inputs: ["in/*.txt"]
    output: "{stem}.txt"
    retry: {attempts: ATTEMPTS, backoff: 0.01, max_backoff: 0.05}
    steps:
      - python: {function: "flaky:fetch", version: "1"}
"""

FLAKY_MODULE = """\
from pathlib import Path
from batchit.errors import TransientError

def fetch(value, ctx):
    log = Path("attempts.log")
    tries = len(log.read_text().splitlines()) + 1 if log.exists() else 1
    log.write_text("x\\n" * tries)
    if tries < 3:
        raise TransientError(f"service busy (attempt {tries})")
    return value
"""


@pytest.mark.parametrize(
    ("attempts", "expect", "calls"), [(3, 0, 3), (2, 1, 2)], ids=["succeeds", "gives-up"]
)
def test_transient_errors_are_retried_up_to_the_attempts(
    project: Project, attempts: int, expect: int, calls: int
) -> None:
    project.config(FLAKY.replace("ATTEMPTS", str(attempts)))
    project.write({"flaky.py": FLAKY_MODULE, "in/one.txt": "payload\n"})
    result = project.build("--log-format", "json", expect=expect)
    assert len(project.read("attempts.log").splitlines()) == calls
    retries = [json.loads(line) for line in result.stderr.splitlines() if '"retry"' in line]
    assert [r["attempt"] for r in retries] == list(range(1, min(attempts, 3)))
    if expect:
        assert project.manifest()["failures"][0]["class"] == "TransientError"
        assert project.manifest()["failures"][0]["quarantine"] is None
        assert not (project.root / ".batchit/quarantine").exists()
    else:
        assert project.read("_build/one.txt") == "payload\n"
    report = (project.root / ".batchit/runs" / project.manifest()["run_id"] / "report.html").read_text()
    assert "Retries" in report
    assert "service busy (attempt 1)" in report


ORDERED_MODULE = """\
from pathlib import Path
from batchit.errors import TransientError

def run(value, ctx):
    log = Path("order.log")
    seen = log.read_text().split() if log.exists() else []
    log.write_text(" ".join([*seen, ctx.input]))
    if ctx.input == "in/a.txt" and "in/a.txt" not in seen:
        raise TransientError("busy, try again")
    return value
"""


def test_a_retry_that_is_due_runs_next_not_behind_the_whole_queue(project: Project) -> None:
    project.config(
        FLAKY.replace("ATTEMPTS", "2")
        .replace("backoff: 0.01", "backoff: 0")
        .replace("flaky:fetch", "ordered:run")
    )
    project.write({"ordered.py": ORDERED_MODULE, **{f"in/{n}.txt": n for n in "abcdef"}})
    project.build("-j", "1", "--batch-size", "1", "--executor", "thread")
    order = project.read("order.log").split()
    assert order.count("in/a.txt") == 2
    assert order.index("in/a.txt", 1) < order.index("in/f.txt"), order


def test_every_job_keeps_its_own_log_whatever_its_output_is_named(project: Project) -> None:
    shout = "[sh, -c, 'echo {stem} >&2; cat {in}']"
    project.config(
        'version: 1\nrules:\n  nested:\n    inputs: ["in/*.txt"]\n    output: "p/{stem}.txt"\n'
        f"    steps: [shell: {{argv: {shout}}}]\n"
        '  flat:\n    inputs: ["in/*.txt"]\n    output: "p__{stem}.txt"\n'
        f"    steps: [shell: {{argv: {shout}, env: {{X: flat}}}}]\n"
    )
    project.write({"in/a.txt": "a\n"})
    project.build()
    logs = project.root / ".batchit/runs" / project.manifest()["run_id"] / "logs"
    assert sorted(p.relative_to(logs).as_posix() for p in logs.rglob("*.log")) == [
        "p/a.txt.log",
        "p__a.txt.log",
    ]


def test_a_job_log_keeps_the_start_and_end_of_a_flood_of_output(project: Project) -> None:
    """A step printing megabytes (here 3 MB on a stream) has its log keep the first and the last
    half megabyte, saying how much was left out between: what explains a job is at its start (a
    tool's version, its settings) and its end (the error), and the rest would cost memory."""
    flood = "yes x | head -c 3000000"
    project.config(
        'version: 1\nrules:\n  sh:\n    inputs: ["in/*.txt"]\n    output: "sh/{stem}.txt"\n'
        f"    steps: [shell: {{argv: [sh, -c, 'echo FIRST >&2; {flood} >&2; echo LAST >&2; cat {{in}}']}}]\n"
        '  py:\n    inputs: ["in/*.txt"]\n    output: "py/{stem}.txt"\n'
        '    steps: [python: {function: "flood:f", version: "1"}]\n'
    )
    module = 'def f(value, ctx):\n    print("FIRST")\n    print("x" * 3_000_000)\n'
    module += '    print("LAST")\n    return value\n'
    project.write({"flood.py": module, "in/a.txt": "a\n"})
    project.build()
    logs = project.root / ".batchit/runs" / project.manifest()["run_id"] / "logs"
    for rule, unit in (("sh", "bytes"), ("py", "characters")):
        log = (logs / rule / "a.txt.log").read_text()
        assert len(log) < 1_100_000, rule
        assert "FIRST\n" in log and "LAST\n" in log, rule
        assert re.search(rf"\n\[\.\.\. \d+ {unit} left out \.\.\.\]\n", log), rule


def test_python_job_output_is_kept_in_the_run_logs(picky: Project) -> None:
    picky.build(expect=1)
    run_id = picky.manifest()["run_id"]
    log = picky.root / ".batchit/runs" / run_id / "logs" / "a.txt.log"
    assert "parsed in/a.txt" in log.read_text()


SURROGATES_MODULE = """\
import os
from batchit.errors import PermanentError

def f(value, ctx):
    name = os.fsdecode(b"caf\\xe9.txt")  # a Latin-1 file name, as Python decodes it: caf\\udce9.txt
    print("read", name)
    if value == b"bad":
        raise PermanentError(f"cannot parse {name}")
    return value
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_lone_surrogate_in_a_jobs_log_or_error_is_kept_escaped(project: Project, log_format: str) -> None:
    """A step naming a file whose name is not UTF-8 prints or raises a lone surrogate, which UTF-8
    has no bytes for: the events, the manifest, the log and the terminal get its escape instead
    of the build crashing unrecorded."""
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    steps: [python: {function: "surrogates:f", version: "1"}]\n'
    )
    project.write({"surrogates.py": SURROGATES_MODULE, "in/a.txt": "good", "in/b.txt": "bad"})
    result = project.build("--log-format", log_format, expect=1)
    assert "Traceback" not in result.stderr, result.describe()
    [failure] = project.manifest()["failures"]
    assert "cannot parse caf\\udce9.txt" in failure["message"], failure
    logs = project.root / ".batchit/runs" / project.manifest()["run_id"] / "logs"
    for stem in "ab":
        assert "read caf\\udce9.txt" in (logs / f"{stem}.txt.log").read_text(encoding="utf-8")


def test_failed_run_posts_an_alert_with_the_run_id_as_idempotency_key(picky: Project, webhook: str) -> None:
    picky.config(PICKY + f'alerts: {{webhook: "{webhook}", when: failure}}\n')
    picky.build(expect=1)
    assert len(Hooks.received) == 1
    headers, body = Hooks.received[0]
    assert headers["Idempotency-Key"] == picky.manifest()["run_id"] == body["run_id"]
    assert body["status"] == "failed"
    (failure,) = body["failures"]
    assert (failure["input"], failure["output"], failure["quarantined"]) == ("in/b.txt", "b.txt", True)


def test_successful_run_alerts_only_with_when_always(project: Project, webhook: str) -> None:
    project.config(f'version: 1\nalerts: {{webhook: "{webhook}", when: failure}}\n' + PICKY.split("\n", 1)[1])
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n"})
    project.build()
    assert Hooks.received == []
    project.config(project.read("batchit.yaml").replace("when: failure", "when: always"))
    project.build()
    assert [body["status"] for _, body in Hooks.received] == ["ok"]


def test_a_build_stopped_by_an_output_conflict_midway_alerts(project: Project, webhook: str) -> None:
    project.config(
        f'version: 1\nalerts: {{webhook: "{webhook}", when: failure}}\nrules:\n'
        '  pages:\n    inputs: ["src/*.txt"]\n    output: "{stem}.txt"\n    steps: [text.load: {}]\n'
        '  assets:\n    inputs: {rule: pages}\n    output: "{key8}.txt"\n    steps: [file.copy: {}]\n'
    )
    project.write({"src/a.txt": "same\n", "src/b.txt": "same\n"})  # one key8 name for both assets
    assert project.run("build", "--no-progress").code == 2
    [(_, body)] = Hooks.received
    assert (body["status"], body["run_id"]) == ("failed", project.manifest()["run_id"])


def test_refused_alert_leaves_the_exit_code_alone(picky: Project, webhook: str) -> None:
    Hooks.status = 400
    picky.config(PICKY + f'alerts: {{webhook: "{webhook}"}}\n')
    result = picky.build(expect=1)
    assert "not delivered: HTTP 400" in result.stderr
    host = webhook.split("/")[2]
    assert f"alert to http://{host}/... not delivered" in result.stderr, "its path may be a secret"
    assert webhook not in result.stderr


def test_a_busy_webhook_gets_the_alert_again_after_its_retry_after(picky: Project, webhook: str) -> None:
    Hooks.script = [(503, {"Retry-After": "2"})]
    picky.config(PICKY + f'alerts: {{webhook: "{webhook}"}}\n')
    result = picky.build(expect=1)
    assert "not delivered" not in result.stderr
    first, second = Hooks.times
    assert second - first >= 1.9


def test_a_webhook_that_redirects_is_not_asked_again(picky: Project, webhook: str) -> None:
    Hooks.script = [(302, {"Location": webhook})]
    picky.config(PICKY + f'alerts: {{webhook: "{webhook}"}}\n')
    result = picky.build(expect=1)
    assert "not delivered: HTTP 302" in result.stderr
    assert len(Hooks.received) == 1


@pytest.mark.slow
def test_unreachable_webhook_leaves_the_exit_code_alone(project: Project) -> None:
    project.config(
        'version: 1\nalerts: {webhook: "http://127.0.0.1:9/hook", when: always}\n' + PICKY.split("\n", 1)[1]
    )
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n"})
    result = project.build()
    assert "not delivered" in result.stderr


def test_replay_of_a_failed_run_reproduces_its_failures(picky: Project) -> None:
    picky.build(expect=1)
    failed_run = picky.manifest()["run_id"]
    replayed = picky.run("replay", failed_run, "--failed", "--no-progress")
    assert replayed.code == 1, replayed.describe()
    assert picky.manifest()["failures"][0]["input"] == "in/b.txt"
    assert picky.manifest()["summary"]["built"] == 0

    picky.write({"in/b.txt": "bad, but differently\n"})
    again = picky.run("replay", failed_run, "--failed", "--no-progress")
    assert f"input changed since run {failed_run}: in/b.txt" in again.stderr


def test_replay_of_a_run_that_held_a_quarantined_input_runs_it_again(picky: Project) -> None:
    picky.build(expect=1)
    picky.build("--force", expect=1)  # runs a.txt and c.txt again, holds the quarantined b.txt
    holding_run = picky.manifest()["run_id"]
    replayed = picky.run("replay", holding_run, "--failed", "--no-progress")
    assert replayed.code == 1, replayed.describe()
    assert picky.manifest()["failures"][0]["input"] == "in/b.txt"
    assert picky.manifest()["summary"]["built"] == 0


def test_replay_of_an_unknown_run_exits_2(picky: Project) -> None:
    picky.build(expect=1)
    assert picky.run("replay", "20000101T000000000Z-000000").code == 2


VALIDATED = """\
version: 1
rules:
  copy:
    inputs: ["in/*"]
    output: "{name}"
    validate: {max_size: 10B, extensions: [txt], checksums: SHA256SUMS}
    steps:
      - file.copy: {}
"""


def test_pre_flight_validation_quarantines_before_any_step_runs(project: Project) -> None:
    good, bad = b"fine\n", b"tampered\n"
    project.config(VALIDATED)
    project.write(
        {
            "in/ok.txt": good,
            "in/big.txt": b"x" * 11,
            "in/image.png": b"png?",
            "in/altered.txt": bad,
            "in/unlisted.txt": good,
            "SHA256SUMS": "".join(
                f"{hashlib.sha256(data).hexdigest()}  in/{name}\n"
                for name, data in [
                    ("ok.txt", good),
                    ("big.txt", b"x" * 11),
                    ("image.png", b"png?"),
                    ("altered.txt", b"original\n"),
                ]
            ),
        }
    )
    project.build(expect=1)
    reasons = {f["input"]: f["message"] for f in project.manifest()["failures"]}
    assert project.read("_build/ok.txt") == "fine\n"
    assert "over validate.max_size 10" in reasons["in/big.txt"]
    assert "extension not in validate.extensions" in reasons["in/image.png"]
    assert "does not match its checksum" in reasons["in/altered.txt"]
    assert "not listed in SHA256SUMS" in reasons["in/unlisted.txt"]
    assert project.manifest()["summary"]["quarantined"] == 4


def test_an_output_failing_its_contract_leaves_no_folder_it_made(project: Project) -> None:
    project.config(
        'version: 1\nrules:\n  copy:\n    inputs: ["in/*.txt"]\n    output: "deep/er/{stem}.txt"\n'
        '    expect: {contains: "ok"}\n    steps: [file.copy: {}]\n'
    )
    project.write({"in/a.txt": "not good\n"})
    project.build(expect=1)
    assert "does not contain" in project.manifest()["failures"][0]["message"]
    assert not (project.root / "_build/deep").exists()


SLOW_STEP = """\
import time

def slow(value, ctx):
    time.sleep(0.005)  # over OVERLAP_FROM: its output is published beside the next job's steps
    return value
"""


def test_outputs_published_beside_the_next_jobs_steps_keep_their_own_results(project: Project) -> None:
    """A worker writes a job's output while the next job of its batch runs: a contract failing there
    fails that job alone, and every other job gets its own output."""
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        '    expect: {contains: "ok"}\n    steps: [python: {function: "slow:slow", version: "1"}]\n'
    )
    project.write(
        {"slow.py": SLOW_STEP, **{f"in/{n}.txt": f"ok {n}\n" for n in range(6)}, "in/3.txt": "bad\n"}
    )
    project.build("-j", "1", "--batch-size", "6", expect=1)
    (failure,) = project.manifest()["failures"]
    assert failure["quarantine"] == ".batchit/quarantine/r/in/3.txt"
    assert "does not contain 'ok'" in failure["message"]
    assert sorted(path.name for path in (project.root / "_build").glob("*.txt")) == [
        f"{n}.txt" for n in (0, 1, 2, 4, 5)
    ]
    assert all(project.read(f"_build/{n}.txt") == f"ok {n}\n" for n in (0, 1, 2, 4, 5))


@pytest.mark.parametrize("death", ["os._exit(1)", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_a_job_whose_worker_process_dies_fails_alone_and_the_others_build(
    project: Project, death: str
) -> None:
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.out"\n'
        '    steps: [python: {function: "fatal:f", version: "1"}]\n'
    )
    fatal = "import os, signal\n\ndef f(value, ctx):\n"
    fatal += f"    if value == b'fatal':\n        {death}\n    return value\n"
    inputs = {f"in/{n:03}.txt": str(n) for n in range(PROCESSES_FROM)}  # enough for worker processes
    project.write({"fatal.py": fatal, **inputs, "in/050.txt": "fatal"})
    project.build("-j", "2", expect=1)
    (failure,) = project.manifest()["failures"]
    assert (failure["input"], failure["class"]) == ("in/050.txt", "WorkerCrashed")
    assert "died while running it" in failure["message"]
    assert project.manifest()["summary"]["built"] == PROCESSES_FROM - 1
    assert not (project.root / "_build/050.out").exists()


def test_workers_dying_while_others_finish_never_crash_the_build(project: Project) -> None:
    """Each death breaks the process pool; a batch dispatched before the coordinator has seen that
    goes to a fresh pool instead of failing the whole build (it used to crash with a traceback)."""
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.out"\n'
        '    steps: [python: {function: "fatal:f", version: "1"}]\n'
    )
    fatal = "import os, signal\n\ndef f(value, ctx):\n    if value == b'fatal':\n"
    fatal += "        os.kill(os.getpid(), signal.SIGKILL)\n    return value\n"
    inputs = {f"in/{n:03}.txt": "fatal" if n % 2 == 0 else str(n) for n in range(PROCESSES_FROM)}
    project.write({"fatal.py": fatal, **inputs})
    project.build("-j", "4", "--batch-size", "1", expect=1)  # more workers, more teardown races
    failures = project.manifest()["failures"]
    assert {f["input"] for f in failures} == {p for p, text in inputs.items() if text == "fatal"}
    assert {f["class"] for f in failures} == {"WorkerCrashed"}
    assert project.manifest()["summary"]["built"] == len(inputs) - len(failures)


@pytest.mark.parametrize("inputs", [3, PROCESSES_FROM], ids=["threads", "worker processes"])
def test_a_step_leaving_a_thread_running_neither_hangs_the_build_nor_loses_its_record(
    project: Project, inputs: int
) -> None:
    """Python waits for every thread that is no daemon before a process ends: a worker process, which
    the pool's shutdown waits for (the record then waits too), or batchit itself once it is done.
    The author is told, whether the step or its module's import started the thread."""
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.out"\n'
        '    steps: [python: {function: "lingering:f", version: "1"}]\n'
    )
    lingering = "import threading, time\n\n"
    lingering += 'threading.Thread(target=time.sleep, args=(120,), name="imported").start()\n\n'
    lingering += "def f(value, ctx):\n"
    lingering += '    threading.Thread(target=time.sleep, args=(120,), name="stepped").start()\n'
    lingering += "    return value\n"
    project.write({"lingering.py": lingering, **{f"in/{n:03}.txt": str(n) for n in range(inputs)}})
    result = project.run("build", "--no-progress", "-j", "2", timeout=60)
    assert result.code == 0, result.describe()
    assert project.manifest()["summary"]["built"] == inputs
    if inputs < PROCESSES_FROM:  # in batchit's own process, which exits without them
        assert "warning: a step left 4 thread(s) running" in result.stderr, result.describe()
    else:  # in worker processes, ended at once rather than waited for
        warning = "warning: a step left threads running in worker processes (imported, stepped)"
        assert warning in result.stderr, result.describe()


SUSPECTS_MODULE = """\
import os, signal, time

def f(value, ctx):
    with open(ctx.root / "log", "a") as log:
        log.write(f"start {value.decode()}\\n")
    died = ctx.root / "first-died"
    if value == b"second" or (value == b"first" and not died.exists()):
        died.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if value in (b"first", b"innocent"):  # suspects, once `first` killed the pool: then alone
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:  # a window for any other job to (wrongly) start
            time.sleep(0.01)
    with open(ctx.root / "log", "a") as log:
        log.write(f"end {value.decode()}\\n")
    return value
"""


def test_a_suspect_runs_alone_so_only_the_culprit_is_blamed(project: Project) -> None:
    """The jobs of batches whose worker died run again alone, one after another: were another job
    to die beside one, that one would be blamed for a death it did not cause, and its input
    quarantined. `first` dies only once, so both suspects build when run alone."""
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.out"\n'
        "    concurrency: 2\n"  # `first` and `innocent` in flight together, nothing else
        '    steps: [python: {function: "suspects:f", version: "1"}]\n'
    )
    inputs = {f"in/{n:03}.txt": str(n) for n in range(PROCESSES_FROM)}
    inputs.update({"in/000.txt": "first", "in/001.txt": "innocent", "in/050.txt": "second"})
    project.write({"suspects.py": SUSPECTS_MODULE, **inputs})
    project.build("-j", "2", "--batch-size", "1", expect=1)
    assert [f["input"] for f in project.manifest()["failures"]] == ["in/050.txt"]
    log = project.read("log").splitlines()
    for suspect in ("first", "innocent"):
        alone = len(log) - 1 - log[::-1].index(f"start {suspect}")  # its last run
        assert log[alone + 1] == f"end {suspect}", f"no other job starts while {suspect} runs alone"


@pytest.mark.parametrize(
    ("flag", "last_built"), [(None, True), ("--keep-going", True), ("--fail-fast", False)]
)
def test_builds_keep_going_by_default_and_stop_with_fail_fast(
    project: Project, flag: str | None, last_built: bool
) -> None:
    project.config(PICKY)
    inputs = {f"in/{n}.txt": f"{n}\n" for n in "bcdef"}
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "bad\n", **inputs})
    result = project.build("-j", "1", "--batch-size", "1", *([flag] if flag else []), expect=1)
    # one worker takes jobs in input order; fail-fast stops scheduling once `a` fails
    assert (project.root / "_build/f.txt").exists() is last_built
    counted = [
        int(n) for n in re.findall(r"(\d+) (?:built|quarantined|not run)", result.stdout.splitlines()[0])
    ]
    assert sum(counted) == 6, f"every job is counted once in the summary: {result.stdout}"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_fail_fast_starts_no_job_after_the_first_failure(project: Project, workers: str) -> None:
    """Batches are sized by the build (several jobs each) and queued ahead of the workers: neither
    may start another job once one failed, or `--fail-fast` quarantines inputs it never had to try."""
    project.config(PICKY)
    project.write({"picky.py": PICKY_MODULE, **{f"in/{n:02d}.txt": f"bad {n}\n" for n in range(24)}})
    result = project.build("-j", workers, "--fail-fast", expect=1)
    failed = len(project.manifest()["failures"])
    assert 1 <= failed <= int(workers), result.stdout  # those running when the first one failed
    assert f"{failed} quarantined, {24 - failed} not run" in result.stdout, result.stdout


def test_jobs_downstream_of_a_quarantined_input_go_on_without_it(picky: Project) -> None:
    picky.config(
        PICKY
        + """\
  joined:
    inputs: {rule: parse}
    aggregate: true
    output: all.txt
    steps:
      - python: {function: "joiner:join", version: "1"}
"""
    )
    picky.write({"joiner.py": "def join(items, ctx):\n    return ''.join(i.read_text() for i in items)\n"})
    picky.build(expect=1)
    assert picky.read("_build/all.txt") == "A\nC\n"


def test_strict_fails_a_run_that_minted_its_signing_key(picky: Project) -> None:
    picky.write({"in/b.txt": "fine\n"})
    first = picky.run("build", "--no-progress", "--strict")
    assert first.code == 1, first.describe()
    assert "--strict fails the build: a signing key was created during the run" in first.stdout
    picky.build("--strict")


def test_quarantine_and_release_enter_the_audit_trail(picky: Project) -> None:
    picky.build(expect=1)
    picky.run("quarantine", "release")
    audit = (picky.root / ".batchit/audit.log").read_text().splitlines()
    kinds = [json.loads(line)["kind"] for line in audit]
    assert kinds.count("quarantine") == 1
    assert kinds[-1] == "release"
    assert picky.run("audit", "verify").code == 0


THUMBS = """\
version: 1
rules:
  thumbs:
    inputs: ["photos/*"]
    output: "{name}.webp"
    validate: {image: {max_pixels: 1000000, formats: [JPEG, PNG]}}
    steps:
      - image.load: {}
      - image.resize: {width: 32}
      - image.save: {format: webp, quality: low}
"""


def encoded(kind: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A real image of `size`, made with Pillow, encoded as `kind` (JPEG or PNG)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 80, 40)).save(buffer, kind)
    return buffer.getvalue()


def test_broken_image_files_are_quarantined_and_the_rest_build(project: Project) -> None:
    jpeg, png = encoded("JPEG"), encoded("PNG")
    project.config(THUMBS)
    project.write(
        {
            "photos/good.jpg": jpeg,
            "photos/truncated.jpg": jpeg[: len(jpeg) // 2],
            "photos/truncated.png": png[: len(png) // 2],
            "photos/empty.jpg": b"",
            "photos/text.jpg": b"this is not a picture\n",
            "photos/bomb.png": encoded("PNG", (1200, 1000)),  # 1.2 MP, over the rule's max_pixels
        }
    )
    project.build(expect=1)
    assert (project.root / "_build/good.jpg.webp").read_bytes()[:4] == b"RIFF"
    quarantined = {f["input"] for f in project.manifest()["failures"] if f["quarantine"]}
    assert quarantined == {
        f"photos/{n}" for n in ("truncated.jpg", "truncated.png", "empty.jpg", "text.jpg", "bomb.png")
    }
    assert all(f["class"] == "PermanentError" for f in project.manifest()["failures"])

    project.build(expect=1)
    assert project.manifest()["summary"] == {**project.manifest()["summary"], "built": 0, "quarantined": 5}

    project.write({"photos/truncated.jpg": jpeg})
    project.build(expect=1)
    assert (project.root / "_build/truncated.jpg.webp").exists()
    assert project.manifest()["summary"]["quarantined"] == 4


class Exit(NamedTuple):
    """A `python` step that tries to end the process, and how many inputs the build has."""

    statement: str
    inputs: int


EXITS = {
    "sys.exit(0) in a thread": Exit("sys.exit(0)", 3),
    "sys.exit(3) in a thread": Exit("sys.exit(3)", 3),
    "KeyboardInterrupt in a thread": Exit("raise KeyboardInterrupt", 3),
    "sys.exit(3) in a worker process": Exit("sys.exit(3)", PROCESSES_FROM),
    "KeyboardInterrupt in a worker process": Exit("raise KeyboardInterrupt", PROCESSES_FROM),
    "asyncio's CancelledError in a thread": Exit("raise __import__('asyncio').CancelledError()", 3),
    "a bare BaseException in a worker process": Exit("raise BaseException('odd')", PROCESSES_FROM),
}


@pytest.mark.parametrize("case", EXITS.values(), ids=EXITS.keys())
def test_a_step_that_exits_or_raises_keyboard_interrupt_fails_only_its_job(
    project: Project, case: Exit
) -> None:
    project.config(PICKY.replace("picky:parse", "quitter:parse"))
    quitter = f"import sys\n\ndef parse(value, ctx):\n    if value == b'0\\n':\n        {case.statement}\n"
    project.write({"quitter.py": quitter + "    return value\n"})
    project.write({f"in/{n}.txt": f"{n}\n" for n in range(case.inputs)})
    result = project.build("-j", "2", expect=1)
    assert "step 1 (python) raised" in result.stderr
    manifest = project.manifest()
    assert manifest["status"] == "failed"
    assert [f["input"] for f in manifest["failures"]] == ["in/0.txt"]
    assert manifest["summary"]["built"] == case.inputs - 1
    assert not (project.root / ".batchit/build-in-progress").exists()


def test_a_command_killed_by_a_stop_signal_is_retried_and_never_quarantines_its_input(
    project: Project,
) -> None:
    project.config(
        """\
        version: 1
        rules:
          work:
            inputs: ["in/*.txt"]
            output: "{stem}.txt"
            retry: {attempts: 2, backoff: 0.01}
            steps:
              - shell: {argv: ["sh", "-c", "echo run >> tries; kill -TERM $$"]}
        """
    )
    project.write({"in/a.txt": "a\n"})
    result = project.build(expect=1)
    assert "sh exited with code -15" in result.stderr
    assert project.read("tries") == "run\nrun\n"
    assert project.manifest()["failures"][0]["quarantine"] is None
    assert not (project.root / ".batchit/quarantine").exists()


def test_an_output_that_cannot_be_written_fails_without_quarantining_its_input(project: Project) -> None:
    project.config(PICKY.replace('output: "{stem}.txt"', 'output: "{stem}/out.txt"'))
    project.write({"picky.py": PICKY_MODULE, "in/a.txt": "a\n", "_build/a": "a file of mine\n"})
    result = project.build(expect=1)
    assert "cannot write _build/a/out.txt" in result.stderr
    assert project.manifest()["failures"][0]["quarantine"] is None
    assert not (project.root / ".batchit/quarantine").exists()
    (project.root / "_build/a").unlink()
    project.build()
    assert project.read("_build/a/out.txt") == "A\n"


def test_a_worker_that_dies_while_writing_leaves_no_temporary_file(project: Project) -> None:
    """As the out-of-memory killer would: the worker goes with its output half written."""
    project.config(
        'version: 1\nrules:\n  r:\n    inputs: ["in/*.txt"]\n    output: "{stem}.out"\n'
        '    steps: [python: {function: "fatal:f", version: "1"}]\n'
    )
    fatal = (
        "import os, signal\n\ndef f(value, ctx):\n    if value == b'fatal':\n"
        "        (ctx.root / '_build/.batchit-tmp-0123456789ab-0-050.out').write_bytes(b'half')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n    return value\n"
    )
    inputs = {f"in/{n:03}.txt": str(n) for n in range(PROCESSES_FROM)}  # enough for worker processes
    project.write({"fatal.py": fatal, **inputs, "in/050.txt": "fatal", "_build/.keep": ""})
    project.build("-j", "2", expect=1)
    assert not list((project.root / "_build").glob(".batchit-tmp-*"))
    assert not (project.root / ".batchit/build-in-progress").exists()


def test_control_characters_a_command_wrote_reach_the_terminal_escaped(project: Project) -> None:
    """A failing command's stderr is quoted in its failure: an escape sequence or a bell in it would
    recolour or ring the user's terminal. They are shown escaped; the manifest keeps the text."""
    project.config(
        'version: 1\nrules:\n  loud:\n    inputs: ["in/*.txt"]\n    output: "{stem}.txt"\n'
        "    steps: [shell: {argv: [sh, -c, 'printf \"\\033[31mred\\007 bell\" >&2; exit 5']}]\n"
    )
    project.write({"in/a.txt": "a\n"})
    result = project.build(expect=1)
    said = result.stdout + result.stderr
    assert not {"\x1b", "\x07"} & set(said), repr(said)
    assert "\\x1b[31mred\\x07 bell" in result.stderr, result.describe()
    assert "\x1b[31mred\x07 bell" in project.manifest()["failures"][0]["message"]
