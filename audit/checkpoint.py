"""Signed checkpoints: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` envelopes.

A checkpoint is three lines — origin, tree size, base64 root — then a blank line and
``— <key name> <base64(key id || Ed25519 signature)>``. The key id is the first four bytes
of ``SHA-256(name || "\\n" || 0x01 || public key)``; the verifier key that gets published is
``<name>+<hex key id>+<base64(0x01 || public key)>``, the format Go's ``sumdb/note`` reads.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import store
from audit.merkle import HASH_SIZE

DEFAULT_ORIGIN = "safesetting.example/npd-audit"
ED25519 = b"\x01"
EM_DASH = "\u2014"
_NAME = re.compile(r"^[^\s+]+$")


class CheckpointError(ValueError):
    """A checkpoint or key is malformed, or its signature does not verify."""


class KeyFileError(CheckpointError):
    """The signing key file is unreadable, malformed or readable by others."""


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte C2SP key id of an Ed25519 key."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise CheckpointError(f"key name must be non-empty without spaces or '+': {name!r}")
    return name


@dataclass(frozen=True)
class VerifierKey:
    """A public key with its name: what a third party needs to check checkpoints."""

    name: str
    public_key: bytes

    @cached_property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def __str__(self) -> str:
        encoded = base64.b64encode(ED25519 + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Read ``<name>+<hex key id>+<base64(0x01 || key)>``, checking the key id."""
        try:
            name, hex_id, encoded = text.strip().split("+", 2)
            raw = base64.b64decode(encoded, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (ValueError, binascii.Error) as exc:
            raise CheckpointError("malformed verifier key") from exc
        if raw[:1] != ED25519 or len(raw) != 33:
            raise CheckpointError("verifier key is not an Ed25519 key")
        key = cls(_check_name(name), raw[1:])
        if key.key_id != wanted:
            raise CheckpointError("verifier key id does not match its key")
        return key


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 signing key with its name (the log's origin)."""

    name: str
    private_key: Ed25519PrivateKey

    @cached_property
    def verifier(self) -> VerifierKey:
        return VerifierKey(self.name, self.private_key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str = DEFAULT_ORIGIN) -> SigningKey:
        return cls(_check_name(name), Ed25519PrivateKey.generate())

    def encode(self) -> str:
        """Go ``sumdb/note`` signer-key text: ``PRIVATE+KEY+<name>+<hex id>+<base64>``."""
        seed = base64.b64encode(ED25519 + self.private_key.private_bytes_raw()).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{seed}\n"

    @classmethod
    def decode(cls, text: str) -> SigningKey:
        try:
            private, key, name, hex_id, encoded = text.strip().split("+", 4)
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise KeyFileError("malformed signing key") from exc
        if (private, key) != ("PRIVATE", "KEY") or raw[:1] != ED25519 or len(raw) != 33:
            raise KeyFileError("not an Ed25519 signing key")
        signer = cls(_check_name(name), Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier.key_id.hex() != hex_id:
            raise KeyFileError("signing key id does not match its key")
        return signer

    def sign_note(self, text: str) -> str:
        """Sign note ``text`` (which must end in a newline): returns the signed note."""
        if not text.endswith("\n") or "\n\n" in text:
            raise CheckpointError("note text must end with one newline and have no blank line")
        return f"{text}\n{self._signature_line(text)}"

    def cosign(self, note: str) -> str:
        """Add this key's signature to a signed note (C2SP notes carry any number)."""
        text, sep, sigs = note.rpartition("\n\n")
        if not sep or not sigs.endswith("\n"):
            raise CheckpointError("not a signed note (no blank line before signatures)")
        return note + self._signature_line(text + "\n")

    def _signature_line(self, text: str) -> str:
        sig = self.private_key.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_id + sig).decode()
        return f"{EM_DASH} {self.name} {encoded}\n"


def load_or_create_key(path: Path, name: str = DEFAULT_ORIGIN) -> SigningKey:
    """The signing key at ``path``, generated on first use.

    The file is created with mode 0600 under a temporary name, fsynced, then hard-linked
    into place, so it is never readable by others nor seen half-written, and two processes
    racing to create it end up sharing one key. A key file readable by group or others is
    refused rather than trusted.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = stage_key(path, SigningKey.generate(name))
        try:
            with contextlib.suppress(FileExistsError):  # another process won the race
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return load_key(path)


def stage_key(path: Path, key: SigningKey) -> Path:
    """Write ``key`` to a new temporary file beside ``path`` (mode 0600, fsynced) and return
    its name: link or ``os.replace`` it into place, so the key file is never half-written."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key.encode())
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def load_key(path: Path) -> SigningKey:
    """The signing key at ``path``; never creates one (``KeyFileError`` if it is missing).

    A key file readable by group or others is refused rather than trusted.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path} is missing") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is accessible by others (mode {mode & 0o777:o}); chmod 600")
    return SigningKey.decode(path.read_text())


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: origin, tree size, root hash, and the signed note text."""

    origin: str
    size: int
    root: bytes
    note: str


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The C2SP checkpoint text that gets signed.

    >>> checkpoint_body("log.example", 0, bytes(32)).splitlines()[:2]
    ['log.example', '0']
    """
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def open_checkpoint(note: str, verifier: VerifierKey) -> Checkpoint:
    """Parse a signed checkpoint and check ``verifier``'s signature on it.

    Raises ``CheckpointError`` if the note is malformed, carries no signature by this key
    (name and key id), or the signature does not verify.
    """
    text, sep, sigs = note.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise CheckpointError("not a signed note (no blank line before signatures)")
    text += "\n"
    found = False
    for line in sigs[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise CheckpointError("malformed signature line")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error as exc:
            raise CheckpointError("malformed signature encoding") from exc
        if parts[1] != verifier.name or blob[:4] != verifier.key_id:
            continue  # a signature by some other key (a witness, say): not ours to judge
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(blob[4:], text.encode())
        except InvalidSignature as exc:
            raise CheckpointError("checkpoint signature does not verify") from exc
        found = True
        break
    if not found:
        raise CheckpointError(
            f"checkpoint is not signed by {verifier.name}+{verifier.key_id.hex()}"
        )
    lines = text.split("\n")
    try:
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        root = base64.b64decode(root_text, validate=True)
        size = int(size_text)
    except (IndexError, ValueError, binascii.Error) as exc:
        raise CheckpointError("malformed checkpoint body") from exc
    if size < 0 or len(root) != HASH_SIZE or str(size) != size_text:
        raise CheckpointError("malformed checkpoint body")
    return Checkpoint(origin, size, root, note)


def only_signed_by(note: str, verifier: VerifierKey) -> str:
    """``note`` with ``verifier``'s signature line alone (a signed note may carry any subset
    of its signatures); ``CheckpointError`` unless that signature is on it and verifies."""
    open_checkpoint(note, verifier)
    text, _, sigs = note.rpartition("\n\n")
    for line in sigs[:-1].split("\n"):
        _, name, encoded = line.split(" ")
        if name == verifier.name and base64.b64decode(encoded)[:4] == verifier.key_id:
            return f"{text}\n\n{line}\n"
    raise CheckpointError(f"checkpoint is not signed by {verifier}")  # pragma: no cover


def sign_checkpoint(
    bind: sa.Engine | sa.Connection, key: SigningKey, cosigners: Sequence[SigningKey] = ()
) -> Checkpoint:
    """Sign the tree head and store the checkpoint.

    With an ``Engine``: call it after each commit; it signs the committed head in its own
    transaction. With a ``Connection``: it signs inside that transaction, after the
    appends, so the checkpoint commits (or rolls back) with them and is never ahead of the
    log; that saves a transaction per request. Idempotent for a size already signed.
    Ed25519 costs tens of microseconds, so this is cheap enough for every commit.
    ``cosigners`` add their signatures to the same note (a key rotation's checkpoint is
    signed by the old key and the new one).
    """
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            return _sign(conn, key, cosigners)
    return _sign(bind, key, cosigners)


def _sign(conn: sa.Connection, key: SigningKey, cosigners: Sequence[SigningKey]) -> Checkpoint:
    tree = store.tree_head(conn)
    note = key.sign_note(checkpoint_body(key.name, tree.size, tree.root))
    for cosigner in cosigners:
        note = cosigner.cosign(note)
    # Ed25519 is deterministic: signing a size twice yields the same note, so a size
    # already stored (by us or a concurrent signer) is simply left as it is.
    stored = conn.execute(
        store.insert_ignoring_duplicates(store.checkpoints, "tree_size", conn.dialect.name),
        {
            "tree_size": tree.size,
            "root_hash": tree.root,
            "note": note,
            "signed_at": store.utc_now(),
        },
    ).rowcount
    if not stored:
        existing = conn.execute(
            sa.select(store.checkpoints.c.note).where(store.checkpoints.c.tree_size == tree.size)
        ).scalar_one()
        return open_checkpoint(existing, key.verifier)
    return Checkpoint(key.name, tree.size, tree.root, note)


def latest_checkpoint(engine: sa.Engine) -> str | None:
    """The stored signed checkpoint with the largest tree size, as note text, or None."""
    with engine.connect() as conn:
        return store.latest_note(conn)
