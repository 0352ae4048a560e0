"""The applier's consumer wiring: durable pull loops, bounded concurrency, compaction.

Every applier process runs the same durable consumers (``applier-changesets`` on
``SYNC_CHANGESETS``, ``applier-upstream`` on ``SYNC_UPSTREAM``), so N processes split the
streams between them. A message is acked only after :class:`~backend.applier.service.Applier`
returned for it, i.e. after its commit and its announcements; a process that dies before
that leaves it unacked and JetStream hands it to another process, whose stored-result check
makes the second delivery a replay, never a second apply.

Changesets of one device (one subject) are applied one after the other in stream order;
changesets of different devices in one fetched batch share a group commit (one read, one
transaction, a savepoint each). At most ``max_concurrency`` commits run at a time.
A message that cannot be decoded is copied to the dead-letter stream and acked (retrying
it cannot help).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from backend.applier.config import ApplierConfig
from backend.applier.errors import ApplierError, MalformedMessageError
from backend.applier.messages import ChangesetEnvelope, envelope_decoder, upstream_decoder
from backend.applier.service import Applier
from backend.messaging.broker import Broker
from backend.messaging.messages import ConsumeStats, Delivery
from backend.messaging.subjects import (
    CHANGESETS_STREAM,
    DLQ_CONSUMER_HEADER,
    DLQ_DELIVERIES_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_SEQ_HEADER,
    DLQ_STREAM_HEADER,
    DLQ_SUBJECT_HEADER,
    RESULT_SUBJECT_HEADER,
    UPSTREAM_STREAM,
    dead_letter_subject,
)

logger = logging.getLogger("crmsync.applier.worker")


class ApplierWorker:
    """Runs the applier's consumer loops and the tombstone compaction schedule.

    Args:
        applier: The applier that does the work.
        broker: The connected broker to consume from.
        config: Consumer, concurrency and compaction settings (the applier's if ``None``).
    """

    def __init__(
        self, applier: Applier, broker: Broker, config: ApplierConfig | None = None
    ) -> None:
        self.applier = applier
        self.broker = broker
        self.config = config or applier.config
        self.changeset_stats = ConsumeStats()
        self.upstream_stats = ConsumeStats()
        self._slots = asyncio.Semaphore(self.config.max_concurrency)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batches in hand are finished and acked first.

        Raises:
            MessagingError: A consumer loop failed (connection closed, stream deleted);
                the other loops are stopped first.
        """
        cfg = self.config
        await self.broker.ensure_streams()
        loops: list[asyncio.Task[object]] = []
        for _ in range(cfg.changeset_workers):
            loops.append(
                asyncio.create_task(
                    self.broker.consume(
                        CHANGESETS_STREAM,
                        cfg.changesets_durable,
                        self.handle_changesets,
                        batch=cfg.changeset_batch,
                        fetch_wait=cfg.fetch_wait_s,
                        stop=stop,
                        stats=self.changeset_stats,
                    )
                )
            )
        for _ in range(cfg.upstream_workers):
            loops.append(
                asyncio.create_task(
                    self.broker.consume(
                        UPSTREAM_STREAM,
                        cfg.upstream_durable,
                        self.handle_upstream,
                        batch=cfg.upstream_batch,
                        fetch_wait=cfg.fetch_wait_s,
                        stop=stop,
                        stats=self.upstream_stats,
                    )
                )
            )
        compaction = asyncio.create_task(self._compact_periodically(stop))
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if t.exception() is not None]
            if failed:
                stop.set()
                await asyncio.gather(*loops, return_exceptions=True)
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            stop.set()
            compaction.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await compaction

    # ------------------------------------------------------------------ handlers

    async def handle_changesets(self, deliveries: Sequence[Delivery]) -> None:
        """Apply a batch of device changesets: per device in order, devices together.

        Round ``k`` holds the ``k``-th changeset of every device in the batch and is
        applied with one group commit (:meth:`Applier.apply_changesets`); a device's next
        changeset waits for the next round, so each device's changesets commit in stream
        order. Undecodable messages are dead-lettered first.

        Raises:
            Exception: The first failure (the consumer loop then retries the batch message
                by message; the ones that committed replay from their stored results).
        """
        rounds: list[list[tuple[ChangesetEnvelope, str | None]]] = []
        depth: dict[str, int] = {}
        for d in deliveries:
            try:
                envelope = envelope_decoder.decode(d.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                await self._dead_letter(d, MalformedMessageError(f"not a changeset envelope: {e}"))
                continue
            k = depth.get(d.subject, 0)
            depth[d.subject] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append((envelope, d.headers.get(RESULT_SUBJECT_HEADER)))
        for items in rounds:
            async with self._slots:
                await self.applier.apply_changesets(items)

    async def handle_upstream(self, deliveries: Sequence[Delivery]) -> None:
        """Apply upstream batches one after the other (each is one large transaction)."""
        await self._in_order(list(deliveries), self._apply_upstream)

    async def _in_order(
        self, deliveries: list[Delivery], apply: Callable[[Delivery], Awaitable[None]]
    ) -> None:
        for d in deliveries:
            async with self._slots:
                await apply(d)

    async def _apply_upstream(self, d: Delivery) -> None:
        try:
            batch = upstream_decoder.decode(d.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            await self._dead_letter(d, MalformedMessageError(f"not an upstream batch: {e}"))
            return
        await self.applier.apply_upstream(batch, reply_subject=d.headers.get(RESULT_SUBJECT_HEADER))

    async def _dead_letter(self, d: Delivery, error: ApplierError) -> None:
        """Park an undecodable message where operators look, then let it be acked."""
        self.applier.metrics.record_malformed()
        logger.error(
            "dead-lettering %s seq %d (subject %s): %s",
            d.stream,
            d.stream_seq,
            d.subject,
            error.code,
        )
        headers = {
            DLQ_STREAM_HEADER: d.stream,
            DLQ_SEQ_HEADER: str(d.stream_seq),
            DLQ_SUBJECT_HEADER: d.subject,
            DLQ_CONSUMER_HEADER: d.consumer,
            DLQ_DELIVERIES_HEADER: str(d.num_delivered),
            DLQ_ERROR_HEADER: f"{type(error).__name__}[{error.code}]: {error}"[:500],
        }
        await self.broker.publish(
            dead_letter_subject(d.stream, d.consumer),
            d.data,
            headers=headers,
            msg_id=f"dlq:{d.stream}:{d.consumer}:{d.stream_seq}",
        )

    # ------------------------------------------------------------------ compaction

    async def _compact_periodically(self, stop: asyncio.Event) -> None:
        interval = self.config.compact_interval_s
        if interval <= 0:
            return
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            await self.compact_once()

    async def compact_once(self) -> int:
        """Drop tombstones and removals older than the retention window.

        Returns:
            How many entries were dropped (0 if the store failed; it is tried again at
            the next interval).
        """
        cutoff = self.applier.now() - self.config.tombstone_retention_ms
        try:
            dropped = await self.applier.store.compact(cutoff)
        except Exception as e:  # keep consuming whatever the store says; log and retry later
            logger.warning("compaction failed: %s", type(e).__name__)
            return 0
        self.applier.metrics.record_compaction(dropped)
        if dropped:
            logger.info("compaction dropped %d entries", dropped)
        return dropped
