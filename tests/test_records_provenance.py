"""`batchit verify` checks the run's provenance too (SPEC sections 4 and 5): its signature, its
Statement, and that its subjects are exactly the manifest's outputs with the same sha256."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import COPY_CONFIG, Project
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def run_dir(project: Project) -> Path:
    """The latest run's directory."""
    runs = project.root / ".batchit" / "runs"
    return runs / (runs / "LATEST").read_text().strip()


def statement(path: Path) -> dict[str, Any]:
    """The in-toto Statement inside a DSSE envelope file."""
    return json.loads(base64.b64decode(json.loads(path.read_bytes())["payload"]))  # type: ignore[no-any-return]


def seal(path: Path, payload: bytes, key: Ed25519PrivateKey) -> None:
    """Write `payload` as a DSSE envelope signed by `key`, independently of batchit's own signing."""
    kind = PAYLOAD_TYPE.encode()
    signature = key.sign(b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload))
    envelope = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }
    path.write_text(json.dumps(envelope))


def project_key(project: Project) -> Ed25519PrivateKey:
    """The project's own (trusted) signing key."""
    key = load_pem_private_key((project.root / ".batchit/keys/batchit.key").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


class Tampering(NamedTuple):
    """One way to break a run's provenance, and the words `verify` must name it with."""

    name: str
    cause: str


TAMPERINGS = [
    Tampering("edited", "does not verify with that trusted key"),
    Tampering("signed-by-another-key", "does not verify with any trusted key"),
    Tampering("deleted", "is missing, though the manifest's signature says the run wrote one"),
    Tampering(
        "deleted-and-run-json-edited", "is missing, though the manifest's signature says the run wrote one"
    ),
    Tampering("deleted-from-an-older-record", "is missing, though the run's run.json says it wrote one"),
    Tampering("the-manifest-signature", "(https://batchit.dev/manifest/v1) is not SLSA provenance"),
    Tampering("not-json", "the signed payload is not an in-toto Statement"),
    Tampering("another-runs", "provenance, not run"),
    Tampering(
        "nested-too-deep", "is not a DSSE envelope (JSON nested too deeply: maximum recursion depth exceeded"
    ),
    Tampering("a-fifo", "is a FIFO, not a provenance file"),
    Tampering("a-list", 'not a DSSE envelope (it must be a JSON object with "payload", "payloadType" and'),
    Tampering("bad-base64", "not a DSSE envelope (a payload or signature that is not base64"),
]


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=[t.name for t in TAMPERINGS])
def test_verify_names_what_is_wrong_with_the_provenance(copies: Project, tampering: Tampering) -> None:
    copies.build()
    if tampering.name == "another-runs":
        earlier = (run_dir(copies) / "provenance.intoto.json").read_bytes()
        copies.build("--force")  # the same outputs, byte for byte, in a new run
    provenance = run_dir(copies) / "provenance.intoto.json"
    if tampering.name == "edited":
        envelope = json.loads(provenance.read_bytes())
        body = base64.b64decode(envelope["payload"]).replace(b'"sha256":"', b'"sha256":"0', 1)
        envelope["payload"] = base64.b64encode(body).decode()
        provenance.write_text(json.dumps(envelope))
    elif tampering.name == "signed-by-another-key":
        seal(provenance, json.dumps(statement(provenance)).encode(), Ed25519PrivateKey.generate())
    elif tampering.name == "deleted":
        provenance.unlink()
    elif tampering.name == "deleted-and-run-json-edited":  # the unsigned run.json cannot cover it up
        provenance.unlink()
        run_json = run_dir(copies) / "run.json"
        run_json.write_text(run_json.read_text().replace('"provenance": true', '"provenance": false'))
        assert '"provenance": false' in run_json.read_text()
    elif tampering.name == "deleted-from-an-older-record":  # its signature did not say: run.json does
        provenance.unlink()
        signature = run_dir(copies) / "manifest.json.sig"
        older = statement(signature)
        del older["predicate"]["provenance"]
        seal(signature, json.dumps(older).encode(), project_key(copies))
    elif tampering.name == "the-manifest-signature":
        shutil.copy(run_dir(copies) / "manifest.json.sig", provenance)
    elif tampering.name == "not-json":
        seal(provenance, b"not json", project_key(copies))
    elif tampering.name == "a-list":
        provenance.write_text("[]")
    elif tampering.name == "bad-base64":
        provenance.write_text(provenance.read_text().replace('"payload":"', '"payload":"!', 1))
    elif tampering.name == "nested-too-deep":
        provenance.write_text("[" * 100_000 + "]" * 100_000)
    elif tampering.name == "a-fifo":  # reading it would wait for a writer forever
        provenance.unlink()
        os.mkfifo(provenance)
    else:
        provenance.write_bytes(earlier)
    result = copies.run("verify")
    assert result.code == 1, result.describe()
    assert f"  provenance: {provenance}" in result.stdout
    assert tampering.cause in result.stdout
    assert "Traceback" not in result.stderr
    checked = copies.run("verify", "--json")
    assert checked.code == 1, checked.describe()
    assert [p["kind"] for p in json.loads(checked.stdout)["problems"]] == ["provenance"]


def test_verify_lists_each_subject_that_differs_from_the_manifest(copies: Project) -> None:
    """A provenance signed by a trusted key must still name exactly the manifest's outputs."""
    copies.build()
    provenance = run_dir(copies) / "provenance.intoto.json"
    document = statement(provenance)
    a, b, _ = sorted(document["subject"], key=lambda subject: subject["name"])
    document["subject"] = [
        {"digest": {"sha256": "0" * 64}, "name": "a.txt"},  # a.txt's digest changed
        b,
        b,  # b.txt named twice
        {"digest": a["digest"], "name": "ghost.txt"},  # no such output; sub/c.txt left out
    ]
    seal(provenance, json.dumps(document).encode(), project_key(copies))
    result = copies.run("verify", "--json")
    assert result.code == 1, result.describe()
    found = [(p["kind"], p["path"]) for p in json.loads(result.stdout)["problems"]]
    assert found == [
        ("provenance", "a.txt"),
        ("provenance", "b.txt"),
        ("provenance", "ghost.txt"),
        ("provenance", "sub/c.txt"),
    ]
    shown = copies.run("verify").stdout
    assert "  provenance: a.txt: the provenance's sha256 is 0000000000000000..., the manifest says" in shown
    assert "  provenance: b.txt: the provenance names this output twice" in shown
    assert "  provenance: ghost.txt: the provenance names it; the manifest does not" in shown
    assert "  provenance: sub/c.txt: the manifest lists it; the provenance does not" in shown
    assert "verify: FAILED: 4 problem(s), 3 output(s) listed" in shown


def test_verify_says_which_provenance_it_checked(copies: Project) -> None:
    copies.build()
    checked = copies.run("verify", "--json")
    assert checked.code == 0, checked.describe()
    assert json.loads(checked.stdout)["provenance"] == str(run_dir(copies) / "provenance.intoto.json")
    assert "3 output(s) match, as does the run's provenance" in copies.run("verify").stdout
    copies.config("provenance: false\n" + COPY_CONFIG)
    copies.build()
    unchecked = copies.run("verify", "--json")
    assert unchecked.code == 0, unchecked.describe()
    assert json.loads(unchecked.stdout)["provenance"] is None


def test_the_manifest_copy_in_out_has_no_provenance_to_check(copies: Project) -> None:
    """Only the manifest and its signature are copied into `out`: a copied `out` verifies alone."""
    copies.build()
    (run_dir(copies) / "provenance.intoto.json").unlink()
    assert copies.run("verify").code == 1
    copy = copies.run("verify", "_build", "--json")
    assert copy.code == 0, copy.describe()
    assert json.loads(copy.stdout)["provenance"] is None
