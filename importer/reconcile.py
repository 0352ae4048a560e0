"""Reconciliation: compare Dynamics with the store, per entity, and optionally repair.

For every Dynamics row the store record with the same id is fetched (one ``get_many`` per
page) and compared by a *version hash*: a 64-bit hash of the fields Dynamics owns (the
mapped columns and the derived territory/country), computed the same way on both sides.

* **missing**: in Dynamics, not in the store (or only as a tombstone);
* **extra**: live in the store, not in Dynamics;
* **divergent**: in both with different hashes (the differing field names are kept).

A device edit still waiting for writeback also shows as divergent: reconcile reports what
is, it cannot know intent. ``repair`` makes the store equal Dynamics through the applier
like any upstream change: missing and divergent records are published with Dynamics'
values under a clock no older than now (so they win over older device values), extras
are deleted upstream.

The store side needs every live record of an entity. A store that offers
``scan_entity(entity, after_id, limit)`` (see :class:`EntityScanner`) is read directly;
otherwise the records are found through their channels (owners, territories and
countries seen in Dynamics), which misses store records in none of those channels.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import msgspec

from backend.store.base import RecordStore
from sync_protocol.changesets import Mutation
from sync_protocol.hlc import HLC
from sync_protocol.records import Record
from sync_protocol.rules import SyncRules

from .dynamics.client import DynamicsClient
from .dynamics.entity_maps import EntityMaps
from .dynamics.full_load import missing_property
from .dynamics.mapping import row_clock
from .errors import BadRequestError, MappingError
from .publisher import UpstreamPublisher, content_digest

logger = logging.getLogger("crmsync.importer.reconcile")

_encode_sorted = msgspec.msgpack.Encoder(order="sorted").encode
_SCAN_PAGE = 2000
_SAMPLE = 50


@runtime_checkable
class EntityScanner(Protocol):
    """A store that can list the records of one entity in id order."""

    async def scan_entity(self, entity: str, after_id: str | None, limit: int) -> list[Record]:
        """Records of ``entity`` (tombstones included) with ``id > after_id``, by id."""
        ...


def version_hash(fields: Mapping[str, Any], names: Iterable[str]) -> int:
    """64-bit hash of the values of ``names`` in ``fields`` (absent counts as ``None``)."""
    subset = {n: _canonical(fields.get(n)) for n in names}
    digest = hashlib.blake2b(_encode_sorted(subset), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _canonical(value: Any) -> Any:
    # 5 and 5.0 are the same money amount.
    if type(value) is int:
        return float(value)
    return value


@dataclass(slots=True)
class EntityReport:
    """Reconciliation result of one entity.

    Attributes:
        entity: The entity.
        dynamics_count: Rows in Dynamics.
        store_count: Live records in the store.
        missing: Ids in Dynamics but not live in the store.
        extra: Ids live in the store but not in Dynamics.
        divergent: Id -> field names whose values differ.
        repaired: Records sent to the applier to fix the differences.
        repair_batch_ids: The batches of the repair.
        seconds: Wall time.
    """

    entity: str
    dynamics_count: int = 0
    store_count: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    divergent: dict[str, list[str]] = field(default_factory=dict)
    repaired: int = 0
    repair_batch_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def differences(self) -> int:
        """Missing + extra + divergent records."""
        return len(self.missing) + len(self.extra) + len(self.divergent)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (ids sampled)."""
        return {
            "entity": self.entity,
            "dynamics": self.dynamics_count,
            "store": self.store_count,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "divergent": len(self.divergent),
            "repaired": self.repaired,
            "sample_missing": self.missing[:_SAMPLE],
            "sample_extra": self.extra[:_SAMPLE],
            "sample_divergent": dict(list(self.divergent.items())[:_SAMPLE]),
        }


def wall_ms() -> int:
    """Wall time in milliseconds."""
    return int(time.time() * 1000)


class Reconciler:
    """Compares Dynamics and the store (see the module docstring).

    Args:
        client: Web API client.
        store: The record store.
        publisher: Publishes repairs (source ``dynamics``).
        maps: Entity maps (shared with the loader).
        rules: Sync rules (channels, for stores without ``scan_entity``).
        clock: Wall time in ms.
    """

    def __init__(
        self,
        client: DynamicsClient,
        store: RecordStore,
        publisher: UpstreamPublisher,
        maps: EntityMaps,
        rules: SyncRules,
        *,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.client = client
        self.store = store
        self.publisher = publisher
        self.maps = maps
        self.rules = rules
        self.clock = clock

    async def reconcile_all(
        self, entities: Sequence[str], *, repair: bool = False
    ) -> dict[str, EntityReport]:
        """Reconcile several entities, one after the other."""
        return {e: await self.reconcile(e, repair=repair) for e in entities}

    async def reconcile(self, entity: str, *, repair: bool = False) -> EntityReport:
        """Compare one entity; with ``repair`` publish the fixes to the applier.

        Raises:
            DynamicsError: Reading Dynamics failed.
            PublishError: The repair could not be published.
        """
        started = time.perf_counter()
        report = EntityReport(entity=entity)
        emap = self.maps[entity]
        names = emap.fields
        seen: set[str] = set()
        channels = _ChannelCover()
        fixes: list[Mutation] = []
        now = self.clock()
        async for rows in self._dynamics_pages(entity):
            emap = self.maps[entity]
            mutations: list[Mutation] = []
            for row in rows:
                try:
                    mutations.append(emap.to_mutation(row))
                except MappingError:
                    continue
            stored = await self.store.get_many([(entity, m.id) for m in mutations])
            for m in mutations:
                report.dynamics_count += 1
                seen.add(m.id)
                channels.add(self.rules.channels_for(entity, m.fields))
                rec = stored.get((entity, m.id))
                if rec is None or rec.deleted:
                    report.missing.append(m.id)
                elif version_hash(rec.fields, names) != version_hash(m.fields, names):
                    report.divergent[m.id] = [
                        n
                        for n in names
                        if _canonical(rec.fields.get(n)) != _canonical(m.fields.get(n))
                    ]
                else:
                    continue
                if repair:
                    fixes.append(_winning(m, now))
        async for rec in self._store_records(entity, channels.cover()):
            report.store_count += 1
            if rec.id not in seen:
                report.extra.append(rec.id)
                if repair:
                    fixes.append(emap.delete_mutation(rec.id, now))
        if repair and fixes:
            batch_id = f"dynamics:{entity}:repair:{now}:{content_digest(*(m.id for m in fixes))}"
            step = 5000
            for n in range(0, len(fixes), step):
                report.repair_batch_ids.extend(
                    await self.publisher.publish(entity, fixes[n : n + step], f"{batch_id}:{n}")
                )
            report.repaired = len(fixes)
        report.seconds = time.perf_counter() - started
        logger.info(
            "reconcile %s: %d in Dynamics, %d in store, %d missing, %d extra, %d divergent",
            entity,
            report.dynamics_count,
            report.store_count,
            len(report.missing),
            len(report.extra),
            len(report.divergent),
        )
        return report

    async def _dynamics_pages(self, entity: str) -> Any:
        """Every row of the entity, page by page (no change tracking: a plain read)."""
        url: str | None = None
        while True:
            emap = self.maps[entity]
            first = self.client.query_url(emap.entity_set, emap.select)
            try:
                page = await self.client.get_page(url or first)
            except BadRequestError as e:
                column = missing_property(e)
                if url is not None or column is None or column not in emap.select:
                    raise
                await self.maps.drop_column(entity, column)
                continue
            yield page.value
            url = page.next_link
            if url is None:
                return

    async def _store_records(self, entity: str, channels: set[str]) -> Any:
        """Every live store record of the entity."""
        if isinstance(self.store, EntityScanner):
            after: str | None = None
            while True:
                batch = await self.store.scan_entity(entity, after, _SCAN_PAGE)
                for rec in batch:
                    if not rec.deleted:
                        yield rec
                if len(batch) < _SCAN_PAGE:
                    return
                after = batch[-1].id
        if not channels:
            return
        after_seq = 0
        while True:
            batch = await self.store.scan(sorted(channels), after_seq, _SCAN_PAGE)
            for rec in batch:
                if rec.entity == entity:
                    yield rec
            if len(batch) < _SCAN_PAGE:
                return
            after_seq = batch[-1].seq


class _ChannelCover:
    """The fewest channels that hold every Dynamics row of an entity, by channel kind.

    Scanning the store by channel costs one query per channel per page, so rather than
    every owner, territory and country seen, the scan uses the kind of channel (the text
    before ``:``) that every row has and that has the fewest distinct values (with the
    default rules: the five countries).
    """

    def __init__(self) -> None:
        self.rows = 0
        self.by_kind: dict[str, set[str]] = {}
        self.rows_with: dict[str, int] = {}

    def add(self, channels: Sequence[str]) -> None:
        self.rows += 1
        kinds: set[str] = set()
        for channel in channels:
            kind = channel.split(":", 1)[0]
            self.by_kind.setdefault(kind, set()).add(channel)
            kinds.add(kind)
        for kind in kinds:
            self.rows_with[kind] = self.rows_with.get(kind, 0) + 1

    def cover(self) -> set[str]:
        complete = [k for k, n in self.rows_with.items() if n == self.rows]
        if complete:
            best = min(complete, key=lambda k: len(self.by_kind[k]))
            return set(self.by_kind[best])
        out: set[str] = set()
        for channels in self.by_kind.values():
            out |= channels
        return out


def _winning(m: Mutation, now_ms: int) -> Mutation:
    """``m`` with a clock no older than now, so the repair beats older device values."""
    clock = max(m.clock, HLC(now_ms, m.clock.counter, m.clock.node))
    return Mutation(entity=m.entity, id=m.id, clock=clock, fields=m.fields, etag=m.etag)


__all__ = ["EntityReport", "EntityScanner", "Reconciler", "row_clock", "version_hash"]
