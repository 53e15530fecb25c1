"""Third-party operators, as their authors meet batchit: installed through the `batchit.operators`
entry points (a `.dist-info` on the path, as pip would leave it), checked when a config uses them,
and run in the build's pools."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
from conftest import Project, wait_until

from batchit.execute.pools import PROCESSES_FROM

HEADER = """\
from typing import Any, ClassVar

from batchit.operators.base import JobContext, Operator, as_text
"""

GOOD = """\
class Upper(Operator):
    name = "my.upper"
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}
    takes = frozenset({"file"})

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        return as_text(value, self.name).upper()
"""


def install(site: Path, module: str, source: str, entry_points: dict[str, str]) -> dict[str, str]:
    """Install distribution `myops` 1.0 into `site`: module `module` with `source`, and the entry
    points `name -> target` of the group `batchit.operators`; return the environment that sees it."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / "myops-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myops\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text("[batchit.operators]\n" + lines)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def config(operator: str, rule: str = "") -> str:
    """A project with one rule (with `rule`'s lines added) whose one step is `operator`."""
    return f"""\
version: 1
out: _build
rules:
  loud:
    inputs: ["src/*.txt"]
    output: "{{stem}}.txt"
{rule}    steps:
      - {operator}: {{}}
"""


def op_class(body: str) -> str:
    """An operator class `Op` named `my.op` with `body` (class attribute lines) and a `run`."""
    lines = ["class Op(Operator):", '    name = "my.op"', *(f"    {line}" for line in body.splitlines())]
    return "\n".join([*lines, "    def run(self, value, ctx, **params):", '        return b""', ""])


BROKEN = {
    "no-version": (op_class(""), "plugin:Op sets no version"),
    "number-version": (op_class("version = 2"), "plugin:Op sets no version"),
    "bad-schema": (
        op_class('version = "1"\nparams_schema = {"type": "objekt"}'),
        "plugin:Op has a params_schema that is not a valid JSON Schema",
    ),
    "not-an-operator": ("class Op:\n    pass\n", "plugin:Op is not a subclass of batchit.operators.base"),
    "raises-at-import": ('raise RuntimeError("no licence file")\n', "RuntimeError: no licence file"),
    "exits-at-import": ('import sys\nsys.exit("cannot start")\n', "SystemExit: cannot start"),
    "syntax-error": ("def run(:\n", "SyntaxError: invalid syntax"),
    "gpu-resources": (op_class('version = "1"\nresources = "gpu"'), "resources = 'gpu': it must be"),
    "takes-a-string": (op_class('version = "1"\ntakes = "file"'), "takes = 'file': it must be a frozenset"),
    "needs-arguments": (
        op_class('version = "1"\ndef __init__(self, size):\n    self.size = size'),
        "cannot be made without arguments",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_operator_is_a_config_error_naming_the_plugin(
    project: Project, tmp_path: Path, case: str
) -> None:
    source, reason = BROKEN[case]
    env = install(tmp_path / "site", "plugin", HEADER + source, {"my.op": "plugin:Op"})
    project.config(config("my.op"))
    project.write({"src/a.txt": "a\n"})
    result = project.run("build", "--no-progress", env=env)
    assert result.code == 2, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert "batchit.yaml:8:9: rule 'loud': step 1: operator 'my.op' cannot be loaded" in result.stderr
    assert reason in result.stderr, result.describe()
    assert "(distribution myops 1.0, entry point my.op = plugin:Op)" in result.stderr, result.describe()
    assert not (project.root / ".batchit").exists()


FAULTY_HOOKS = {
    "key_files": "def key_files(self, params, root):\n    raise ValueError('no index')",
    "key_folders": (
        "imports_user_code = True\ndef key_folders(self, params, root):\n    raise ValueError('no index')"
    ),
    "library_versions": "def library_versions(self):\n    raise ValueError('no index')",
    "param_problem": "@classmethod\ndef param_problem(cls, params, root):\n    raise ValueError('no index')",
}


@pytest.mark.parametrize("hook", sorted(FAULTY_HOOKS))
def test_an_operator_method_that_raises_as_the_build_plans_is_blamed_on_its_package(
    project: Project, tmp_path: Path, hook: str
) -> None:
    """The methods batchit calls before any job runs (what enters the key, what the parameters
    may not be) are the plugin's code: one that raises stops the command with exit 2 naming the
    operator and its package, never with a traceback."""
    source = op_class('version = "1"\n' + FAULTY_HOOKS[hook])
    env = install(tmp_path / "site", "plugin", HEADER + source, {"my.op": "plugin:Op"})
    project.config(config("my.op"))
    project.write({"src/a.txt": "a\n"})
    for command in ("plan", "build"):
        result = project.run(command, env=env)
        assert result.code == 2, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
        assert f"its {hook}() raised ValueError: no index" in result.stderr, result.describe()
        assert "fix or reinstall" in result.stderr, result.describe()
    assert not (project.root / "_build").exists()


def test_a_plugin_that_exits_as_it_imports_spoils_no_error_about_another(
    project: Project, tmp_path: Path
) -> None:
    """Telling which operators can start an aggregate imports every one: one whose module exits
    as it imports must not replace that config error with its own exit."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "exiting.py").write_text("import sys\nsys.exit('bye')\n")
    env = install(site, "plugin", HEADER + GOOD, {"my.upper": "plugin:Upper", "my.gone": "exiting:Op"})
    project.config(config("my.upper", "    aggregate: true\n").replace("{stem}.txt", "all.txt"))
    project.write({"src/a.txt": "a\n"})
    result = project.run("build", "--no-progress", env=env)
    assert result.code == 2, result.describe()
    assert "step 1 (my.upper) takes one input file, but gets the list of its input files" in result.stderr
    assert "bye" not in result.stderr, result.describe()


TAGGING = """\
class Tag(Operator):
    name = "my.tag"
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {"tags": {"type": "array"}}}

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        params["tags"].append("seen")  # careless, but its own business
        return as_text(value, self.name).strip() + " " + " ".join(params["tags"])
"""


def test_an_operator_changing_its_parameters_changes_nothing_for_the_next_job(
    project: Project, tmp_path: Path
) -> None:
    """The rule's jobs share one set of parameters: a list an operator appends to must not grow
    from job to job, or each output would depend on how many jobs ran before it in its worker."""
    env = install(tmp_path / "site", "plugin", HEADER + TAGGING, {"my.tag": "plugin:Tag"})
    project.config(config("my.tag").replace("my.tag: {}", "my.tag: {tags: [new]}"))
    project.write({f"src/{n}.txt": f"{n}\n" for n in range(3)})
    result = project.run("build", "--no-progress", "-j", "1", env=env)
    assert result.code == 0, result.describe()
    assert [project.read(f"_build/{n}.txt") for n in range(3)] == [f"{n} new seen" for n in range(3)]


def test_the_readme_plugin_example_installs_and_builds(project: Project, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own operators: plugins", 1)[1].split("\n## ", 1)[0]
    entry = re.search(r'^"(acme\.\w+)" = "(\w+):(\w+)"$', section, flags=re.MULTILINE)
    assert entry is not None
    source = section.split("```python\n", 1)[1].split("```", 1)[0]
    env = install(tmp_path / "site", entry[2], source, {entry[1]: f"{entry[2]}:{entry[3]}"})
    project.config(config(entry[1]).replace(": {}", ': {end: "!"}'))
    project.write({"src/a.txt": "alpha\n", "src/b.txt": ""})
    result = project.run("build", "--no-progress", env=env)
    assert result.code == 1, result.describe()
    assert project.read("_build/a.txt") == "ALPHA\n!"
    [failure] = project.manifest()["failures"]
    assert failure["input"] == "src/b.txt" and failure["quarantine"], failure


def test_a_plugin_starting_a_thread_as_it_imports_leaves_no_forkserver_behind(
    project: Project, tmp_path: Path
) -> None:
    """The forkserver of the worker processes imports the build's operators once: a thread, not a
    daemon, that a plugin starts at its top level would keep it running after batchit is gone."""
    source = "import threading, time\n" + HEADER + GOOD
    source += 'threading.Thread(target=time.sleep, args=(3600,), name="plugin-sleeper").start()\n'
    site = tmp_path / "site"
    env = install(site, "plugin", source, {"my.upper": "plugin:Upper"})
    project.config(config("my.upper"))
    project.write({f"src/{n:03}.txt": "a\n" for n in range(PROCESSES_FROM)})
    result = project.run("build", "--no-progress", "-j", "2", env=env)
    assert result.code == 0, result.describe()
    assert project.read("_build/000.txt") == "A\n"
    assert "warning: a step left 1 thread(s) running (plugin-sleeper)" in result.stderr, result.describe()

    def forkservers() -> list[str]:
        """The command lines of this test's forkservers (they name the plugin's folder)."""
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().decode(errors="replace")
            except OSError:  # the process ended meanwhile
                continue
            if "forkserver" in text and str(site) in text:
                found.append(text)
        return found

    wait_until(lambda: not forkservers(), "the forkserver to end with batchit", timeout=10)
