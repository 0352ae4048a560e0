"""Opaque, tamper-evident pull checkpoints.

A checkpoint is what a device stores after applying a page, in the same transaction.
It names the sequence the device has applied, the user it was issued to and a hash of
the channel set it was computed for (so a grant change is noticed on the next pull).
The server signs it with HMAC-SHA256; a device cannot move it or reuse another user's.
Sequences, not timestamps: a checkpoint never skips a change committed out of order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

import msgspec

from .errors import InvalidCheckpointError

_MAC_LEN = 16
_MAX_TOKEN = 4096


class Checkpoint(msgspec.Struct, array_like=True, frozen=True):
    """A position in the caller's change feed.

    Attributes:
        seq: every change with a sequence up to this one has been delivered.
        user: the user it was issued to.
        scope: :func:`scope_hash` of the channels it was computed for.
        issued_ms: server wall time of issue (for retention checks and diagnostics).
        backfill: channels granted since, each with the sequence its backfill reached.
    """

    seq: int
    user: str
    scope: int
    issued_ms: int
    backfill: dict[str, int] = {}


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Checkpoint)


def scope_hash(channels: Iterable[str]) -> int:
    """A 64-bit hash of a channel set, independent of order."""
    h = hashlib.blake2b(digest_size=8)
    for c in sorted(set(channels)):
        h.update(c.encode())
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "little")


def encode_checkpoint(cp: Checkpoint, key: bytes) -> str:
    """Serialise and sign a checkpoint into an opaque URL-safe token."""
    payload = _encoder.encode(cp)
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_LEN]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


def decode_checkpoint(token: str, key: bytes, user: str) -> Checkpoint:
    """Verify and decode a token issued to ``user``.

    Raises:
        InvalidCheckpointError: malformed, signed with another key, or issued to someone else.
    """
    if not token or len(token) > _MAX_TOKEN:
        raise InvalidCheckpointError("checkpoint missing or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as e:
        raise InvalidCheckpointError("checkpoint is not base64url") from e
    if len(raw) <= _MAC_LEN:
        raise InvalidCheckpointError("checkpoint too short")
    payload, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_LEN]
    if not hmac.compare_digest(mac, expected):
        raise InvalidCheckpointError("checkpoint signature does not match")
    try:
        cp = _decoder.decode(payload)
    except msgspec.MsgspecError as e:
        raise InvalidCheckpointError("checkpoint payload is malformed") from e
    if cp.user != user:
        raise InvalidCheckpointError("checkpoint was issued to another user")
    if cp.seq < 0:
        raise InvalidCheckpointError("checkpoint sequence is negative")
    return cp
