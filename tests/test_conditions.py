"""`when:` conditions through the real command: what `input` offers, and failures as config errors."""

from __future__ import annotations

import textwrap
from typing import NamedTuple

import pytest
from conftest import Project


def config(rules: str, flags: str = "{level: 1}") -> str:
    """A config with flags and the given rules (dedented)."""
    return f"version: 1\nflags: {flags}\nrules:\n" + textwrap.indent(textwrap.dedent(rules), "  ")


def test_input_ext_agrees_with_the_ext_placeholder(project: Project) -> None:
    project.write(
        {
            "docs/v1.2/README": "readme\n",
            "docs/.hidden": "hidden\n",
            "docs/a.txt": "text\n",
            "batchit.yaml": config(
                """\
                docs:
                  inputs: ["docs/**"]
                  output: "{path}.out"
                  steps:
                    - text.load: {}
                    - text.replace: {pattern: "^", replacement: "ext={ext} ", when: "input.ext == ''"}
                """
            ),
        }
    )
    project.build()
    assert project.read("_build/v1.2/README.out") == "ext= readme\n"
    assert project.read("_build/.hidden.out") == "ext= hidden\n"
    assert project.read("_build/a.out") == "text\n"


def test_input_size_of_an_upstream_output_is_its_real_size(project: Project) -> None:
    project.write(
        {
            "pages/big.md": "x" * 100,
            "pages/small.md": "x",
            "batchit.yaml": config(
                """\
                pages:
                  inputs: ["pages/*.md"]
                  output: "{path}.txt"
                  steps: [file.copy: {}]
                marked:
                  inputs: {rule: pages}
                  output: "marked/{path}"
                  steps:
                    - text.load: {}
                    - text.replace: {pattern: "^", replacement: "BIG ", when: "input.size > 50"}
                """
            ),
        }
    )
    project.build()
    assert project.read("_build/marked/big").startswith("BIG x")
    assert project.read("_build/marked/small") == "x"
    project.write({"pages/small.md": "y" * 100})
    project.build()
    assert project.read("_build/marked/small").startswith("BIG y")
    project.config(project.read("batchit.yaml").replace("> 50", "> 60"))
    project.build()  # sizes recorded for upstream outputs that did not run
    assert project.read("_build/marked/big").startswith("BIG x")


class FailingCondition(NamedTuple):
    id: str
    when: str
    flag: str
    """The `--flag` value of `level` (declared as 1)."""
    error: str


FAILING_CONDITIONS = [
    FailingCondition("wrong_type", "'x' > flags.level", "level=1", "TypeError"),
    FailingCondition("division_by_zero", "1 // 0 > 0", "level=1", "ZeroDivisionError"),
    FailingCondition("range_too_big", "range(10**9)|length > 0", "level=1", "OverflowError"),
    # Undefined would compare unequal and test false: the step would be switched off without a word.
    FailingCondition("undefined_attribute", "input.path.suffix == '.md'", "level=1", "UndefinedError"),
    FailingCondition("unsafe_attribute", "input.path.__class__", "level=1", "SecurityError"),
]


@pytest.mark.parametrize("case", FAILING_CONDITIONS, ids=[case.id for case in FAILING_CONDITIONS])
def test_when_that_fails_to_evaluate_exits_2_naming_step_and_job(
    project: Project, case: FailingCondition
) -> None:
    rules = 'pages:\n  inputs: ["pages/*.md"]\n  output: "{path}.x"\n  steps:\n'
    rules += f'    - file.copy: {{when: "{case.when}"}}\n'
    project.write({"batchit.yaml": config(rules), "pages/a.md": "# A\n"})
    for command in ("build", "plan"):
        result = project.run(command, "--no-progress", "--flag", case.flag)
        assert result.code == 2, result.describe()
        assert "error: batchit.yaml:8: rule 'pages': step 1 (file.copy): condition" in result.stderr
        assert f"failed: {case.error}" in result.stderr and "(job pages/a.md)" in result.stderr
        assert "fix: make the condition work" in result.stderr, result.describe()
        assert project.snapshot(".batchit", "_build") == {}
