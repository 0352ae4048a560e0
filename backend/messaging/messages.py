"""Value types that cross the messaging port: what callers get back and hand in.

They hold no nats-py objects, so code above the port (gateway, applier, importer) and its
tests never depend on the NATS client library.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from backend.messaging.subjects import MSG_ID_HEADER

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PublishAck:
    """The stream's acknowledgement of a JetStream publish.

    Attributes:
        stream: Stream that stored the message.
        seq: Its sequence in that stream (for a duplicate: the original's sequence).
        duplicate: True when the ``Nats-Msg-Id`` was seen within the duplicate window and
            nothing new was stored (the push is a replay).
    """

    stream: str
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class CoreMessage:
    """A core-NATS message (event, request reply, or request to answer).

    Attributes:
        subject: Subject it was published on.
        data: Payload bytes.
        headers: Message headers (empty when none).
        reply: Reply subject of a request, to answer with ``publish_core(reply, ...)``.
    """

    subject: str
    data: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: _NO_HEADERS)
    reply: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One JetStream message handed to a consumer handler.

    Attributes:
        subject: Subject the message was published on.
        data: Payload bytes.
        headers: Message headers (empty when none).
        stream: Stream it comes from.
        consumer: Durable consumer that delivered it.
        stream_seq: Its sequence in the stream (stable across redeliveries).
        consumer_seq: Delivery sequence of the consumer (changes on redelivery).
        num_delivered: How many times it has been delivered, this time included
            (2 or more means a redelivery: the handler must be idempotent).
        num_pending: Messages still waiting in the consumer after this one.
    """

    subject: str
    data: bytes
    headers: Mapping[str, str]
    stream: str
    consumer: str
    stream_seq: int
    consumer_seq: int
    num_delivered: int
    num_pending: int

    @property
    def msg_id(self) -> str | None:
        """The ``Nats-Msg-Id`` it was published with (the changeset id), if any."""
        return self.headers.get(MSG_ID_HEADER)


@dataclass(slots=True)
class ConsumeStats:
    """Counters of one consumer loop, updated live (readable while it runs, e.g. for metrics).

    Attributes:
        batches: Batches fetched.
        delivered: Messages handed to the handler (retries of a failed batch not counted).
        acked: Messages acknowledged after the handler succeeded.
        nacked: Messages handed back for redelivery after a handler failure.
        handler_failures: Handler calls that raised.
        dead_lettered: Messages copied to the dead-letter stream.
        terminated: Messages given up on (after max deliveries), dead-lettered or not.
        empty_fetches: Fetches that waited ``fetch_wait`` and got nothing (idle stream).
    """

    batches: int = 0
    delivered: int = 0
    acked: int = 0
    nacked: int = 0
    handler_failures: int = 0
    dead_lettered: int = 0
    terminated: int = 0
    empty_fetches: int = 0


BatchHandler = Callable[[Sequence[Delivery]], Awaitable[None]]
"""Consumer handler: processes a batch; returning means every message in it is done."""

CoreHandler = Callable[[CoreMessage], Awaitable[None]]
"""Core-NATS subscription handler."""
