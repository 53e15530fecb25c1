"""Ed25519 signing keys and DSSE envelopes: how a run's record is signed and checked.

A DSSE envelope (the one in-toto and Sigstore use) signs the pre-authentication encoding of the
payload type and the payload, so a signature made for one kind of document never verifies as another.
The private key lives in `.batchit/keys/batchit.key` (mode 0600) or comes from `BATCHIT_SIGNING_KEY`;
no function here ever puts its bytes into a message, a log line or a return value meant for display.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from batchit.errors import BatchitError, UsageError
from batchit.fsutil import atomic_write_bytes, replacing
from batchit.hashing import blake3_hex

KEY_ENV = "BATCHIT_SIGNING_KEY"
"""A PEM private key, or the path of one, that overrides the project's key (for CI)."""
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PRIVATE_NAME = "batchit.key"
PUBLIC_NAME = "batchit.pub"


class BadSignature(BatchitError):
    """A signature envelope that does not verify; the message names the cause (exit 1)."""


@dataclass(frozen=True)
class SigningKey:
    """A private key ready to sign, with its key id and where it came from (never its bytes)."""

    private: Ed25519PrivateKey = field(repr=False)
    key_id: str
    source: str
    """`$BATCHIT_SIGNING_KEY` or the key file's path, for messages."""
    created: bool = False
    """True when this run minted the key because the project had none."""


@dataclass(frozen=True)
class TrustedKey:
    """A public key a verifier trusts, with its key id and the file it came from."""

    public: Ed25519PublicKey
    key_id: str
    source: str


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the BLAKE3 hash of the raw 32-byte public key (SPEC section 5)."""
    return blake3_hex(public.public_bytes(Encoding.Raw, PublicFormat.Raw))[:16]


def keys_dir(state_dir: Path) -> Path:
    """Where the project's key pair lives: `.batchit/keys/`."""
    return state_dir / "keys"


MINT_LOCK = ".mint.lock"
"""Held while a key pair is made, in `.batchit/keys/`: runs under different locks (a build, a
sample building into its own folder, `keygen`) then make one pair between them, never two."""


@contextlib.contextmanager
def _minting(state_dir: Path) -> Iterator[Path]:
    """Wait for, then hold, the right to make the project's key pair; yields `.batchit/keys/`."""
    directory = keys_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    fd = os.open(directory / MINT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released with the descriptor; making a pair takes milliseconds
        yield directory
    finally:
        os.close(fd)


def generate_keys(state_dir: Path, *, force: bool = False) -> SigningKey:
    """Write a new key pair into `.batchit/keys/`; refuse to replace one unless `force`.

    With `force`, the old public key is kept as `batchit.<KEYID>.pub`, so manifests it signed can
    still be verified with `--key` after the rotation; one that is no Ed25519 public key (damaged)
    is kept as `batchit.unreadable-<random>.pub`, never deleted and never in the way.
    """
    with _minting(state_dir):
        return _new_pair(state_dir, force=force)


def first_key(state_dir: Path, environ: Mapping[str, str]) -> SigningKey:
    """The key a run signs with when it found none as it started: the one another run made since,
    else a new pair (`created`)."""
    with _minting(state_dir):
        return load_signing_key(state_dir, environ) or _new_pair(state_dir, force=False)


def _new_pair(state_dir: Path, *, force: bool) -> SigningKey:
    """`generate_keys`'s work, with the minting lock held."""
    directory = keys_dir(state_dir)
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if private_path.exists() and not force:
        raise UsageError(
            f"{private_path} exists already",
            hint="pass --force to replace it (manifests signed with the old key then verify with "
            "`batchit verify --key` and the old public key, which keygen keeps beside the new one)",
        )
    if public_path.exists():
        os.replace(public_path, directory / _kept_name(public_path))
    private = Ed25519PrivateKey.generate()
    _write_private(private_path, private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    atomic_write_bytes(public_path, public_pem)
    return _signing_key(private, str(private_path), created=True)


def _kept_name(public_path: Path) -> str:
    """The name an old public key keeps once a new pair replaces it: by its key id, or, when it
    cannot be read as one, a name that says so."""
    try:
        return f"batchit.{load_public_key(public_path).key_id}.pub"
    except UsageError:
        return f"batchit.unreadable-{secrets.token_hex(4)}.pub"


def _write_private(path: Path, pem: bytes) -> None:
    """Write a private key readable by its owner only, from the first byte on (no chmod race)."""
    with (
        replacing(path) as tmp,
        os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle,
    ):
        handle.write(pem)


def load_signing_key(state_dir: Path, environ: Mapping[str, str]) -> SigningKey | None:
    """The key a run signs with: `BATCHIT_SIGNING_KEY` (PEM text or a path), else the project's key.

    None when the project has no key yet. A key that cannot be read is a usage error naming where it
    came from, never its content.
    """
    value = environ.get(KEY_ENV, "").strip()
    if value:
        if value.startswith("-----BEGIN"):
            return _signing_key(_parse_private(value.encode(), f"${KEY_ENV}", ENV_KEY_FIX), f"${KEY_ENV}")
        path = Path(value)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"${KEY_ENV} names {path}, which cannot be read: {exc.strerror}", hint=ENV_KEY_FIX
            ) from exc
        return _signing_key(_parse_private(pem, f"${KEY_ENV} ({path})", ENV_KEY_FIX), str(path))
    path = keys_dir(state_dir) / PRIVATE_NAME
    if not path.exists():
        return None
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"the project's signing key {path} cannot be read: {exc.strerror}",
            hint=f"let this user read it (it stays mode 0600), or {NEW_PAIR}",
        ) from exc
    private = _parse_private(pem, str(path), NEW_PAIR)
    _check_public_half(path.with_name(PUBLIC_NAME), private, path)
    return _signing_key(private, str(path))


NEW_PAIR = (
    "make a new pair with `batchit keygen --force` (it keeps the old public key, for the runs it signed)"
)
ENV_KEY_FIX = f"set ${KEY_ENV} to an Ed25519 private key in PEM (as `batchit keygen` writes), or to its path"


def _check_public_half(public_path: Path, private: Ed25519PrivateKey, private_path: Path) -> None:
    """Make sure the project's `batchit.pub` is the public half of its `batchit.key`, so that the runs
    signed now verify: a missing one is written again from the private key; another key, or a file
    that is no key, is a usage error (nothing is signed with a pair that does not match)."""
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    if not public_path.exists():
        atomic_write_bytes(public_path, public_pem)
        return
    try:
        matches = load_public_key(public_path).key_id == key_id(private.public_key())
    except UsageError:
        matches = False
    if not matches:
        raise UsageError(
            f"{public_path} is not the public half of {private_path}: runs signed now would not verify",
            hint=f"put back the matching file of the pair, or {NEW_PAIR}",
        )


def _parse_private(pem: bytes, where: str, fix: str) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # the last: a damaged algorithm id
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{where} is not an unencrypted Ed25519 private key in PEM", hint=fix)
    return key


def _signing_key(private: Ed25519PrivateKey, source: str, *, created: bool = False) -> SigningKey:
    return SigningKey(private, key_id(private.public_key()), source, created)


def load_public_key(path: Path) -> TrustedKey:
    """A PEM public key (SubjectPublicKeyInfo) to verify with; a usage error when it is not one."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise UsageError(
            f"cannot read the public key {path}: {exc.strerror}",
            hint="pass the path of the signer's `.pub` file (keygen writes .batchit/keys/batchit.pub)",
        ) from exc
    except (ValueError, TypeError, UnsupportedAlgorithm):  # the last: a damaged algorithm id
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(
            f"{path} is not an Ed25519 public key in PEM",
            hint="pass the `.pub` file that `batchit keygen` wrote (never the private key)",
        )
    return TrustedKey(key, key_id(key), str(path))


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: `DSSEv1 SP LEN(type) SP type SP LEN(body) SP body`."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def sign_envelope(key: SigningKey, body: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """A canonical-JSON DSSE envelope holding `body`, signed by `key`.

    Built by concatenation: base64 text needs no escaping, and the body may be megabytes.
    """
    signature = key.private.sign(pae(payload_type, body))
    return (
        f'{{"payload":"{_b64(body)}","payloadType":{json.dumps(payload_type)},'
        f'"signatures":[{{"keyid":"{key.key_id}","sig":"{_b64(signature)}"}}]}}\n'
    ).encode("ascii")


def open_envelope(data: bytes, trusted: list[TrustedKey]) -> tuple[bytes, str]:
    """The payload of a DSSE envelope and the key id that signed it; BadSignature names what is wrong.

    Every trusted key is tried against every signature (a key id is only a hint), so several keys can
    be trusted at once while keys rotate.
    """
    try:
        envelope = json.loads(data)
        payload_type = envelope["payloadType"]
        body = base64.b64decode(envelope["payload"], validate=True)
        signatures = [
            (_key_id_text(s.get("keyid", "")), base64.b64decode(s["sig"], validate=True))
            for s in envelope["signatures"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, RecursionError) as exc:
        raise BadSignature(f"the signature file is not a DSSE envelope ({_envelope_fault(exc)})") from exc
    if payload_type != PAYLOAD_TYPE:
        raise BadSignature(f"the envelope's payloadType is {payload_type!r}, not {PAYLOAD_TYPE!r}")
    message = pae(payload_type, body)
    for _, signature in signatures:
        for key in trusted:
            try:
                key.public.verify(signature, message)
            except InvalidSignature:
                continue
            return body, key.key_id
    signers = sorted({signer for signer, _ in signatures if signer})
    named = ", ".join(signers) or "no key id"
    keys = ", ".join(f"{k.key_id} ({k.source})" for k in trusted)
    if any(k.key_id in signers for k in trusted):  # the right key: the envelope is what changed
        raise BadSignature(
            f"the signature (by {named}) does not verify with that trusted key ({keys}): "
            "the envelope was altered after it was signed",
            hint="do not trust this record; restore the signature file from a trusted copy, or build "
            "again to record and sign the outputs anew",
        )
    raise BadSignature(
        f"the signature (by {named}) does not verify with any trusted key: {keys}",
        hint=_signer_hint(signers),
    )


def _envelope_fault(exc: BaseException) -> str:
    """What is wrong with an envelope, in a reader's words: a JSON error says where the text stops
    being JSON; a missing field or a value of the wrong type says what an envelope holds."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc}"
    if isinstance(exc, RecursionError):
        return f"JSON nested too deeply: {exc}"
    if isinstance(exc, binascii.Error):
        return f"a payload or signature that is not base64: {exc}"
    return 'it must be a JSON object with "payload", "payloadType" and "signatures": [{"keyid", "sig"}]'


def _signer_hint(signers: list[str]) -> str:
    """How to trust the key that signed: `--key`, naming the file in which `keygen --force` keeps a
    replaced public key, since a run signed before a rotation otherwise fails `verify` with no clue."""
    hint = "pass the signer's public key with --key (several --key are all trusted)"
    if len(signers) != 1 or not KEY_ID_TEXT.fullmatch(signers[0]):  # an unsigned hint: no path of it
        return hint
    return f"{hint}; keygen --force keeps the key it replaced: --key .batchit/keys/batchit.{signers[0]}.pub"


KEY_ID_TEXT = re.compile(r"[0-9a-f]{16}")
"""A key id as `key_id` makes it: 16 lowercase hex digits."""


def _key_id_text(value: Any) -> str:
    """A signature's `keyid` as a hint ("" for none): DSSE does not sign it, so a value of another
    type than a string says nothing, and the signature is checked all the same."""
    return value if isinstance(value, str) else ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
