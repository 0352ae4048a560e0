"""Writeback: device-made changes to Dynamics, with optimistic concurrency.

The applier publishes an :class:`~backend.applier.messages.OutboundChange` for every
effective device mutation, a changeset's changes in one
:class:`~backend.applier.messages.OutboundBatch` on ``sync.outbound.changes`` (single
changes on ``sync.outbound.<entity>`` are still read); this module consumes them
(durable ``importer-writeback``) and writes them to Dynamics:

* **creates** are ``POST``\\ ed with the device's GUID as the primary key, so the record
  keeps its id everywhere;
* **updates** are ``PATCH``\\ ed with ``If-Match: <ETag>`` (the ETag the store knew, or the
  one our own last write produced); **deletes** are ``DELETE`` with ``If-Match``;
* on **412** the row is read again and the device's fields are merged field-wise against
  the new Dynamics values by the same :func:`sync_protocol.merge.merge` rules the applier
  uses (entity policy, device clocks from the store, the row's ``modifiedon`` clock for
  Dynamics); the fields the device wins are sent again with the new ETag, those Dynamics
  wins are dropped (the delta brings them to the store);
* several changes go out in one **$batch** (``continue-on-error``), at most one change per
  record per batch so a record's changes keep their order;
* **429/5xx** are retried (the client honours ``Retry-After`` and backs off); a change that
  still fails after ``writeback_attempts`` attempts, or that Dynamics rejects outright
  (400), goes to the **dead-letter list** (durable state) where admins can see and retry it;
* every successful write is remembered in the :class:`~importer.dynamics.echo.EchoRegistry`
  so its echo in the next delta is not published again, and marked done by ``change_id``
  so a redelivered message is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from backend.applier.messages import OutboundChange, decode_outbound
from backend.messaging.broker import Broker
from backend.messaging.messages import ConsumeStats, Delivery
from backend.messaging.subjects import OUTBOUND_STREAM
from backend.store.base import RecordStore
from sync_protocol.changesets import Mutation
from sync_protocol.hlc import HLC
from sync_protocol.merge import MergeContext, merge
from sync_protocol.policy import DEFAULT_POLICY, EntityPolicy
from sync_protocol.records import Record
from sync_protocol.rules import SyncRules

from ..config import ImporterConfig
from ..errors import (
    DeadLetterNotFoundError,
    DuplicateRecordError,
    DynamicsError,
    PreconditionFailedError,
    RecordNotFoundError,
    TransportError,
)
from ..publisher import UpstreamPublisher, content_digest
from ..state import (
    DEAD_LETTER_PREFIX,
    DONE_PREFIX,
    DeadLetter,
    StateStore,
    WritebackDone,
    dead_letter_key,
    done_key,
)
from .batch import BatchRequest, BatchResponse
from .client import DynamicsClient, Row, error_from_response, etag_of, json_encode
from .echo import DELETED, EchoRegistry
from .mapping import ETAG, EntityMap, row_clock

logger = logging.getLogger("crmsync.importer.writeback")

WRITEBACK_NODE = "writeback"
"""Clock node for device fields the store has no clock for (should not happen)."""

Status = Literal["written", "merged", "skipped", "gone", "dead_letter", "retry"]


def wall_ms() -> int:
    """Wall time in milliseconds."""
    return int(time.time() * 1000)


@dataclass(slots=True)
class Outcome:
    """What happened to one change.

    Attributes:
        change: The change.
        status: ``written`` (as sent), ``merged`` (after a 412, some fields may have lost),
            ``skipped`` (done before, or nothing of it lives in Dynamics), ``gone``
            (the row was deleted in Dynamics: the delete wins), ``dead_letter``, ``retry``
            (transient failure, will be tried again).
        etag: The row's ETag after the write.
        lost: Fields Dynamics' concurrent values won (not written).
        error: The last error, for failures.
    """

    change: OutboundChange
    status: Status
    etag: str | None = None
    lost: dict[str, Any] = field(default_factory=dict)
    error: DynamicsError | None = None


@dataclass(slots=True)
class WritebackStats:
    """Counters of one writeback worker."""

    written: int = 0
    merged: int = 0
    conflicts_lost_fields: int = 0
    skipped: int = 0
    gone: int = 0
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0


def merge_with_dynamics(
    entity: str,
    record_id: str,
    device_fields: Mapping[str, Any],
    device_clocks: Mapping[str, HLC],
    dynamics_fields: Mapping[str, Any],
    dynamics_clock: HLC,
    policy: EntityPolicy,
    now_ms: int,
    base: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge device values into a concurrently changed Dynamics row, field by field.

    A three-way merge: a field whose Dynamics value is still ``base`` (what the record held
    when the device changed it) was not touched in Dynamics, so the device value goes in.
    A field changed on both sides is a real conflict and is decided by
    :func:`sync_protocol.merge.merge` exactly as the applier would: the Dynamics row is the
    current record (its fields stamped with the row's ``modifiedon`` clock, an upstream
    clock), the device's values a concurrent device mutation under the entity's policy
    (``lww`` by clock, ``upstream_wins`` for Dynamics, ``manual`` keeps Dynamics' value).

    Without ``base`` nothing tells which columns the CRM touched (Dynamics keeps one
    ``modifiedon`` per row), and the device value goes in: deciding by the row's clock
    would let a CRM edit of one column override device edits of every other column.

    Args:
        entity: Entity name.
        record_id: The record.
        device_fields: The device's live values to write.
        device_clocks: Their clocks (from the store).
        dynamics_fields: The row's current values (our names).
        dynamics_clock: The row's clock.
        policy: The entity's conflict policy.
        now_ms: Server wall time.
        base: Values of the fields before the device changed them, when known.

    Returns:
        ``(to_write, lost)``: fields to send (the device won and the value differs) and
        fields Dynamics won (with the device's value, for the record).
    """
    differing = {k: v for k, v in device_fields.items() if dynamics_fields.get(k) != v}
    to_write: dict[str, Any] = {}
    conflicting: dict[str, Any] = {}
    for name, value in differing.items():
        if base is not None and name in base and dynamics_fields.get(name) != base[name]:
            conflicting[name] = value
        else:
            to_write[name] = value
    lost: dict[str, Any] = {}
    if not conflicting:
        return to_write, lost
    current = Record(
        entity=entity,
        id=record_id,
        version=1,
        fields={k: dynamics_fields.get(k) for k in conflicting},
        clocks={k: dynamics_clock for k in conflicting},
        field_versions={k: 1 for k in conflicting},
    )
    by_clock: dict[HLC, dict[str, Any]] = {}
    for name, value in conflicting.items():
        clock = device_clocks.get(name) or HLC(now_ms, 0, WRITEBACK_NODE)
        by_clock.setdefault(clock, {})[name] = value
    ctx = MergeContext(source="device", policy=policy, now_ms=now_ms, max_skew_ms=2**40)
    for clock, fields in sorted(by_clock.items()):
        m = Mutation(entity=entity, id=record_id, clock=clock, fields=fields)
        result = merge(current, m, ctx)
        if result.record is None:  # rejected (schema): keep Dynamics' values
            lost.update(fields)
            continue
        for name, value in fields.items():
            if result.result.field_outcomes.get(name) == "applied":
                to_write[name] = value
            else:
                lost[name] = value
    return to_write, lost


class Writeback:
    """Writes device changes to Dynamics (see the module docstring).

    Args:
        client: Web API client.
        state: Durable importer state (done markers, dead letters).
        store: Record store (device clocks, lookup targets).
        maps: Entity maps.
        echoes: Echo registry shared with the change tracker.
        rules: Sync rules (conflict policies).
        config: Importer settings.
        clock: Wall time in ms.
        sleep: Awaitable sleep (back-off between attempts).
        publisher: Publishes Dynamics values that won a conflict to the store.
    """

    def __init__(
        self,
        client: DynamicsClient,
        state: StateStore,
        store: RecordStore,
        maps: dict[str, EntityMap],
        echoes: EchoRegistry,
        rules: SyncRules,
        config: ImporterConfig,
        *,
        clock: Callable[[], int] = wall_ms,
        sleep: Callable[[float], Any] = asyncio.sleep,
        publisher: UpstreamPublisher | None = None,
    ) -> None:
        self.client = client
        self.publisher = publisher
        self.state = state
        self.store = store
        self.maps = maps
        self.echoes = echoes
        self.rules = rules
        self.config = config
        self.clock = clock
        self._sleep = sleep
        self.stats = WritebackStats()
        self.consume_stats = ConsumeStats()

    # ------------------------------------------------------------------ consuming

    async def run(self, broker: Broker, stop: asyncio.Event) -> ConsumeStats:
        """Consume ``sync.outbound.>`` until ``stop`` is set.

        Raises:
            MessagingError: The consumer loop failed.
        """
        return await broker.consume(
            OUTBOUND_STREAM,
            self.config.writeback_durable,
            self.handle,
            batch=self.config.writeback_fetch,
            fetch_wait=0.5,
            stop=stop,
            stats=self.consume_stats,
        )

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        """Consumer handler: write a batch of outbound changes; returns when each is settled
        (written, skipped, or dead-lettered)."""
        changes: list[OutboundChange] = []
        for d in deliveries:
            try:
                changes.extend(decode_outbound(d.data))
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                logger.error("undecodable outbound message %s seq %d", d.stream, d.stream_seq)
                placeholder = OutboundChange(
                    change_id=f"malformed:{d.stream}:{d.stream_seq}",
                    entity="",
                    id="",
                    op="upsert",
                )
                await self._dead_letter(placeholder, "importer.writeback.malformed", str(e), 1)
        if changes:
            await self.write(changes)

    # ------------------------------------------------------------------ writing

    async def write(self, changes: Sequence[OutboundChange]) -> list[Outcome]:
        """Write changes to Dynamics, retrying transient failures, dead-lettering the rest.

        Changes of one record are written in the given order.

        Returns:
            One outcome per change, in order.
        """
        outcomes: dict[str, Outcome] = {}
        todo: list[OutboundChange] = []
        for change in changes:
            if await self.state.get(done_key(change.change_id), WritebackDone) is not None:
                outcomes[change.change_id] = Outcome(change, "skipped")
                self.stats.skipped += 1
            else:
                todo.append(change)
        attempts: dict[str, int] = {}
        pending = todo
        while pending:
            blocked: set[tuple[str, str]] = set()
            wait_s = 0.0
            for round_ in _rounds(pending):
                # A change must not overtake an earlier change of its record that failed.
                ready = [c for c in round_ if (c.entity, c.id) not in blocked]
                settled: list[Outcome] = []
                step = self.config.writeback_batch
                for n in range(0, len(ready), step):
                    settled.extend(await self._write_round(ready[n : n + step]))
                for outcome in settled:
                    change = outcome.change
                    if outcome.status != "retry":
                        outcomes[change.change_id] = outcome
                        continue
                    n = attempts[change.change_id] = attempts.get(change.change_id, 0) + 1
                    err = outcome.error
                    if n >= self.config.writeback_attempts:
                        code = err.code if err is not None else "importer.writeback.failed"
                        text = err.message if err is not None else ""
                        await self._dead_letter(change, code, text, n)
                        outcome.status = "dead_letter"
                        outcomes[change.change_id] = outcome
                        continue
                    self.stats.retries += 1
                    blocked.add((change.entity, change.id))
                    wait_s = max(wait_s, self._retry_delay(err, n))
            pending = [c for c in pending if c.change_id not in outcomes]
            if pending:
                await self._sleep(wait_s)
        return [outcomes[c.change_id] for c in changes]

    def _retry_delay(self, error: DynamicsError | None, attempt: int) -> float:
        cap = self.config.backoff_max_s
        if error is not None and error.retry_after_s is not None:
            return min(error.retry_after_s, cap)
        return float(min(cap, self.config.backoff_base_s * 2**attempt)) * random.random()

    async def _write_round(self, changes: list[OutboundChange]) -> list[Outcome]:
        """One change per record: one request each, sent as a $batch when there are several."""
        prepared: list[tuple[OutboundChange, BatchRequest | None, dict[str, Any]]] = []
        targets = await self._lookup_targets(changes)
        for change in changes:
            request, sent = self._request(change, targets)
            prepared.append((change, request, sent))
        live = [(c, r, s) for c, r, s in prepared if r is not None]
        responses: dict[str, BatchResponse | DynamicsError] = {}
        if len(live) == 1:
            change, request, _ = live[0]
            assert request is not None
            responses[change.change_id] = await self._send_one(request)
        elif live:
            try:
                self.stats.batches += 1
                parts = await self.client.batch([r for _, r, _ in live if r is not None])
            except DynamicsError as e:
                parts_or_error: list[BatchResponse | DynamicsError]
                if e.retryable:
                    parts_or_error = [e] * len(live)
                else:
                    # The batch as a whole was refused: find out which change it was about.
                    logger.warning("$batch refused (%s): sending its parts one by one", e.code)
                    parts_or_error = [await self._send_one(r) for _, r, _ in live if r is not None]
            else:
                parts_or_error = list(parts)
            for (change, _, _), part in zip(live, parts_or_error, strict=True):
                responses[change.change_id] = part
        out: list[Outcome] = []
        for change, request, sent in prepared:
            if request is None:
                await self._mark_done(change, None)
                self.stats.skipped += 1
                out.append(Outcome(change, "skipped"))
                continue
            out.append(await self._settle(change, sent, responses[change.change_id], targets))
        return out

    async def _send_one(self, request: BatchRequest) -> BatchResponse | DynamicsError:
        """Send one request outside a batch (the client retries 429/5xx itself)."""
        try:
            resp = await self.client.request(
                request.method, request.url, headers=request.headers, content=request.body
            )
        except DynamicsError as e:
            return e
        return BatchResponse(
            resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content
        )

    # ------------------------------------------------------------------ requests

    def _request(
        self, change: OutboundChange, targets: Mapping[str, str]
    ) -> tuple[BatchRequest | None, dict[str, Any]]:
        """The request for a change, and the fields it sends (None: nothing to send)."""
        emap = self.maps.get(change.entity)
        if emap is None:
            return None, {}
        resolver = _resolver(targets)
        if change.op == "delete":
            headers = {}
            etag = self._if_match(change)
            if etag and etag != "*":
                headers["If-Match"] = etag
            return BatchRequest("DELETE", f"{emap.entity_set}({change.id})", headers), {}
        sent = emap.writable_fields(change.fields)
        select = f"?$select={emap.key},versionnumber"
        headers = {"Prefer": "return=representation", "Content-Type": "application/json"}
        if change.created:
            body = emap.to_body(sent, resolver, record_id=change.id)
            return (
                BatchRequest("POST", f"{emap.entity_set}{select}", headers, json_encode(body)),
                sent,
            )
        if not sent:
            return None, {}
        headers["If-Match"] = self._if_match(change) or "*"
        body = emap.to_body(sent, resolver)
        return (
            BatchRequest(
                "PATCH", f"{emap.entity_set}({change.id}){select}", headers, json_encode(body)
            ),
            sent,
        )

    def _if_match(self, change: OutboundChange) -> str | None:
        # Our own last write is newer than what the store knew until its echo arrives.
        echo = self.echoes.get(change.entity, change.id)
        if echo is not None and echo.etag != DELETED:
            return echo.etag
        return change.upstream_etag

    async def _lookup_targets(self, changes: Sequence[OutboundChange]) -> dict[str, str]:
        """Which table each polymorphic lookup GUID in ``changes`` belongs to (from the store)."""
        wanted: set[tuple[str, str]] = set()
        for change in changes:
            emap = self.maps.get(change.entity)
            if emap is None:
                continue
            for name, value in change.fields.items():
                col = emap.by_field.get(name)
                if col is not None and len(col.targets) > 1 and isinstance(value, str):
                    wanted.update((t, value) for t in col.targets)
        if not wanted:
            return {}
        found = await self.store.get_many(sorted(wanted))
        return {rid: entity for (entity, rid), rec in found.items() if not rec.deleted}

    # ------------------------------------------------------------------ responses

    async def _settle(
        self,
        change: OutboundChange,
        sent: dict[str, Any],
        response: BatchResponse | DynamicsError,
        targets: Mapping[str, str],
    ) -> Outcome:
        if isinstance(response, BatchResponse):
            if response.ok:
                etag = await self._etag_after(change, response)
                await self._written(change, etag, sent)
                self.stats.written += 1
                return Outcome(change, "written", etag=etag)
            error = error_from_response(response.status, response.body, response.headers)
        else:
            error = response
        if error.retryable:
            return Outcome(change, "retry", error=error)
        if isinstance(error, RecordNotFoundError) and change.id not in error.message.lower():
            # A record a lookup binds to is missing: its own create may still be on its way.
            return Outcome(change, "retry", error=error)
        if isinstance(error, RecordNotFoundError):
            # Deleted in Dynamics: an upstream delete beats any device change.
            await self._mark_done(change, None)
            self.stats.gone += 1
            return Outcome(change, "gone", error=error)
        if isinstance(error, (PreconditionFailedError, DuplicateRecordError)):
            try:
                return await self._resolve_conflict(change, targets)
            except DynamicsError as e:
                if e.retryable:
                    return Outcome(change, "retry", error=e)
                error = e
        await self._dead_letter(change, error.code, error.message, 1)
        return Outcome(change, "dead_letter", error=error)

    async def _etag_after(self, change: OutboundChange, response: BatchResponse) -> str | None:
        if change.op == "delete":
            return DELETED
        etag: str | None = None
        try:
            body = response.json()
        except DynamicsError:
            body = None
        if isinstance(body, dict):
            etag = etag_of(body)
        etag = etag or response.headers.get("etag")
        if etag is None:
            # No representation: read the version back, or the echo would look foreign.
            emap = self.maps[change.entity]
            row = await self.client.get_row(emap.entity_set, change.id, (emap.key,))
            etag = etag_of(row) if row is not None else None
        return etag

    async def _resolve_conflict(
        self, change: OutboundChange, targets: Mapping[str, str]
    ) -> Outcome:
        """412 (or a create that met an existing row): re-read, merge field-wise, retry."""
        emap = self.maps[change.entity]
        policy = self.rules.policies.get(change.entity, DEFAULT_POLICY)
        lost_all: dict[str, Any] = {}
        for _ in range(self.config.writeback_attempts):
            row = await self.client.get_row(emap.entity_set, change.id, emap.select)
            if row is None:
                if change.op == "delete":
                    await self._written(change, DELETED, {})
                    return Outcome(change, "written", etag=DELETED)
                if change.created:
                    raise TransportError("created row not readable yet")  # retry later
                await self._mark_done(change, None)
                self.stats.gone += 1
                return Outcome(change, "gone")
            etag = etag_of(row)
            ours = self.echoes.get(change.entity, change.id)
            own_version = ours is not None and etag is not None and ours.etag == etag
            if change.op == "delete":
                outcome = await self._retry_delete(change, row, etag, policy, own_version)
            else:
                outcome, lost = await self._retry_update(
                    change, emap, row, etag, policy, own_version, targets
                )
                lost_all.update(lost)
            if outcome is not None:
                outcome.lost = lost_all
                if lost_all:
                    self.stats.conflicts_lost_fields += len(lost_all)
                return outcome
        raise PreconditionFailedError("row kept changing during the merge", status=412)

    async def _retry_update(
        self,
        change: OutboundChange,
        emap: EntityMap,
        row: Row,
        etag: str | None,
        policy: EntityPolicy,
        own_version: bool,
        targets: Mapping[str, str],
    ) -> tuple[Outcome | None, dict[str, Any]]:
        device = emap.writable_fields(change.fields)
        dyn_fields = emap.to_fields(row)
        to_write: dict[str, Any]
        lost: dict[str, Any]
        clocks: Mapping[str, HLC] = {}
        if own_version:
            to_write, lost = device, {}  # the row is our own last write: nothing concurrent
        else:
            rec = await self.store.get(change.entity, change.id)
            clocks = rec.clocks if rec is not None else {}
            to_write, lost = merge_with_dynamics(
                change.entity,
                change.id,
                device,
                clocks,
                {k: dyn_fields.get(k) for k in device},
                row_clock(row, self.config.node),
                policy,
                self.clock(),
                base=getattr(change, "base", None),
            )
        if lost:
            await self._publish_lost(
                change, row, etag, {k: dyn_fields.get(k) for k in lost}, clocks
            )
        # Device values Dynamics already holds count as written: their echo re-stamps them.
        in_sync = {k: v for k, v in device.items() if dyn_fields.get(k) == v and k not in lost}
        if not to_write:
            if etag is not None and in_sync:
                await self.echoes.remember(change.entity, change.id, etag, in_sync)
            await self._mark_done(change, etag)
            self.stats.merged += 1
            return Outcome(change, "merged", etag=etag), lost
        headers = {"Prefer": "return=representation", "Content-Type": "application/json"}
        if etag:
            headers["If-Match"] = etag
        try:
            resp = await self.client.update(
                emap.entity_set,
                change.id,
                emap.to_body(to_write, _resolver(targets)),
                if_match=etag or "*",
                select=(emap.key, "versionnumber"),
            )
        except PreconditionFailedError:
            return None, lost  # changed again: read and merge once more
        new_etag = etag_of(resp) or await self._etag_after(change, BatchResponse(204, {}, b""))
        await self._written(change, new_etag, {**in_sync, **to_write})
        self.stats.merged += 1
        return Outcome(change, "merged", etag=new_etag), lost

    async def _publish_lost(
        self,
        change: OutboundChange,
        row: Row,
        etag: str | None,
        values: dict[str, Any],
        device_clocks: Mapping[str, HLC],
    ) -> None:
        """Hand the Dynamics values that won a conflict to the store, so both sides agree.

        The clock is lifted above the device clocks of those fields: the merge here
        decided that Dynamics wins them, and the store must not decide otherwise.
        """
        if self.publisher is None:
            return
        clock = row_clock(row, self.config.node)
        for name in values:
            above = device_clocks.get(name)
            if above is not None and above >= clock:
                clock = HLC(above.wall_ms + 1, 0, clock.node)
        m = Mutation(entity=change.entity, id=change.id, clock=clock, fields=values, etag=etag)
        batch_id = f"writeback:{change.change_id}:{content_digest(etag or '', *sorted(values))}"
        await self.publisher.publish(change.entity, [m], batch_id)

    async def _retry_delete(
        self,
        change: OutboundChange,
        row: Row,
        etag: str | None,
        policy: EntityPolicy,
        own_version: bool,
    ) -> Outcome | None:
        emap = self.maps[change.entity]
        if not own_version:
            rec = await self.store.get(change.entity, change.id)
            device_clock = (
                rec.deleted_clock
                if rec is not None and rec.deleted_clock is not None
                else HLC(self.clock(), 0, WRITEBACK_NODE)
            )
            dyn = emap.to_fields(row)
            current = Record(
                entity=change.entity,
                id=change.id,
                version=1,
                fields=dyn,
                clocks={k: row_clock(row, self.config.node) for k in dyn},
                field_versions={k: 1 for k in dyn},
            )
            ctx = MergeContext(
                source="device", policy=policy, now_ms=self.clock(), max_skew_ms=2**40
            )
            result = merge(
                current,
                Mutation(entity=change.entity, id=change.id, op="delete", clock=device_clock),
                ctx,
            )
            if not result.result.deleted:
                # The concurrent Dynamics update wins: the record comes back in the store.
                await self._publish_lost(change, row, etag, dyn, {k: device_clock for k in dyn})
                await self._mark_done(change, etag)
                self.stats.merged += 1
                return Outcome(change, "merged", etag=etag, lost={"$deleted": True})
        try:
            await self.client.delete(emap.entity_set, change.id, if_match=etag)
        except PreconditionFailedError:
            return None
        except RecordNotFoundError:
            pass
        await self._written(change, DELETED, {})
        self.stats.written += 1
        return Outcome(change, "written", etag=DELETED)

    # ------------------------------------------------------------------ bookkeeping

    async def _written(
        self, change: OutboundChange, etag: str | None, sent: Mapping[str, Any]
    ) -> None:
        if etag is not None:
            await self.echoes.remember(change.entity, change.id, etag, sent)
        await self._mark_done(change, etag)

    async def _mark_done(self, change: OutboundChange, etag: str | None) -> None:
        await self.state.put(
            done_key(change.change_id), WritebackDone(etag=etag, at_ms=self.clock())
        )
        # A change that succeeds on an admin's retry leaves the dead-letter list.
        if await self.state.store.get_state(dead_letter_key(change.change_id)) is not None:
            await self.state.put(dead_letter_key(change.change_id), None)

    async def _dead_letter(
        self, change: OutboundChange, code: str, message: str, attempts: int
    ) -> None:
        key = dead_letter_key(change.change_id)
        now = self.clock()
        old = await self.state.get(key, DeadLetter)
        letter = DeadLetter(
            change=change,
            code=code,
            message=message[:500],
            attempts=(old.attempts if old is not None else 0) + attempts,
            first_failed_ms=old.first_failed_ms if old is not None else now,
            last_failed_ms=now,
        )
        await self.state.put(key, letter)
        self.stats.dead_lettered += 1
        logger.warning("writeback of %s gave up: %s", change.change_id, code)

    # ------------------------------------------------------------------ admin

    async def dead_letters(self) -> list[DeadLetter]:
        """Every dead-lettered change, oldest failure first."""
        letters = await self.state.scan(DEAD_LETTER_PREFIX, DeadLetter)
        return sorted(letters.values(), key=lambda d: (d.first_failed_ms, d.change.change_id))

    async def retry_dead_letter(self, change_id: str) -> Outcome:
        """Write a dead-lettered change again; it leaves the list if that succeeds.

        Raises:
            DeadLetterNotFoundError: No dead letter with that id.
        """
        letter = await self.state.get(dead_letter_key(change_id), DeadLetter)
        if letter is None:
            raise DeadLetterNotFoundError(f"no dead letter {change_id[:80]!r}")
        await self.state.put(done_key(change_id), None)
        (outcome,) = await self.write([letter.change])
        return outcome

    async def prune_done(self, older_than_ms: int) -> int:
        """Forget done markers older than ``older_than_ms`` (no redelivery can need them once
        the outbound stream dropped their messages). Returns how many were removed."""
        removed = 0
        for key, done in (await self.state.scan(DONE_PREFIX, WritebackDone)).items():
            if done.at_ms < older_than_ms:
                await self.state.put(key, None)
                removed += 1
        return removed

    async def discard_dead_letter(self, change_id: str) -> None:
        """Drop a dead letter without writing it.

        Raises:
            DeadLetterNotFoundError: No dead letter with that id.
        """
        key = dead_letter_key(change_id)
        if await self.state.store.get_state(key) is None:
            raise DeadLetterNotFoundError(f"no dead letter {change_id[:80]!r}")
        await self.state.put(key, None)


def _rounds(changes: Sequence[OutboundChange]) -> list[list[OutboundChange]]:
    """Split changes into rounds holding at most one change per record, order kept."""
    rounds: list[list[OutboundChange]] = []
    depth: dict[tuple[str, str], int] = {}
    for change in changes:
        key = (change.entity, change.id)
        n = depth.get(key, 0)
        depth[key] = n + 1
        while len(rounds) <= n:
            rounds.append([])
        rounds[n].append(change)
    return rounds


def _resolver(targets: Mapping[str, str]) -> Callable[[str, str, tuple[str, ...]], str | None]:
    def resolve(name: str, value: str, candidates: tuple[str, ...]) -> str | None:
        hit = targets.get(value)
        return hit if hit in candidates else None

    return resolve


__all__ = ["ETAG", "Outcome", "Writeback", "WritebackStats", "merge_with_dynamics"]
