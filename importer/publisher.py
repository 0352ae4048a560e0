"""Hands upstream changes to the applier: ``UpstreamBatch`` messages on JetStream.

Every message goes to ``sync.upstream.<entity>`` with its ``batch_id`` as ``Nats-Msg-Id``.
Batch ids are deterministic (derived by the caller from the page or file position and the
content), so publishing the same changes again after a crash is a no-op twice over:
JetStream drops the duplicate inside its window, and the applier replays the stored result
of ``upstream:<batch_id>`` instead of applying it again.

A batch that would exceed the NATS payload limit is split (``<batch_id>/<n>``); splitting
depends only on the content, so a retry splits the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Sequence

import msgspec

from backend.applier.plan import upstream_result_id
from backend.messaging.broker import Broker
from backend.messaging.errors import MessagingError
from backend.messaging.subjects import upstream_subject
from backend.store.base import RecordStore
from sync_protocol.changesets import Mutation, UpstreamBatch

from .errors import PublishError

_encode = msgspec.msgpack.Encoder().encode
_MAX_ID = 200


def content_digest(*chunks: bytes | str) -> str:
    """A short hex digest identifying some content (part of deterministic batch ids)."""
    h = hashlib.blake2b(digest_size=8)
    for chunk in chunks:
        h.update(chunk.encode() if isinstance(chunk, str) else chunk)
        h.update(b"\x00")
    return h.hexdigest()


class PublishStats(msgspec.Struct):
    """Counters of one publisher."""

    messages: int = 0
    mutations: int = 0
    bytes: int = 0
    duplicates: int = 0


class UpstreamPublisher:
    """Publishes upstream batches for the applier.

    Args:
        broker: A connected broker (streams ensured).
        source: ``UpstreamBatch.source`` (``dynamics``, ``file``).
        batch_mutations: Most mutations per message.
        max_message_bytes: Largest message body (the NATS max payload).
        concurrency: Messages in flight at once.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        source: str,
        batch_mutations: int = 1000,
        max_message_bytes: int = 1024 * 1024,
        concurrency: int = 4,
    ) -> None:
        self.broker = broker
        self.source = source
        self.batch_mutations = batch_mutations
        # Leave room for headers and protocol overhead.
        self.max_bytes = max_message_bytes - 4096
        self._slots = asyncio.Semaphore(concurrency)
        self.stats = PublishStats()

    def encode(
        self, entity: str, mutations: Sequence[Mutation], batch_id: str
    ) -> list[tuple[str, bytes]]:
        """The messages ``(batch_id, body)`` that carry ``mutations``, split to fit.

        Raises:
            PublishError: A single mutation is larger than a message may be.
        """
        out: list[tuple[str, bytes]] = []
        step = self.batch_mutations
        chunks = [mutations[i : i + step] for i in range(0, len(mutations), step)] or [[]]
        for n, chunk in enumerate(chunks):
            bid = batch_id if len(chunks) == 1 else f"{batch_id}/{n}"
            self._fit(entity, list(chunk), bid, out)
        return out

    def _fit(
        self, entity: str, chunk: list[Mutation], bid: str, out: list[tuple[str, bytes]]
    ) -> None:
        if len(bid) > _MAX_ID:
            raise PublishError(f"batch id longer than {_MAX_ID} characters")
        body = _encode(UpstreamBatch(batch_id=bid, source=self.source, mutations=chunk))
        if len(body) <= self.max_bytes:
            out.append((bid, body))
            return
        if len(chunk) <= 1:
            raise PublishError(f"one {entity} change is larger than {self.max_bytes} bytes")
        half = len(chunk) // 2
        self._fit(entity, chunk[:half], f"{bid}a", out)
        self._fit(entity, chunk[half:], f"{bid}b", out)

    async def publish(self, entity: str, mutations: Sequence[Mutation], batch_id: str) -> list[str]:
        """Publish ``mutations`` of ``entity`` as one or more messages; wait for the acks.

        Args:
            entity: Entity of every mutation (the subject).
            mutations: The changes (may be empty: nothing is sent).
            batch_id: Deterministic id of this batch.

        Returns:
            The batch ids of the messages sent (what the applier stores results under).

        Raises:
            PublishError: NATS did not accept a message (after the broker's own retries).
        """
        if not mutations:
            return []
        messages = self.encode(entity, mutations, batch_id)
        subject = upstream_subject(entity)
        await asyncio.gather(*(self._send(subject, bid, body) for bid, body in messages))
        self.stats.mutations += len(mutations)
        return [bid for bid, _ in messages]

    async def _send(self, subject: str, bid: str, body: bytes) -> None:
        async with self._slots:
            last: MessagingError | None = None
            for attempt in range(5):
                try:
                    ack = await self.broker.publish(subject, body, msg_id=bid)
                except MessagingError as e:
                    # Same msg id on retry: if the first attempt was stored, this is a duplicate.
                    last = e
                    await asyncio.sleep(0.05 * 2**attempt)
                    continue
                self.stats.messages += 1
                self.stats.bytes += len(body)
                if ack.duplicate:
                    self.stats.duplicates += 1
                return
            raise PublishError(f"upstream batch {bid} not accepted: {last}") from last


async def wait_applied(
    store: RecordStore,
    batch_ids: Iterable[str],
    *,
    timeout_s: float = 60.0,
    interval_s: float = 0.05,
) -> bool:
    """Wait until the applier stored a result for every batch id.

    Args:
        store: The record store the applier writes to.
        batch_ids: Batch ids returned by :meth:`UpstreamPublisher.publish`.
        timeout_s: Give up after this long.
        interval_s: Poll interval.

    Returns:
        True if all were applied in time.
    """
    pending = list(dict.fromkeys(batch_ids))
    deadline = time.monotonic() + timeout_s
    while pending:
        still: list[str] = []
        for bid in pending:
            if await store.changeset_result(upstream_result_id(bid)) is None:
                still.append(bid)
        pending = still
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)
    return True
