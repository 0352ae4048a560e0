"""Messages between the gateway, the applier and the importer (over JetStream / core NATS).

All are msgspec Structs encoded as msgpack. The gateway publishes a
:class:`ChangesetEnvelope` to ``sync.changesets.<device-token>`` with the changeset id as
``Nats-Msg-Id``; the importer and the file import publish
:class:`~sync_protocol.changesets.UpstreamBatch` to ``sync.upstream.<entity>``; the
applier publishes each changeset's :class:`OutboundChange` list as an
:class:`OutboundBatch` to ``sync.outbound.changes`` for writeback, the
:class:`~sync_protocol.changesets.ChangesetResult` to the results subject, and a
:class:`ChangeEvent` to ``crm.events.<channel-token>`` after each commit.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from sync_protocol.changesets import ChangesetResult, PushRequest, UpstreamBatch


class Actor(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Who pushed: resolved by the gateway from a verified token and the device registry."""

    user: str
    profile: str
    channels: list[str]
    device_id: str
    language: str = "en"


class ChangesetEnvelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A device changeset, as the gateway hands it to the applier."""

    push: PushRequest
    actor: Actor
    received_ms: int


class OutboundChange(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A device-made change the writeback must send to Dynamics.

    ``fields`` holds only the fields the device changed that are now live;
    ``upstream_etag`` is the ETag the record had when the change was applied (for
    ``If-Match``); ``change_id`` is unique and stable (``<changeset_id>/<index>``) so
    writeback can de-duplicate and recognise the echo.
    """

    change_id: str
    entity: str
    id: str
    op: Literal["upsert", "delete"]
    fields: dict[str, Any] = {}
    created: bool = False
    version: int = 0
    seq: int = 0
    upstream_etag: str | None = None
    changeset_id: str = ""
    device_id: str = ""
    user: str = ""


class OutboundBatch(msgspec.Struct, kw_only=True):
    """Several :class:`OutboundChange` of one changeset in one stream message.

    One message per changeset instead of one per mutation: the per-message cost (client,
    server, consumer) was most of the applier's NATS work. Changes keep their own
    ``change_id`` (writeback's de-duplication key); the message's ``Nats-Msg-Id`` is
    ``<changeset_id>/out/<n>``. A changeset whose changes do not fit one message is
    split into several, deterministically, so a replay publishes the same ids.
    """

    changes: list[OutboundChange]


class ChangeEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A "changes available" poke for one channel: the committed sequence that touched it."""

    channel: str
    seq: int
    committed_ms: int = 0


encode = msgspec.msgpack.Encoder().encode
envelope_decoder = msgspec.msgpack.Decoder(ChangesetEnvelope)
outbound_decoder = msgspec.msgpack.Decoder(OutboundChange)
_outbound_batch_decoder = msgspec.msgpack.Decoder(OutboundBatch)


def decode_outbound(data: bytes) -> list[OutboundChange]:
    """The changes in an outbound message: an :class:`OutboundBatch`, or (as published
    before batches existed) a single :class:`OutboundChange`.

    Raises:
        msgspec.DecodeError: Neither.
    """
    try:
        return _outbound_batch_decoder.decode(data).changes
    except msgspec.ValidationError:
        return [outbound_decoder.decode(data)]


event_decoder = msgspec.msgpack.Decoder(ChangeEvent)
upstream_decoder = msgspec.msgpack.Decoder(UpstreamBatch)
result_decoder = msgspec.msgpack.Decoder(ChangesetResult)
