"""Signed run records (SPEC section 5, 8): keys, the DSSE signature, provenance and `batchit verify`."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from blake3 import blake3
from conftest import COPY_CONFIG, Project
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)


def run_dir(project: Project) -> Path:
    """The latest run's directory."""
    runs = project.root / ".batchit" / "runs"
    return runs / (runs / "LATEST").read_text().strip()


def envelope(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A DSSE envelope file and its decoded in-toto Statement."""
    outer = json.loads(path.read_bytes())
    return outer, json.loads(base64.b64decode(outer["payload"]))


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding, written out independently of batchit's."""
    return (
        b"DSSEv1 "
        + b" ".join([str(len(payload_type)).encode(), payload_type.encode()])
        + (b" " + str(len(body)).encode() + b" " + body)
    )


def test_first_build_creates_a_key_and_says_so_once(copies: Project) -> None:
    first = copies.build()
    assert "created a signing key" in first.stdout
    key = copies.root / ".batchit/keys/batchit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.read_bytes()
    assert b"BEGIN PUBLIC KEY" in (copies.root / ".batchit/keys/batchit.pub").read_bytes()
    events = [json.loads(line) for line in (run_dir(copies) / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("key_created") == 1
    second = copies.build()
    assert "created a signing key" not in second.stdout + second.stderr
    assert "key id" in second.stdout


def test_keygen_refuses_to_overwrite_without_force(copies: Project) -> None:
    assert copies.run("keygen").code == 0
    public = copies.root / ".batchit/keys/batchit.pub"
    before = public.read_bytes()
    again = copies.run("keygen")
    assert again.code == 2, again.describe()
    assert "--force" in again.stderr
    assert public.read_bytes() == before
    forced = copies.run("keygen", "--force")
    assert forced.code == 0, forced.describe()
    assert public.read_bytes() != before
    kept = list(public.parent.glob("batchit.*.pub"))
    assert len(kept) == 1 and kept[0].read_bytes() == before


@pytest.mark.parametrize("command", [("keygen", "--force"), ("build", "--no-progress")])
def test_an_unreadable_public_key_is_moved_aside_for_a_new_pair(
    copies: Project, command: tuple[str, ...]
) -> None:
    keys = copies.root / ".batchit/keys"
    keys.mkdir(parents=True)
    (keys / "batchit.pub").write_bytes(b"not a key\n")  # and no private key: a first build mints one
    result = copies.run(*command)
    assert result.code == 0, result.describe()
    assert load_pem_public_key((keys / "batchit.pub").read_bytes())
    kept = list(keys.glob("batchit.unreadable-*.pub"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"not a key\n"
    copies.build()
    assert copies.run("verify").code == 0


def test_a_key_pair_that_does_not_match_signs_nothing(copies: Project) -> None:
    """Runs signed with a private key whose `batchit.pub` is another key's would never verify."""
    copies.build()
    key = copies.root / ".batchit/keys/batchit.key"
    other = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    key.write_bytes(other)
    runs_before = sorted((copies.root / ".batchit/runs").iterdir())
    copies.write({"src/a.txt": "changed\n"})
    result = copies.build(expect=2)
    assert "batchit.pub is not the public half of" in result.stderr
    assert sorted((copies.root / ".batchit/runs").iterdir()) == runs_before


def test_a_missing_public_key_is_written_again_from_the_private_key(copies: Project) -> None:
    copies.build()
    public = copies.root / ".batchit/keys/batchit.pub"
    before = public.read_bytes()
    public.unlink()
    copies.write({"src/a.txt": "changed\n"})
    copies.build()
    assert public.read_bytes() == before
    assert copies.run("verify").code == 0


def test_key_id_is_blake3_of_the_raw_public_key(copies: Project) -> None:
    copies.build()
    public = load_pem_public_key((copies.root / ".batchit/keys/batchit.pub").read_bytes())
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    outer, _ = envelope(run_dir(copies) / "manifest.json.sig")
    assert outer["signatures"][0]["keyid"] == blake3(raw).hexdigest()[:16]


def test_signature_is_a_dsse_envelope_over_the_manifest_sha256(copies: Project) -> None:
    copies.build()
    manifest = (run_dir(copies) / "manifest.json").read_bytes()
    outer, statement = envelope(run_dir(copies) / "manifest.json.sig")
    assert outer["payloadType"] == "application/vnd.in-toto+json"
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [
        {"name": "manifest.json", "digest": {"sha256": hashlib.sha256(manifest).hexdigest()}}
    ]
    public = load_pem_public_key((copies.root / ".batchit/keys/batchit.pub").read_bytes())
    body = base64.b64decode(outer["payload"])
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(outer["signatures"][0]["sig"]), pae(outer["payloadType"], body))
    assert (copies.root / "_build/batchit-manifest.json.sig").read_bytes() == (
        run_dir(copies) / "manifest.json.sig"
    ).read_bytes()


def test_provenance_is_a_signed_slsa_statement_of_every_output(copies: Project) -> None:
    copies.build()
    outer, statement = envelope(run_dir(copies) / "provenance.intoto.json")
    assert outer["payloadType"] == "application/vnd.in-toto+json"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    out = copies.root / "_build"
    assert subjects == {
        p: hashlib.sha256((out / p).read_bytes()).hexdigest() for p in ("a.txt", "b.txt", "sub/c.txt")
    }
    predicate = statement["predicate"]
    assert predicate["runDetails"]["metadata"]["invocationId"] == run_dir(copies).name
    config_digest = predicate["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"]
    assert config_digest == hashlib.sha256((copies.root / "batchit.yaml").read_bytes()).hexdigest()


def test_provenance_false_turns_it_off(copies: Project) -> None:
    copies.config("provenance: false\n" + COPY_CONFIG)
    copies.build()
    assert not (run_dir(copies) / "provenance.intoto.json").exists()
    assert (run_dir(copies) / "manifest.json.sig").exists()


def test_verify_passes_on_a_fresh_build(copies: Project) -> None:
    copies.build()
    result = copies.run("verify")
    assert result.code == 0, result.describe()
    assert "3 output(s) match" in result.stdout


class Damage(NamedTuple):
    """One way to break what a run recorded, and the words `verify` must name it with."""

    name: str
    cause: str


DAMAGES = [
    Damage("flip-a-byte", "modified"),
    Damage("delete-an-output", "missing"),
    Damage("edit-the-manifest", "modified after it was signed"),
    Damage("another-key", "does not verify with any trusted key"),
]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.name for d in DAMAGES])
def test_verify_names_the_cause_of_each_failure(copies: Project, tmp_path: Path, damage: Damage) -> None:
    copies.build()
    args: list[str] = []
    if damage.name == "flip-a-byte":
        target = copies.root / "_build/sub/c.txt"
        data = bytearray(target.read_bytes())
        data[0] ^= 1
        target.write_bytes(bytes(data))
    elif damage.name == "delete-an-output":
        (copies.root / "_build/sub/c.txt").unlink()
    elif damage.name == "edit-the-manifest":
        manifest = run_dir(copies) / "manifest.json"
        manifest.write_bytes(manifest.read_bytes().replace(b'"status":"ok"', b'"status":"OK"'))
    else:
        other = Project(tmp_path / "other")
        other.root.mkdir()
        assert other.run("keygen").code == 0
        args = ["--key", str(other.root / ".batchit/keys/batchit.pub")]
    result = copies.run("verify", *args)
    assert result.code == 1, result.describe()
    assert damage.cause in result.stdout
    if damage.name in ("flip-a-byte", "delete-an-output"):
        assert "sub/c.txt" in result.stdout


@pytest.mark.parametrize("keyid", [5, ["a"], None], ids=["number", "list", "null"])
def test_a_signature_whose_unsigned_keyid_is_no_string_is_checked_all_the_same(
    copies: Project, keyid: Any
) -> None:
    """DSSE signs the payload, not the key id, which is only a hint of which key to try."""
    copies.build()
    signature = copies.root / "_build/batchit-manifest.json.sig"
    envelope = json.loads(signature.read_bytes())
    envelope["signatures"][0]["keyid"] = keyid
    signature.write_text(json.dumps(envelope))
    assert copies.run("verify", "_build").code == 0
    envelope["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
    signature.write_text(json.dumps(envelope))
    result = copies.run("verify", "_build")
    assert result.code == 1, result.describe()
    assert (
        f"signature: {signature.relative_to(copies.root)}: the signature (by no key id) does not verify"
        in (result.stdout)
    )
    assert "Traceback" not in result.stderr


def test_verify_of_a_copied_out_folder_with_the_public_key(copies: Project, tmp_path: Path) -> None:
    copies.build()
    deploy = Project(tmp_path / "deploy")
    shutil.copytree(copies.root / "_build", deploy.root / "site")
    shutil.copy(copies.root / ".batchit/keys/batchit.pub", deploy.root / "ci.pub")
    result = deploy.run("verify", "site/batchit-manifest.json", "--key", "ci.pub")
    assert result.code == 0, result.describe()
    (deploy.root / "site/a.txt").write_text("tampered\n")
    tampered = deploy.run("verify", "site", "--key", "ci.pub", "--json")
    assert tampered.code == 1
    problems = json.loads(tampered.stdout)["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [("modified", "a.txt")]


def test_verify_refuses_the_provenance_signature_passed_off_as_a_manifests(
    project: Project, tmp_path: Path
) -> None:
    # The provenance is signed with the same key; its first subject is the first output by name.
    # An output named manifest.json whose bytes are a forged manifest must not verify through it.
    evil = b"evil\n"
    forged = json.dumps({"outputs": [{"path": "pages/a.txt", "size": 5, "blake3": blake3(evil).hexdigest()}]})
    project.config(
        "version: 1\nout: out\nrules:\n"
        '  meta: {inputs: ["data/manifest.json"], output: "{name}", steps: [file.copy: {}]}\n'
        '  pages: {inputs: ["pages/*.txt"], output: "pages/{name}", steps: [file.copy: {}]}\n'
    )
    project.write({"data/manifest.json": forged, "pages/a.txt": "hello\n"})
    project.build()
    fake = tmp_path / "fake"
    (fake / "pages").mkdir(parents=True)
    (fake / "pages/a.txt").write_bytes(evil)
    (fake / "batchit-manifest.json").write_text(forged)
    shutil.copy(run_dir(project) / "provenance.intoto.json", fake / "batchit-manifest.json.sig")
    result = project.run("verify", str(fake), "--key", ".batchit/keys/batchit.pub")
    assert result.code == 1, result.describe()
    assert "is not a manifest's signature" in result.stdout + result.stderr


def test_verify_trusts_every_key_given_while_keys_rotate(copies: Project, tmp_path: Path) -> None:
    copies.build()
    old = tmp_path / "old.pub"
    shutil.copy(copies.root / ".batchit/keys/batchit.pub", old)
    shutil.copytree(copies.root / "_build", tmp_path / "old-release")
    assert copies.run("keygen", "--force").code == 0
    copies.build()
    new = copies.root / ".batchit/keys/batchit.pub"
    assert copies.run("verify", "--key", str(old)).code == 1
    assert copies.run("verify", "--key", str(old), "--key", str(new)).code == 0
    old_release = str(tmp_path / "old-release/batchit-manifest.json")
    assert copies.run("verify", old_release, "--key", str(new)).code == 1
    assert copies.run("verify", old_release, "--key", str(new), "--key", str(old)).code == 0


def test_verify_after_keygen_force_names_the_old_public_key_it_kept(copies: Project) -> None:
    """The latest run was signed by the key `keygen --force` replaced: the fix names the file."""
    copies.build()
    old_id = json.loads((run_dir(copies) / "manifest.json.sig").read_bytes())["signatures"][0]["keyid"]
    assert copies.run("keygen", "--force").code == 0
    result = copies.run("verify")
    assert result.code == 1, result.describe()
    kept = f".batchit/keys/batchit.{old_id}.pub"
    assert (copies.root / kept).is_file()
    assert f"--key {kept}" in result.stdout, result.describe()
    assert copies.run("verify", "--key", kept).code == 0


def test_verify_of_an_altered_signature_by_a_trusted_key_says_so(copies: Project) -> None:
    """The envelope names the trusted key but does not verify with it: another key is no fix."""
    copies.build()
    signature = run_dir(copies) / "manifest.json.sig"
    outer = json.loads(signature.read_bytes())
    sig = bytearray(base64.b64decode(outer["signatures"][0]["sig"]))
    sig[0] ^= 1
    outer["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    signature.write_text(json.dumps(outer))
    result = copies.run("verify")
    assert result.code == 1, result.describe()
    assert "was altered after it was signed" in result.stdout, result.describe()
    assert "pass the signer's public key" not in result.stdout


def test_verify_with_a_public_key_file_that_is_not_there_says_what_to_pass(copies: Project) -> None:
    copies.build()
    result = copies.run("verify", "--key", "ci.pub")
    assert result.code == 2, result.describe()
    assert "cannot read the public key ci.pub: No such file or directory" in result.stderr
    assert "fix: pass the path of the signer's `.pub` file" in result.stderr, result.describe()


def test_verify_without_a_manifest_is_a_usage_error(copies: Project) -> None:
    nothing = copies.run("verify")
    assert nothing.code == 2, nothing.describe()
    assert "no manifest" in nothing.stderr
    assert copies.run("verify", "no/such/manifest.json").code == 2
    folder = copies.run("verify", "src")
    assert folder.code == 2 and "src holds neither batchit-manifest.json nor manifest.json" in folder.stderr
    device = copies.run("verify", "/dev/null")
    assert device.code == 2 and "/dev/null is not a file" in device.stderr, device.describe()


def test_verify_of_a_runs_folder_checks_that_run(copies: Project) -> None:
    copies.build()
    first = run_dir(copies)
    copies.write({"src/a.txt": "edited\n"})
    copies.build()
    checked = copies.run("verify", str(first.relative_to(copies.root)))
    assert checked.code == 1, checked.describe()  # a.txt changed since that run
    assert f"verify: {first.relative_to(copies.root)}/manifest.json" in checked.stdout
    assert "modified" in checked.stdout


@pytest.mark.parametrize(
    "document",
    ['{"outputs":[1]}', '{"outputs":"ab"}', '{"outputs":{"a.txt":1}}', '{"outputs":[null]}', "[1]", "7"],
)
def test_verify_reports_a_malformed_unsigned_manifest(copies: Project, document: str) -> None:
    copies.build()  # the project's public key is the trusted one
    copies.write({"shipped/batchit-manifest.json": document})
    result = copies.run("verify", "shipped/batchit-manifest.json", "--json")
    assert result.code == 1, result.describe()
    kinds = {problem["kind"] for problem in json.loads(result.stdout)["problems"]}
    assert kinds == {"signature", "manifest"}


def test_signing_key_from_the_environment(copies: Project, tmp_path: Path) -> None:
    ci = Project(tmp_path / "ci")
    ci.root.mkdir()
    assert ci.run("keygen").code == 0
    key_file = ci.root / ".batchit/keys/batchit.key"
    public = str(ci.root / ".batchit/keys/batchit.pub")
    for value in (str(key_file), key_file.read_text()):
        built = copies.run("build", "--no-progress", env={"BATCHIT_SIGNING_KEY": value})
        assert built.code == 0, built.describe()
        assert "created a signing key" not in built.stdout
        assert not (copies.root / ".batchit/keys").exists()
        assert copies.run("verify", "--key", public).code == 0
    broken = copies.run(
        "build", "--no-progress", env={"BATCHIT_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----\nxx"}
    )
    assert broken.code == 2, broken.describe()
    assert "BATCHIT_SIGNING_KEY" in broken.stderr and "xx" not in broken.stderr


def test_the_private_key_never_appears_in_records_or_output(copies: Project, tmp_path: Path) -> None:
    outputs = [copies.run("keygen"), copies.build(), copies.run("verify"), copies.run("runs")]
    copies.write({"src/a.txt": "alpha, edited\n"})
    outputs += [copies.build(), copies.run("report"), copies.run("audit", "verify"), copies.run("gc")]
    pem = (copies.root / ".batchit/keys/batchit.key").read_bytes()
    private = load_pem_private_key(pem, password=None)
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    body = b"".join(pem.splitlines()[1:-1])
    secrets = [body, raw, raw.hex().encode(), base64.b64encode(raw), body[:32]]
    files = [p for top in (".batchit/runs", "_build") for p in (copies.root / top).rglob("*") if p.is_file()]
    files += [copies.root / ".batchit/audit.log"]
    texts = [p.read_bytes() for p in files] + [(r.stdout + r.stderr).encode() for r in outputs]
    assert len(files) > 10
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_a_private_key_others_can_read_is_used_with_a_warning(copies: Project) -> None:
    copies.build()
    key = copies.root / ".batchit/keys/batchit.key"
    key.chmod(0o644)
    copies.write({"src/d.txt": "delta\n"})
    result = copies.build()
    assert (
        "warning: the signing key .batchit/keys/batchit.key can be read by others (mode 644)" in result.stderr
    )
    assert "chmod 600 .batchit/keys/batchit.key" in result.stderr
    key.chmod(0o600)
    copies.write({"src/e.txt": "epsilon\n"})
    assert "can be read by others" not in copies.build().stderr
