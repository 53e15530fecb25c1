"""State stores at paths a SQLite URI would mangle, and key files no library can read: through the CLI."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.conftest import COPY_CONFIG, Project


def test_a_second_sample_into_a_nested_folder_reads_its_own_store(copies: Project) -> None:
    """`--out sm/x` keeps its state in `.batchit/samples/sm%2Fx/`: the read-only open of that store
    (every build plans with one) once took the `%2F` for a '/' and ended in a traceback."""
    copies.build()
    copies.build("--sample", "1", "--out", "sm/x")

    again = copies.build("--sample", "1", "--out", "sm/x")

    assert "Traceback" not in again.stderr, again.describe()
    assert "1 up to date" in again.stdout, again.describe()
    plan = copies.run("plan", "--sample", "1", "--out", "sm/x")
    assert plan.code == 0, plan.describe()


@pytest.mark.parametrize("name", ["p%41", "p#1", "p?x", "p %20"])
def test_a_project_whose_path_holds_a_uri_character_builds_again(tmp_path: Path, name: str) -> None:
    """A project root holding '%', '#' or '?' opened another file (or none) as its state store on
    the second build and on `plan`."""
    root = tmp_path / name
    root.mkdir()
    project = Project(root)
    project.config(COPY_CONFIG)
    project.write({"src/a.txt": "alpha\n"})
    project.build()

    again = project.build()
    plan = project.run("plan", "--json")

    assert "1 up to date" in again.stdout, again.describe()
    assert plan.code == 0, plan.describe()


def _damage_algorithm_id(path: Path) -> None:
    """Turn the Ed25519 OID (1.3.101.112) of a PEM key into one no library knows (1.3.69.112)."""
    lines = path.read_text(encoding="ascii").splitlines()
    der = bytearray(base64.b64decode("".join(lines[1:-1])))
    at = der.find(bytes([0x06, 0x03, 0x2B, 0x65, 0x70]))
    assert at >= 0
    der[at + 3] = 0x45
    path.write_text(f"{lines[0]}\n{base64.b64encode(bytes(der)).decode()}\n{lines[-1]}\n", encoding="ascii")


@pytest.mark.parametrize("which", ["batchit.pub", "batchit.key"])
def test_a_key_whose_algorithm_id_is_damaged_is_a_usage_error(copies: Project, which: str) -> None:
    """cryptography raises UnsupportedAlgorithm, not ValueError, for an unknown key type: it
    escaped as a traceback from `verify` and `build` instead of naming the key file."""
    copies.build()
    _damage_algorithm_id(copies.root / ".batchit/keys" / which)

    results = [copies.run("build", "--no-progress")] + (
        [copies.run("verify")] if which == "batchit.pub" else []
    )

    for result in results:
        assert result.code == 2, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
        assert f".batchit/keys/{which}" in result.stderr, result.describe()


def test_a_project_key_that_cannot_be_read_is_a_usage_error_before_any_work(copies: Project) -> None:
    copies.build()
    key = copies.root / ".batchit/keys/batchit.key"
    key.unlink()
    key.mkdir()  # read_bytes fails as a permission would (the suite may run as root)
    copies.write({"src/d.txt": "delta\n"})
    result = copies.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert f"the project's signing key {key} cannot be read" in result.stderr
    assert not (copies.root / "_build/d.txt").exists()


def test_a_damaged_project_key_says_to_make_a_new_pair_with_force(copies: Project) -> None:
    copies.build()
    (copies.root / ".batchit/keys/batchit.key").write_text("junk\n")
    result = copies.run("build", "--no-progress")
    assert result.code == 2, result.describe()
    assert "fix: make a new pair with `batchit keygen --force`" in result.stderr
    assert copies.run("keygen", "--force").code == 0
    copies.build()
