"""Presets through the real command: what a rule's own keys and `with:` values mean for its errors."""

from __future__ import annotations

import pytest
from conftest import Project

PAGES = """\
version: 1
include: [batchit:images]
rules:
  pages:
    inputs: ["pages/*.md"]
    output: "{path}.txt"
    steps: [file.copy: {}]
"""
"""A project rule whose outputs a preset rule can read."""


def test_a_param_used_only_by_a_replaced_key_needs_no_value(project: Project) -> None:
    project.write(
        {
            "pages/a.md": "# A\n",
            "batchit.yaml": PAGES + "  manifest:\n    preset: cdn_manifest\n    inputs: {rule: pages}\n",
        }
    )
    project.build()
    assert "a.txt" in project.read("_build/cdn-manifest.json")


@pytest.mark.parametrize(
    ("of", "error"),
    [
        ("nope", "inputs name unknown rule 'nope'"),
        ("manifest", "the rule reads its own outputs"),
    ],
    ids=["an-unknown-rule", "the-rule-itself"],
)
def test_a_bad_rule_in_with_is_reported_where_it_is_written(project: Project, of: str, error: str) -> None:
    """`of` fills `inputs: {rule: ...}` in cdn_manifest: the mistake is in the user's `with:`, not in
    the bundled preset file."""
    manifest = f"  manifest:\n    preset: cdn_manifest\n    with: {{of: {of}}}\n"
    project.write({"pages/a.md": "# A\n", "batchit.yaml": PAGES + manifest})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert (
        f"error: batchit.yaml:10:12: rule 'manifest': {error} (from preset parameter 'of')" in result.stderr
    ), result.describe()
    assert project.snapshot(".batchit", "_build") == {}


def test_the_pages_preset_takes_its_sources_as_a_list_or_as_one_glob(project: Project) -> None:
    """As `responsive_images` does; `inputs` takes a single glob as well as a list."""
    project.write({"docs/a.md": "# A\n", "docs/b.txt": "not a page\n", "t/page.html": "{{ content | safe }}"})
    for src in ('["docs/*.md"]', '"docs/*.md"'):
        project.config(
            "version: 1\ninclude: [batchit:pages]\nrules:\n  pages:\n    preset: markdown_pages\n"
            f"    with: {{src: {src}, template: t/page.html}}\n"
        )
        project.build()
        assert project.read("_build/a.html") == '<h1 id="a">A</h1>'
        assert not (project.root / "_build/b.html").exists()


def test_a_file_a_preset_step_names_that_is_missing_is_blamed_on_the_preset_file(project: Project) -> None:
    project.write(
        {
            "presets/mine.yaml": """\
                presets:
                  wrap:
                    params: {template: t.j2}
                    inputs: ["pages/*.md"]
                    output: "{stem}.html"
                    steps:
                      - text.load: {}
                      - template.render: {template: "${template}"}
                """,
            "pages/a.md": "# A\n",
        }
    )
    project.config("version: 1\ninclude: [presets/mine.yaml]\nrules:\n  site:\n    preset: wrap\n")
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "error: presets/mine.yaml:8: rule 'site': step 2 (template.render) names t.j2" in result.stderr


@pytest.mark.parametrize(
    ("own", "error"),
    [
        (
            "    with: {widths: 320}\n",
            "10:12: rule 'thumbs': 'matrix.width' must be a list, not an integer (320) "
            "(from preset parameter 'widths')",
        ),
        # a value of the list fills a step's parameter through the preset's matrix: still the user's line
        (
            "    with: {widths: [320, abc]}\n",
            "10:26: rule 'thumbs': step 2 (image.resize) parameter 'width' must be an integer, "
            "not a string ('abc') (from preset parameter 'widths')",
        ),
        # the bundled preset's output lacks the user's new matrix key: the user's matrix is to blame
        (
            "    matrix: {width: [320], q: [1, 2]}\n",
            "10:28: rule 'thumbs': output does not use matrix key {q}: two jobs would write one output\n"
            "  fix: give the rule an output of its own with {q} in it (the preset's has none)",
        ),
        # the bundled preset's output uses {path}, which the user's aggregate cannot give
        (
            "    aggregate: true\n",
            "10:5: rule 'thumbs': unknown placeholder {path} in output\n"
            "  fix: give the rule an output of its own without {path} (the preset's has it)",
        ),
        # the bundled preset's steps start with image.load, which cannot take an aggregate's files
        (
            '    aggregate: true\n    output: "all-{width}.webp"\n',
            "10:5: rule 'thumbs': step 1 (image.load) takes one input file, but gets the list of its "
            "input files (an aggregate)\n  fix: write the rule's own `steps:` instead of the preset's; "
            "start with a step that takes the list:",
        ),
    ],
    ids=["with-not-a-list", "with-a-bad-item", "a-new-matrix-key", "an-aggregate", "aggregate-steps"],
)
def test_a_rules_mistake_in_using_a_bundled_preset_is_reported_in_the_users_file(
    project: Project, own: str, error: str
) -> None:
    """The user cannot edit a bundled preset file (it is inside batchit): a bad `with:` value, or an
    error the preset's skeleton meets because of how a rule uses it, names the rule's lines in
    batchit.yaml instead."""
    thumbs = "  thumbs:\n    preset: responsive_images\n" + own
    project.write({"pages/a.md": "# A\n", "batchit.yaml": PAGES + thumbs})
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert f"error: batchit.yaml:{error}" in result.stderr, result.describe()
    assert "rules/images.yaml" not in result.stderr
    assert project.snapshot(".batchit", "_build") == {}


@pytest.mark.parametrize(
    ("include", "given", "step"),
    [
        ("batchit:pages", "{src: [pages/*.md], template: t/page.html}", 3),
        ("presets/mine.yaml", "{template: t/page.html}", 2),
    ],
    ids=["bundled", "project"],
)
def test_a_missing_file_named_in_with_is_blamed_on_the_with_line(
    project: Project, include: str, given: str, step: int
) -> None:
    """The template the user names in `with:` does not exist: the plan's error names that line of
    batchit.yaml, not the preset's step in the preset file."""
    project.write(
        {
            "presets/mine.yaml": """\
                presets:
                  markdown_pages:
                    inputs: ["pages/*.md"]
                    output: "{stem}.html"
                    steps:
                      - text.load: {}
                      - template.render: {template: "${template}"}
                """,
            "pages/a.md": "# A\n",
        }
    )
    project.config(
        f"version: 1\ninclude: [{include}]\nrules:\n  site:\n    preset: markdown_pages\n    with: {given}\n"
    )
    result = project.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    expected = f"error: batchit.yaml:6: rule 'site': step {step} (template.render) names t/page.html, which"
    assert expected in result.stderr, result.describe()
    assert project.snapshot(".batchit", "_build") == {}
