"""Files edited while their job runs (issue 2: "an input that changes while its job runs is detected
after the job and the result is not recorded as up to date"). Such an output may have been made
from the new bytes under the old bytes' action key, so it must reach no cache entry and no twin:
putting the file back later must never bring those bytes back.

A `python` step edits the file itself, in the middle of its job, which is what a user saving it at
that moment does, on demand and without timing.
"""

from __future__ import annotations

from conftest import Project


def one_rule(output: str, *steps: str) -> str:
    """A config of one rule, `work`, from src/*.txt to `output` through `steps`."""
    head = f'version: 1\nrules:\n  work:\n    inputs: ["src/*.txt"]\n    output: "{output}"\n    steps:\n'
    return head + "".join(f"      - {step}\n" for step in steps)


EDITING = one_rule("{stem}.txt", 'python: {function: "editor:work", version: "1"}')

EDITOR_MODULE = """\
def work(value, ctx):
    path = ctx.root / ctx.input
    marker = ctx.root / ("edit-" + path.name)
    if marker.exists():  # the user saves the input while its job runs, before the job reads it
        path.write_bytes(marker.read_bytes())
        marker.unlink()
    return b"OUT:" + path.read_bytes()
"""


def test_an_input_edited_while_its_job_ran_never_comes_back_from_the_cache(project: Project) -> None:
    project.config(EDITING)
    project.write({"editor.py": EDITOR_MODULE, "src/b.txt": "old\n", "edit-b.txt": "new\n"})
    edited = project.build()
    assert "changed while" in edited.stderr, edited.describe()
    assert project.read("_build/b.txt") == "OUT:new\n"
    project.build()  # redone from the new bytes
    project.write({"src/b.txt": "old\n"})  # put back: the first build's key again
    project.build()
    assert project.read("_build/b.txt") == "OUT:old\n"
    assert "src/b.txt changed while the job of _build/b.txt ran" in edited.stderr, "the warning names it"


TWINS = """\
version: 1
rules:
  editor:
    inputs: ["trigger.txt"]
    output: "edited/{name}"
    steps:
      - python: {function: "twins:edit_b", version: "1"}
  shout:
    inputs: ["src/*.txt", {rule: editor}]
    output: "shout/{name}"
    steps:
      - text.load: {}
      - text.replace: {pattern: "o", replacement: "O"}
"""
"""`shout` runs once `editor` is done, whose job edits src/b.txt after planning hashed it."""

TWINS_MODULE = """\
def edit_b(value, ctx):
    (ctx.root / "src/b.txt").write_text("new\\n")
    return b"edited"
"""


def test_a_twin_of_a_job_whose_input_was_edited_runs_itself(project: Project) -> None:
    """`c` had `b`'s bytes when planned, so its job has `b`'s key and would get a copy of `b`'s
    output; but `b`'s job read the edited input."""
    project.config(TWINS)
    project.write({"twins.py": TWINS_MODULE, "trigger.txt": "go", "src/b.txt": "old\n", "src/c.txt": "old\n"})
    edited = project.build("-j", "1", "--executor", "thread")  # b runs first, c is its twin
    assert project.read("_build/shout/b.txt") == "new\n"
    assert project.read("_build/shout/c.txt") == "Old\n"
    assert "src/b.txt changed while the job of _build/shout/b.txt ran" in edited.stderr, edited.describe()
    project.build()
    assert project.read("_build/shout/c.txt") == "Old\n"


RENDER = "template.render: {template: page.j2}"
TEMPLATED = one_rule(
    "{stem}.html",
    'python: {function: "saver:save", version: "1", path: page.j2, marker: edit-template}',
    RENDER,
)

SAVER_MODULE = """\
def save(value, ctx, path, marker):
    marker = ctx.root / marker
    if marker.exists():  # the user saves `path` while the job runs, with the marker's text
        (ctx.root / path).write_text(marker.read_text())
        marker.unlink()
    return value.read_text() if hasattr(value, "read_text") else value
"""


def test_a_file_a_step_names_edited_while_its_job_ran_is_caught_like_an_input(project: Project) -> None:
    project.config(TEMPLATED)
    project.write(
        {
            "saver.py": SAVER_MODULE,
            "page.j2": "v1:{{ content }}",
            "edit-template": "v2:{{ content }}",
            "src/a.txt": "a",
        }
    )
    edited = project.build()
    assert "page.j2 changed while the job of _build/a.html ran" in edited.stderr, edited.describe()
    assert project.read("_build/a.html") == "v2:a"
    assert "1 of 1 jobs to do" in project.run("plan").stdout, "not recorded as up to date"
    project.build()
    project.write({"page.j2": "v1:{{ content }}"})  # put back: the first build's key again
    project.build()
    assert project.read("_build/a.html") == "v1:a"


INCLUDING = one_rule(
    "{stem}.html", RENDER, 'python: {function: "saver:save", version: "1", path: part.txt, marker: edit-part}'
)


def test_an_include_edited_after_its_job_read_it_is_caught(project: Project) -> None:
    """The job's key records its discovered dependencies once it is done: with the include's new
    bytes, the output rendered from the old ones would pass for up to date."""
    project.config(INCLUDING)
    project.write(
        {
            "saver.py": SAVER_MODULE,
            "page.j2": "{% include 'part.txt' %}:{{ content }}",
            "part.txt": "A",
            "edit-part": "B",
            "src/a.txt": "a",
        }
    )
    edited = project.build()
    assert project.read("_build/a.html") == "A:a"
    assert "1 of 1 jobs to do" in project.run("plan").stdout, "not recorded as up to date"
    assert "part.txt changed while the job of _build/a.html ran" in edited.stderr, edited.describe()
    project.build()
    assert project.read("_build/a.html") == "B:a"
