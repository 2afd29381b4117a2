"""The checkpoint log and its Ed25519 key: where the audit trail's signed heads are kept.

Why Ed25519 and not HMAC: verifying needs only the public key. A clinical safety officer or
an auditor can check the trail with the ``.pub`` file and cannot forge a checkpoint with it;
with HMAC, whoever verifies holds the key that signs. The private key lives in a file outside
the database (mode 0600, made on first use); the checkpoint log is an append-only file beside
it, and the flusher copies each checkpoint into the database too, so the two copies check
each other. Someone who can write the database but not these files can hide nothing that a
checkpoint anchors; ship the log elsewhere (a log shipper, WORM storage) to keep it from
someone who can write the machine too.

The log is shared by every process on the machine: an append takes ``flock`` on it, reads
the last checkpoint, and writes the next one after it, fsync'd.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from healing.audit_checkpoint import Checkpoint, CheckpointError, next_checkpoint
from healing.clock import Clock, SystemClock
from healing.errors import SelfHealError

__all__ = ["CheckpointLog", "KeyFileError", "PublicKeys", "SigningKey", "public_path",
           "read_checkpoints"]

_TAIL = 4096  # a checkpoint line is about 500 bytes


class KeyFileError(SelfHealError):
    """A key file is missing, unreadable or not an Ed25519 key."""


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class SigningKey:
    """The private key that signs checkpoints, and its id."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.id = _key_id(self.public)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> SigningKey:
        """The key in ``path``; made (0600, with its public half in ``path.pub``) if absent."""
        p = pathlib.Path(path)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
            # Written whole under a private name, then linked into place: a process starting
            # at the same moment sees no key or a complete one, and the first link wins.
            tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
                    f.flush()
                    os.fsync(f.fileno())
                with contextlib.suppress(FileExistsError):  # another process won: use theirs
                    os.link(tmp, p)
                    pub_tmp = tmp.with_name(tmp.name + ".pub")
                    pub_tmp.write_bytes(pub)
                    os.replace(pub_tmp, public_path(p))
            finally:
                tmp.unlink(missing_ok=True)
        return cls.load(p)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        return cls(_read_key(pathlib.Path(path), Ed25519PrivateKey, "private"))

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._private.sign(data)).decode()


def _read_key(path: pathlib.Path, kind: type[Any], half: str) -> Any:
    """The Ed25519 key in the PEM file ``path``, or one line saying what is wrong with it."""
    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, None) if half == "private" \
            else serialization.load_pem_public_key(data)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot be read ({exc.strerror})") from None
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: is not a PEM {half} key") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path}: is not an Ed25519 {half} key")
    return key


def public_path(private: pathlib.Path) -> pathlib.Path:
    return private.with_name(private.name + ".pub")


class PublicKeys:
    """The public keys a verifier trusts, by id."""

    def __init__(self, keys: list[Ed25519PublicKey]) -> None:
        self.by_id = {_key_id(k): k for k in keys}

    @classmethod
    def load(cls, paths: list[pathlib.Path]) -> PublicKeys:
        return cls([_read_key(p, Ed25519PublicKey, "public") for p in paths])

    def signature_ok(self, cp: Checkpoint) -> bool:
        key = self.by_id.get(cp.key)
        if key is None:
            return False
        try:
            key.verify(base64.b64decode(cp.sig, validate=True), cp.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True


class CheckpointLog:
    """The append-only checkpoint log of one machine.

    Args:
        path: the log file (shared by every process that writes audit records here).
        key: the signing key.
        clock: for each checkpoint's ``at`` (the system's by default).
    """

    def __init__(self, path: str | os.PathLike[str], key: SigningKey,
                 clock: Clock | None = None) -> None:
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self._wall = (clock or SystemClock()).wall

    def append(self, writer: str, seq: int, hash: str, closed: bool) -> Checkpoint:
        """Sign ``writer``'s head into the log after its last checkpoint; durable on return."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            prev, end = _last(fd)
            if end is not None:  # a torn line from a crash mid-append: never acknowledged
                os.ftruncate(fd, end)
            cp = next_checkpoint(prev, log=prev.log if prev else uuid.uuid4().hex,
                                 at=self._wall(), writer=writer, seq=seq, hash=hash,
                                 closed=closed, key=self.key.id, sign=self.key.sign)
            os.write(fd, (cp.to_json() + "\n").encode())
            os.fdatasync(fd)
            return cp
        finally:
            os.close(fd)  # releases the lock


def _last(fd: int) -> tuple[Checkpoint | None, int | None]:
    """The log's last checkpoint, and where a torn last line starts (None if none is)."""
    size = os.fstat(fd).st_size
    start = max(0, size - _TAIL)
    tail = os.pread(fd, size - start, start)
    torn = None
    if tail and not tail.endswith(b"\n"):
        cut = tail.rfind(b"\n") + 1
        torn, tail = start + cut, tail[:cut]
    lines = tail.splitlines()
    if not lines:
        return None, torn
    try:
        return Checkpoint.from_json(lines[-1].decode()), torn
    except (CheckpointError, UnicodeDecodeError):
        # Not ours to repair: start over after it. The verifier reports the bad line and
        # this checkpoint's broken link.
        return None, torn


def read_checkpoints(path: pathlib.Path,
                     offset: int = 0) -> tuple[list[Checkpoint | CheckpointError], int]:
    """Every complete line of the log from ``offset``, parsed, and the offset after them."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    return list(_parse(data[:end])), offset + end


def _parse(data: bytes) -> Iterator[Checkpoint | CheckpointError]:
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            yield Checkpoint.from_json(line.decode())
        except UnicodeDecodeError:
            yield CheckpointError("not UTF-8")
        except CheckpointError as exc:
            yield exc

