"""Messages between the gateway, the applier and the importer (over JetStream / core NATS).

All are msgspec Structs encoded as msgpack. The gateway publishes a
:class:`ChangesetEnvelope` to ``sync.changesets.<device-token>`` with the changeset id as
``Nats-Msg-Id``; the importer and the file import publish
:class:`~sync_protocol.changesets.UpstreamBatch` to ``sync.upstream.<entity>``; the
applier publishes :class:`OutboundChange` to ``sync.outbound.<entity>`` for writeback,
the :class:`~sync_protocol.changesets.ChangesetResult` to the results subject, and a
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


class ChangeEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A "changes available" poke for one channel: the committed sequence that touched it."""

    channel: str
    seq: int
    committed_ms: int = 0


encode = msgspec.msgpack.Encoder().encode
envelope_decoder = msgspec.msgpack.Decoder(ChangesetEnvelope)
outbound_decoder = msgspec.msgpack.Decoder(OutboundChange)
event_decoder = msgspec.msgpack.Decoder(ChangeEvent)
upstream_decoder = msgspec.msgpack.Decoder(UpstreamBatch)
result_decoder = msgspec.msgpack.Decoder(ChangesetResult)
