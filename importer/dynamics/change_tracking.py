"""Incremental sync: follow each entity's change-tracking delta link on a schedule.

A delta response lists created/updated rows (as ordinary rows) and then deletes
(``$deletedEntity`` entries with the id); it may be paged, and its last page carries the
next delta link. The new link is stored only after every page was published, so a crash
mid-delta repeats the delta (same batch ids: a no-op for what was already applied).

Rows are reduced to the columns Dynamics really changed (:mod:`importer.dynamics.row_diff`),
so a CRM edit of one column never overrides a device edit of another, and rows writeback
produced itself (:mod:`importer.dynamics.echo`) carry nothing but the new ETag and the
re-stamped columns. When Dynamics answers that the token expired ("Version stamp
associated with the client has expired"), the entity falls back to a new full load, then a
reconcile with repair removes records deleted in Dynamics while we were not looking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from backend.store.base import RecordStore
from sync_protocol.changesets import Mutation

from ..errors import DeltaTokenExpiredError, MappingError
from ..publisher import UpstreamPublisher, content_digest, wait_applied
from ..state import EntitySync, StateStore, sync_key
from .client import DynamicsClient, Row
from .echo import DELETED, EchoRegistry
from .full_load import FullLoader, LoadStats, wall_ms
from .row_diff import RowDiffer

logger = logging.getLogger("crmsync.importer.change_tracking")

Reconcile = Callable[[str], Awaitable[object]]
"""Reconcile one entity with repair (called after a fallback full load)."""


def is_deleted_entry(row: Row) -> bool:
    """True for a ``$deletedEntity`` entry of a delta response."""
    context = row.get("@odata.context")
    if isinstance(context, str) and context.endswith("$deletedEntity"):
        return True
    return row.get("reason") == "deleted" and "id" in row


class ChangeTracker:
    """Runs delta syncs.

    Args:
        loader: The full loader (first load, and the fallback on token expiry).
        echoes: Writeback's record of its own writes.
        store: The record store (to see what an echo adds on top of what we hold).
        reconcile: Called with an entity after a fallback full load has been applied.
        apply_timeout_s: How long to wait for a fallback load to be applied before
            reconciling.
    """

    def __init__(
        self,
        loader: FullLoader,
        echoes: EchoRegistry,
        store: RecordStore,
        *,
        reconcile: Reconcile | None = None,
        apply_timeout_s: float = 600.0,
    ) -> None:
        self.loader = loader
        self.client: DynamicsClient = loader.client
        self.publisher: UpstreamPublisher = loader.publisher
        self.state: StateStore = loader.state
        self.maps = loader.maps
        self.config = loader.config
        self.echoes = echoes
        self.store = store
        self.reconcile = reconcile
        self.apply_timeout_s = apply_timeout_s
        self.differ = loader.differ or RowDiffer(store, echoes)
        self.fallbacks = 0

    async def sync(self, entities: Sequence[str] | None = None) -> dict[str, LoadStats]:
        """One delta sync of every entity (a few at a time).

        Raises:
            DynamicsError: Dynamics failed beyond the client's retries.
            PublishError: NATS refused the batches.
        """
        names = list(entities or self.config.entities)
        slots = asyncio.Semaphore(self.config.parallel_entities)

        async def one(name: str) -> LoadStats:
            async with slots:
                return await self.sync_entity(name)

        # Every entity runs to its end before a failure is raised: no task is left behind
        # still writing the state of an entity the next round starts again.
        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return {s.entity: s for s in results if isinstance(s, LoadStats)}

    async def run(self, stop: asyncio.Event) -> None:
        """Sync every ``delta_interval_s`` until ``stop`` is set (errors are logged, retried)."""
        while not stop.is_set():
            try:
                await self.sync()
            except Exception as e:  # keep the schedule alive; the next round retries
                logger.error("delta sync failed: %s", getattr(e, "code", type(e).__name__))
            try:
                await asyncio.wait_for(stop.wait(), self.config.delta_interval_s)
            except TimeoutError:
                continue

    async def sync_entity(self, entity: str) -> LoadStats:
        """Bring one entity up to date: finish its full load first, then follow its delta.

        Returns:
            What was published.
        """
        key = sync_key(entity)
        st = await self.state.get(key, EntitySync)
        if st is None or st.phase == "full":
            return await self.loader.load_entity(entity)
        if st.delta_link is None:
            # Change tracking is off for this table: all we can do is load again.
            return await self._fallback(entity, "no delta link")
        try:
            return await self._delta(entity, st)
        except DeltaTokenExpiredError:
            return await self._fallback(entity, "delta token expired")

    async def _fallback(self, entity: str, why: str) -> LoadStats:
        logger.warning("%s: %s, falling back to a full load and reconcile", entity, why)
        self.fallbacks += 1
        stats = await self.loader.load_entity(entity, restart=True)
        if self.reconcile is not None:
            applied = await wait_applied(
                self.store, stats.batch_ids, timeout_s=self.apply_timeout_s
            )
            if not applied:
                logger.warning("%s: reload not applied in time; reconcile skipped", entity)
            else:
                await self.reconcile(entity)
        return stats

    async def _delta(self, entity: str, st: EntitySync) -> LoadStats:
        stats = LoadStats(entity=entity)
        delta_url = st.delta_link
        assert delta_url is not None
        token_id = content_digest(delta_url)
        url: str | None = delta_url
        page_no = 0
        new_link: str | None = None
        while url is not None:
            page = await self.client.get_page(url, track_changes=True)
            # The id depends on the rows as Dynamics sent them, not on what the store holds.
            key = self.maps[entity].key
            digest = content_digest(
                url, *(f"{r.get(key) or r.get('id')}{r.get('@odata.etag')}" for r in page.value)
            )
            mutations = await self._page_mutations(entity, page.value, stats)
            batch_id = f"dynamics:{entity}:delta:{token_id}:p{page_no}:{digest}"
            stats.batch_ids.extend(await self.publisher.publish(entity, mutations, batch_id))
            stats.pages += 1
            page_no += 1
            url = page.next_link
            new_link = page.delta_link or new_link
        if new_link is not None:
            st.delta_link = new_link
        st.updated_ms = self.loader.clock()
        st.pages += stats.pages
        st.records += stats.records + stats.deletes
        await self.state.put(sync_key(entity), st)
        return stats

    async def _page_mutations(
        self, entity: str, rows: Sequence[Row], stats: LoadStats
    ) -> list[Mutation]:
        emap = self.maps[entity]
        now = self.loader.clock()
        deletes: list[Mutation] = []
        upserts: list[Mutation] = []
        for row in rows:
            if is_deleted_entry(row):
                record_id = str(row.get("id", "")).lower()
                if not record_id:
                    stats.skipped_rows += 1
                    continue
                if self.echoes.match(entity, record_id, DELETED) is not None:
                    await self.echoes.seen(entity, record_id)
                    stats.echoes += 1
                    continue
                deletes.append(emap.delete_mutation(record_id, now))
                stats.deletes += 1
                continue
            try:
                upserts.append(emap.to_mutation(row))
            except MappingError as e:
                stats.skipped_rows += 1
                logger.warning("skipping a %s delta row: %s", entity, e.code)
        before = self.differ.echoes_seen
        reduced = await self.differ.reduce(entity, upserts)
        stats.echoes += self.differ.echoes_seen - before
        stats.records += len(reduced)
        return [*reduced, *deletes]


__all__ = ["ChangeTracker", "is_deleted_entry", "wall_ms"]
