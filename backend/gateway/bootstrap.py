"""Bootstrap: a streamed, compressed, resumable snapshot of the caller's whole scope.

The snapshot is read from the store in bounded batches, in sequence order, and written as
a sequence of frames, each one :class:`~sync_protocol.pull.BootstrapBatch`:

* ``application/vnd.crmsync.bootstrap+msgpack``: each frame is a 4-byte big-endian length
  followed by that many bytes of msgpack;
* ``application/x-ndjson``: each frame is one line of JSON.

The stream is gzip-compressed on the fly (``Content-Encoding: gzip``) when the client
accepts it, and flushed after every frame so the device can apply batches as they come.
Only one batch is ever held in memory, whatever the size of the scope.

Every frame carries a ``resume`` token (the sequence of the last record sent, signed with
the checkpoint key and bound to the user and the channel set): after a broken connection
the client asks again with ``resume=<token>`` and the stream continues after that
sequence. The snapshot holds the records as of the head sequence captured *before* the
first batch was read: a record written meanwhile has moved past the head, so the scan
stops short of it (each record comes at most once, which lets a fresh replica load
without its unique key), and the last frame, ``done: true``, carries a pull checkpoint
at that head, so every change committed while the snapshot streamed arrives with the
next pull.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from backend.auth.principal import Principal
from backend.store.base import RecordStore
from sync_protocol.checkpoint import Checkpoint, encode_checkpoint, scope_hash
from sync_protocol.errors import InvalidCheckpointError
from sync_protocol.pull import BootstrapBatch

from .pull import change_for

logger = logging.getLogger("crmsync.gateway.bootstrap")

MSGPACK_FRAMES = "application/vnd.crmsync.bootstrap+msgpack"
NDJSON_FRAMES = "application/x-ndjson"
FrameFormat = Literal["msgpack", "ndjson"]

_DOMAIN = b"crmsync-bootstrap\x00"
_MAC_LEN = 16
_MAX_TOKEN = 2048


class BootstrapCursor(msgspec.Struct, array_like=True, frozen=True):
    """Where a bootstrap stream stands (inside the signed ``resume`` token).

    Attributes:
        user: the user it streams for.
        scope: scope hash of the channel set.
        head: the head sequence captured when the bootstrap began.
        seq: sequence of the last record sent (0 before the first).
        sent: records sent so far.
    """

    user: str
    scope: int
    head: int
    seq: int = 0
    sent: int = 0


_cursor_encoder = msgspec.msgpack.Encoder()
_cursor_decoder = msgspec.msgpack.Decoder(BootstrapCursor)
_msgpack = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()


def encode_cursor(cursor: BootstrapCursor, key: bytes) -> str:
    """Sign a cursor into an opaque URL-safe resume token."""
    payload = _cursor_encoder.encode(cursor)
    mac = hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_LEN]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


def decode_cursor(token: str, key: bytes, user: str) -> BootstrapCursor:
    """Verify a resume token issued to ``user``.

    Raises:
        InvalidCheckpointError: malformed, forged, or another user's.
    """
    if not token or len(token) > _MAX_TOKEN:
        raise InvalidCheckpointError("resume token missing or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as e:
        raise InvalidCheckpointError("resume token is not base64url") from e
    if len(raw) <= _MAC_LEN:
        raise InvalidCheckpointError("resume token too short")
    payload, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
    expected = hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_LEN]
    if not hmac.compare_digest(mac, expected):
        raise InvalidCheckpointError("resume token signature does not match")
    try:
        cursor = _cursor_decoder.decode(payload)
    except msgspec.MsgspecError as e:
        raise InvalidCheckpointError("resume token payload is malformed") from e
    if cursor.user != user:
        raise InvalidCheckpointError("resume token was issued to another user")
    return cursor


def encode_frame(batch: BootstrapBatch, fmt: FrameFormat) -> bytes:
    """One frame of the stream (length-prefixed msgpack, or a JSON line)."""
    if fmt == "msgpack":
        body = _msgpack.encode(batch)
        return struct.pack(">I", len(body)) + body
    return _json.encode(batch) + b"\n"


def iter_frames(data: bytes, fmt: FrameFormat) -> list[BootstrapBatch]:
    """Decode a whole (decompressed) stream back into batches (tests and tools)."""
    out: list[BootstrapBatch] = []
    if fmt == "ndjson":
        return [
            msgspec.json.decode(line, type=BootstrapBatch) for line in data.splitlines() if line
        ]
    pos = 0
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        pos += 4
        out.append(msgspec.msgpack.decode(data[pos : pos + size], type=BootstrapBatch))
        pos += size
    return out


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """A validated bootstrap request, ready to stream."""

    principal: Principal
    cursor: BootstrapCursor
    batch: int
    fmt: FrameFormat
    gzip: bool


class SnapshotStreamer:
    """Streams snapshots of callers' scopes.

    Args:
        store: the record store.
        checkpoint_key: HMAC key for resume tokens and the final checkpoint.
        clock: wall time in ms.
        on_records: called with the size of every batch sent (metrics).
    """

    def __init__(
        self,
        store: RecordStore,
        checkpoint_key: bytes,
        *,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
        on_records: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.key = checkpoint_key
        self.clock = clock
        self.on_records = on_records

    async def plan(
        self,
        principal: Principal,
        resume: str | None,
        *,
        batch: int,
        fmt: FrameFormat,
        gzip: bool,
    ) -> SnapshotPlan:
        """Validate a request before any byte is streamed (errors are still problems).

        Raises:
            InvalidCheckpointError: a bad resume token, or the caller's channels changed
                since the bootstrap began (start again without ``resume``).
        """
        scope = scope_hash(principal.channels)
        if resume:
            cursor = decode_cursor(resume, self.key, principal.user)
            if cursor.scope != scope:
                raise InvalidCheckpointError("channels changed since the bootstrap began")
        else:
            cursor = BootstrapCursor(
                user=principal.user, scope=scope, head=await self.store.head_seq()
            )
        return SnapshotPlan(principal, cursor, batch, fmt, gzip)

    async def stream(self, plan: SnapshotPlan) -> AsyncIterator[bytes]:
        """The (compressed) frames of the snapshot, one batch at a time."""
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if plan.gzip else None
        grants = plan.principal.channels
        channels = sorted(grants)
        cursor = plan.cursor
        while True:
            records = await self.store.scan(channels, cursor.seq, plan.batch) if channels else []
            done = len(records) < plan.batch
            if records and records[-1].seq > cursor.head:
                # Written after the snapshot began: the pull from the head brings it.
                records = [r for r in records if r.seq <= cursor.head]
                done = True
            if records:
                last = records[-1]
                cursor = BootstrapCursor(
                    user=cursor.user,
                    scope=cursor.scope,
                    head=cursor.head,
                    seq=last.seq,
                    sent=cursor.sent + len(records),
                )
            batch = BootstrapBatch(
                records=[change_for(r, grants) for r in records],
                resume=encode_cursor(cursor, self.key),
                done=done,
                total=cursor.sent,
            )
            if done:
                batch.checkpoint = encode_checkpoint(
                    Checkpoint(
                        seq=cursor.head,
                        user=cursor.user,
                        scope=cursor.scope,
                        issued_ms=self.clock(),
                    ),
                    self.key,
                )
            frame = encode_frame(batch, plan.fmt)
            if self.on_records is not None:
                self.on_records(len(records))
            if compressor is None:
                yield frame
            else:
                yield compressor.compress(frame) + compressor.flush(zlib.Z_SYNC_FLUSH)
            if done:
                break
        if compressor is not None:
            yield compressor.flush(zlib.Z_FINISH)
