"""Placeholders through the real command: how values are spelled inside output names and parameters."""

from __future__ import annotations

from conftest import Project


def test_boolean_matrix_values_are_spelled_as_yaml_writes_them(project: Project) -> None:
    project.write(
        {
            "pages/a.md": "A\n",
            "batchit.yaml": """\
                version: 1
                rules:
                  pages:
                    inputs: ["pages/*.md"]
                    matrix: {dark: [true, false]}
                    output: "{path}-{dark}.txt"
                    steps: [text.load: {}, text.replace: {pattern: "^", replacement: "dark={dark} "}]
                """,
        }
    )
    project.build()
    assert project.read("_build/a-true.txt") == "dark=true A\n"
    assert project.read("_build/a-false.txt") == "dark=false A\n"
