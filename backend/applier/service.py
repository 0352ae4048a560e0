"""The applier: the one write path for records, from devices and from the system of record.

For a device changeset: if a result is stored under its id, that result is the answer
(idempotent replay: nothing is written again). Otherwise the touched records are read with
one ``get_many``, the changeset is planned (:mod:`backend.applier.plan`: scope, merge,
channels, conflicts, audit) and committed with one ``store.apply``, compare-and-swap on
every record's version; when another writer got there first the records are read and the
changeset planned again (bounded). After the commit, and only then, the applier announces:

1. the :class:`~sync_protocol.changesets.ChangesetResult` on the result subject (core
   NATS) for the gateway waiting on that push;
2. a :class:`~backend.applier.messages.ChangeEvent` per touched channel (core NATS), which
   gateways turn into "changes" pokes;
3. the :class:`~backend.applier.messages.OutboundChange` of every effective device
   mutation, as one :class:`~backend.applier.messages.OutboundBatch` per changeset (split
   only if too large) on ``sync.outbound.changes`` (JetStream, ``Nats-Msg-Id`` =
   ``<changeset_id>/out/<n>``; each change keeps ``change_id`` = ``<changeset_id>/<index>``)
   for the importer's writeback.

The stream message is acked by the consumer loop after this returns. A crash between the
commit and the ack redelivers the message; the stored result short-circuits the merge and
the three announcements are made again: pokes and results are harmless twice, and
JetStream drops outbound duplicates within its duplicate window. Beyond the window (a
message redelivered more than ``duplicate_window`` after its first publish) writeback can
see a change twice; it de-duplicates by ``change_id`` (see ``docs/applier.md``).

Upstream batches take the same path with ``source="upstream"``, no permission limits, and
no outbound messages (a Dynamics change must not be written back to Dynamics).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from backend.applier.config import ApplierConfig
from backend.applier.errors import RetriesExhaustedError
from backend.applier.messages import (
    ChangeEvent,
    ChangesetEnvelope,
    OutboundBatch,
    OutboundChange,
    encode,
)
from backend.applier.metrics import ApplierMetrics
from backend.applier.plan import (
    Key,
    Plan,
    outbound_changes,
    plan_changeset,
    plan_upstream,
    result_keys,
    touched_keys,
    upstream_result_id,
)
from backend.messaging.broker import Broker
from backend.messaging.subjects import (
    MSG_ID_HEADER,
    OUTBOUND_BATCH_SUBJECT,
    event_subject,
    results_subject,
)
from backend.store.base import RecordStore
from backend.store.errors import VersionConflictError
from backend.store.types import CommitResult
from sync_protocol.changesets import ChangesetResult, UpstreamBatch
from sync_protocol.records import Record
from sync_protocol.rules import SyncRules

logger = logging.getLogger("crmsync.applier")

_RETRY_BACKOFF_S = 0.002
OUTBOUND_MAX_BYTES = 256 * 1024
"""Largest outbound message (the stream takes 1 MiB; headers and growth need room)."""


def wall_ms() -> int:
    """Server wall time in milliseconds."""
    return time.time_ns() // 1_000_000


class Applier:
    """Applies device changesets and upstream batches through the merge and the store.

    Args:
        store: The record store.
        broker: Where results, change events and outbound changes are published; ``None``
            publishes nothing (tools and tests that only need the writes).
        rules: Sync rules: channels, conflict policies, profiles.
        now: Wall clock in milliseconds (injected so tests drive time).
        config: Merge, retry and consumer settings.
        metrics: Counters to update; a private set if ``None``.
    """

    def __init__(
        self,
        store: RecordStore,
        broker: Broker | None,
        rules: SyncRules,
        *,
        now: Callable[[], int] = wall_ms,
        config: ApplierConfig | None = None,
        metrics: ApplierMetrics | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.rules = rules
        self.now = now
        self.config = config or ApplierConfig()
        self.metrics = metrics or ApplierMetrics()

    # ------------------------------------------------------------------ device changesets

    async def apply_changeset(
        self, envelope: ChangesetEnvelope, *, reply_subject: str | None = None
    ) -> ChangesetResult:
        """Apply a device changeset once, then announce it.

        Args:
            envelope: The changeset and the actor the gateway resolved.
            reply_subject: Where to publish the result; the changeset's results subject
                if ``None``.

        Returns:
            The changeset's result: the stored one if it was applied before.

        Raises:
            RetriesExhaustedError: Records kept changing under the merge.
            StoreError: The store failed (nothing was committed, or the commit is
                recognised on the next delivery).
            MessagingError: Publishing after the commit failed (the next delivery
                replays the stored result and publishes again).
        """
        push = envelope.push
        stored = await self.store.changeset_result(push.changeset_id)
        if stored is not None:
            await self._replay_changeset(envelope, stored, reply_subject)
            return stored
        start = time.perf_counter()
        max_skew = self.config.max_skew_ms
        committed = await self._commit(
            push.changeset_id,
            touched_keys(push.mutations),
            lambda current, now: plan_changeset(envelope, current, self.rules, now, max_skew),
        )
        if isinstance(committed, ChangesetResult):
            # Another applier committed this changeset while we were merging it.
            await self._replay_changeset(envelope, committed, reply_subject)
            return committed
        plan, commit = committed
        self.metrics.record_result("device", plan.result, time.perf_counter() - start)
        etags = {(r.entity, r.id): r.upstream_etag for r in commit.records}
        await self._announce(
            plan.result,
            plan.channels,
            reply_subject or results_subject(push.changeset_id),
            outbound_changes(envelope, plan.result, etags),
        )
        return plan.result

    async def apply_changesets(
        self, items: Sequence[tuple[ChangesetEnvelope, str | None]]
    ) -> list[ChangesetResult]:
        """Apply changesets of different devices with one read and one group commit.

        The changesets are planned against one ``get_many`` of every record they touch
        and committed with one :meth:`~backend.store.base.RecordStore.apply_group`: each
        stays atomic on its own, with its own sequences and stored result, but the group
        shares one transaction (on SQLite, a 64-changeset group costs about a third of
        the store CPU of 64 single commits). A changeset that touches a record an earlier
        one of the group touches, and one the group commit refused (another writer got
        there first, or it is a redelivery of a stored changeset), is applied afterwards
        by :meth:`apply_changeset`, in the order given. Give at most one changeset per
        device: a device's changesets must commit in order, and a refused one would be
        overtaken by its successor.

        Args:
            items: ``(envelope, reply_subject)`` pairs.

        Returns:
            The results, in the order of ``items``.

        Raises:
            StoreError, MessagingError, RetriesExhaustedError: as :meth:`apply_changeset`;
                whatever committed before the failure replays on the next delivery.
        """
        if len(items) == 1:
            envelope, reply = items[0]
            return [await self.apply_changeset(envelope, reply_subject=reply)]
        start = time.perf_counter()
        claimed: set[Key] = set()
        grouped: list[int] = []
        for i, (envelope, _) in enumerate(items):
            keys = touched_keys(envelope.push.mutations)
            if claimed.isdisjoint(keys):
                claimed.update(keys)
                grouped.append(i)
        current = await self.store.get_many(list(claimed))
        now, max_skew = self.now(), self.config.max_skew_ms
        plans = [plan_changeset(items[i][0], current, self.rules, now, max_skew) for i in grouped]
        outcomes = await self.store.apply_group([p.batch for p in plans])
        elapsed = time.perf_counter() - start
        results: list[ChangesetResult | None] = [None] * len(items)
        announcements: list[_Announcement] = []
        for i, plan, outcome in zip(grouped, plans, outcomes, strict=True):
            if not isinstance(outcome, CommitResult):
                continue  # refused: the one-by-one path below re-reads, replays or retries
            if plan.result.seq == 0:
                plan.result.seq = outcome.last_seq
            results[i] = plan.result
            self.metrics.record_result("device", plan.result, elapsed)
            envelope, reply = items[i]
            etags = {(r.entity, r.id): r.upstream_etag for r in outcome.records}
            announcements.append(
                _Announcement(
                    plan.result,
                    plan.channels,
                    reply or results_subject(envelope.push.changeset_id),
                    outbound_changes(envelope, plan.result, etags),
                )
            )
        await self._announce_all(announcements)
        out: list[ChangesetResult] = []
        for i, result in enumerate(results):
            if result is None:
                envelope, reply = items[i]
                result = await self.apply_changeset(envelope, reply_subject=reply)
            out.append(result)
        return out

    async def _replay_changeset(
        self, envelope: ChangesetEnvelope, stored: ChangesetResult, reply_subject: str | None
    ) -> None:
        self.metrics.record_replay("device")
        if self.broker is None:
            return
        current = await self.store.get_many(result_keys(stored.results))
        etags = {k: r.upstream_etag for k, r in current.items()}
        await self._announce(
            stored,
            _channels_of(current.values()),
            reply_subject or results_subject(stored.changeset_id),
            outbound_changes(envelope, stored, etags),
        )

    # ------------------------------------------------------------------ upstream batches

    async def apply_upstream(
        self,
        batch: UpstreamBatch,
        *,
        state: Mapping[str, bytes] | None = None,
        reply_subject: str | None = None,
    ) -> ChangesetResult:
        """Apply a batch from Dynamics or a file import once (idempotent by ``batch_id``).

        One ``get_many`` and one ``apply`` per batch, so thousands of records cost one
        transaction. No outbound messages: an upstream change is not written back.

        Args:
            batch: The batch.
            state: Durable state written in the same transaction (e.g. the importer's
                checkpoint, so it advances exactly when its records land).
            reply_subject: If given, the (slim) result is published there.

        Returns:
            The batch's result, stored under ``upstream:<batch_id>``.

        Raises:
            RetriesExhaustedError: Records kept changing under the merge.
        """
        result_id = upstream_result_id(batch.batch_id)
        stored = await self.store.changeset_result(result_id)
        if stored is not None:
            await self._replay_upstream(stored, reply_subject)
            return stored
        start = time.perf_counter()
        committed = await self._commit(
            result_id,
            touched_keys(batch.mutations),
            lambda current, now: plan_upstream(batch, current, self.rules, now, state),
        )
        if isinstance(committed, ChangesetResult):
            await self._replay_upstream(committed, reply_subject)
            return committed
        plan, _ = committed
        self.metrics.record_result("upstream", plan.result, time.perf_counter() - start)
        await self._announce(plan.result, plan.channels, reply_subject, [])
        return plan.result

    async def _replay_upstream(self, stored: ChangesetResult, reply_subject: str | None) -> None:
        self.metrics.record_replay("upstream")
        if self.broker is None:
            return
        current = await self.store.get_many(result_keys(stored.results))
        await self._announce(stored, _channels_of(current.values()), reply_subject, [])

    # ------------------------------------------------------------------ shared path

    async def _commit(
        self,
        result_id: str,
        keys: list[Key],
        make_plan: Callable[[Mapping[Key, Record], int], Plan],
    ) -> tuple[Plan, CommitResult] | ChangesetResult:
        """Read, plan and commit; on a version conflict read and plan again.

        Returns:
            The plan and its commit, or the stored result if another applier committed
            the same changeset meanwhile.
        """
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            current = await self.store.get_many(keys)
            plan = make_plan(current, self.now())
            try:
                commit = await self.store.apply(plan.batch)
            except VersionConflictError:
                self.metrics.record_retry()
                stored = await self.store.changeset_result(result_id)
                if stored is not None:
                    return stored
                # Jitter keeps two appliers fighting over one record from colliding again.
                await asyncio.sleep(random.uniform(0, _RETRY_BACKOFF_S * (attempt + 1)))
                continue
            if plan.result.seq == 0:
                plan.result.seq = commit.last_seq
            return plan, commit
        raise RetriesExhaustedError(result_id, attempts)

    async def _announce(
        self,
        result: ChangesetResult,
        channels: set[str],
        reply_subject: str | None,
        outbound: list[OutboundChange],
    ) -> None:
        """Publish the result, the channel pokes and the outbound changes (in that order)."""
        await self._announce_all([_Announcement(result, channels, reply_subject, outbound)])

    async def _announce_all(self, announcements: Sequence[_Announcement]) -> None:
        """Results first, then one poke per channel (at its newest sequence), then outbound.

        A group commit touching one channel many times pokes it once: a device pulls
        everything after its checkpoint anyway.
        """
        broker = self.broker
        if broker is None or not announcements:
            return
        newest: dict[str, int] = {}
        outbound: list[tuple[str, bytes]] = []
        for a in announcements:
            if a.reply_subject is not None:
                await broker.publish_core(a.reply_subject, encode(a.result))
            for channel in a.channels:
                if newest.get(channel, -1) < a.result.seq:
                    newest[channel] = a.result.seq
            outbound.extend(outbound_messages(a.result.changeset_id, a.outbound))
        if newest:
            committed_ms = self.now()
            for channel in sorted(newest):
                event = ChangeEvent(channel=channel, seq=newest[channel], committed_ms=committed_ms)
                await broker.publish_core(event_subject(channel), encode(event))
        if outbound:
            await self._publish_outbound(broker, outbound)

    async def _publish_outbound(self, broker: Broker, messages: list[tuple[str, bytes]]) -> None:
        """Store outbound batches in ``SYNC_OUTBOUND``, in order, each de-duplicated by its id.

        Waiting for a JetStream ack per message costs a round trip. All but the last
        message go out as plain publishes on the stream's subject (JetStream stores them
        and honours their ``Nats-Msg-Id`` just the same); the last one is published with
        an ack. One connection, one stream: the stream processes them in the order sent,
        so the ack of the last means the earlier ones were processed too. If it fails,
        the changesets are not acked, come back, and everything is published again
        (duplicates dropped).
        """
        *unacked, (last_id, last) = messages
        for msg_id, data in unacked:
            await broker.publish_core(OUTBOUND_BATCH_SUBJECT, data, headers={MSG_ID_HEADER: msg_id})
        await broker.publish(OUTBOUND_BATCH_SUBJECT, last, msg_id=last_id)


def outbound_messages(
    changeset_id: str, changes: list[OutboundChange], max_bytes: int = OUTBOUND_MAX_BYTES
) -> list[tuple[str, bytes]]:
    """A changeset's outbound changes as ``(msg_id, OutboundBatch bytes)`` messages.

    Usually one message; halves, recursively, while a message would exceed ``max_bytes``
    (the stream's message size limit, with room to spare). Deterministic, so a replay
    publishes the same ids and JetStream drops them as duplicates.
    """
    chunks: list[bytes] = []

    def split(part: list[OutboundChange]) -> None:
        data = encode(OutboundBatch(changes=part))
        if len(part) > 1 and len(data) > max_bytes:
            half = len(part) // 2
            split(part[:half])
            split(part[half:])
        else:
            chunks.append(data)

    if changes:
        split(changes)
    return [(f"{changeset_id}/out/{n}", data) for n, data in enumerate(chunks)]


@dataclass(frozen=True, slots=True)
class _Announcement:
    """What one committed changeset publishes."""

    result: ChangesetResult
    channels: set[str]
    reply_subject: str | None
    outbound: list[OutboundChange]


def _channels_of(records: Iterable[Record]) -> set[str]:
    out: set[str] = set()
    for record in records:
        out.update(record.channels)
    return out
