"""Full load of the synced entities from Dynamics, page by page, resumable after a crash.

The full load is the initial change-tracking query (``Prefer: odata.track-changes``): it
pages through every row and its last page carries the ``@odata.deltaLink`` that the
incremental sync (:mod:`importer.dynamics.change_tracking`) follows afterwards, so nothing
changed during the load is missed.

Per entity, pages are fetched one ahead of the page being published (the nextLink chain
is sequential by nature); entities load in parallel (``parallel_entities``), and the
client bounds the requests in flight (``max_parallel`` and ``x-ms-dop-hint``).

**Checkpoints.** After a page's upstream batches are acknowledged by JetStream (stored
durably: the applier will apply them even if we die now), the URL of the *next* page is
stored as the entity's checkpoint. A process killed at any point resumes from the last
checkpoint, so:

* no gap: every page before the checkpoint is in the stream;
* no duplicate: a page published again after a crash gets the same batch id (entity, run,
  page number, and a digest of the page URL and body), which JetStream drops inside its duplicate
  window and the applier replays from its stored result after it. If a row changed in
  between, the id differs and the newer row version is applied: the merge is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..config import ImporterConfig
from ..errors import BadRequestError
from ..publisher import UpstreamPublisher, content_digest
from ..state import EntitySync, StateStore, sync_key
from .client import DynamicsClient
from .entity_maps import EntityMaps
from .mapping import TypedPage
from .row_diff import RowDiffer

logger = logging.getLogger("crmsync.importer.full_load")

_MISSING_PROPERTY = "could not find a property named '"


def wall_ms() -> int:
    """Wall time in milliseconds."""
    return int(time.time() * 1000)


@dataclass(slots=True)
class LoadStats:
    """What a full load (or a delta sync) of one entity did.

    Attributes:
        entity: The entity.
        pages: Pages published in this run.
        records: Upserts published in this run.
        deletes: Deletes published (deltas only).
        echoes: Rows recognised as our own writeback (deltas only).
        skipped_rows: Rows that could not be mapped (no key, no modifiedon).
        resumed: The run continued an interrupted full load.
        already_loaded: Nothing to do: the entity was fully loaded before.
        batch_ids: The upstream batch ids published.
        seconds: Wall time of the run.
    """

    entity: str
    pages: int = 0
    records: int = 0
    deletes: int = 0
    echoes: int = 0
    skipped_rows: int = 0
    resumed: bool = False
    already_loaded: bool = False
    batch_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0


def missing_property(error: BadRequestError) -> str | None:
    """The column named by a "Could not find a property named 'x'" error, if that is it."""
    text = error.message.lower()
    idx = text.find(_MISSING_PROPERTY)
    if idx < 0:
        return None
    start = idx + len(_MISSING_PROPERTY)
    end = text.find("'", start)
    return error.message[start:end] if end > start else None


class FullLoader:
    """Loads entities from Dynamics into the store, through the applier.

    Args:
        client: Web API client.
        publisher: Publishes upstream batches.
        state: Durable importer state (checkpoints).
        maps: Entity maps by entity name (a map may be replaced when the organisation
            turns out to lack a column).
        config: Importer settings.
        clock: Wall time in ms (injected for tests).
        differ: Reduces rows to what the store lacks on a *re*-load (after a delta token
            expired); the first load publishes whole rows (the store has none of them).
    """

    def __init__(
        self,
        client: DynamicsClient,
        publisher: UpstreamPublisher,
        state: StateStore,
        maps: EntityMaps,
        config: ImporterConfig,
        *,
        clock: Callable[[], int] = wall_ms,
        differ: RowDiffer | None = None,
    ) -> None:
        self.client = client
        self.differ = differ
        self.publisher = publisher
        self.state = state
        self.maps = maps
        self.config = config
        self.clock = clock

    async def load(
        self, entities: Sequence[str] | None = None, *, restart: bool = False
    ) -> dict[str, LoadStats]:
        """Load ``entities`` (default: all configured), a few at a time.

        Args:
            entities: Which entities.
            restart: Start over even if a load finished or is half done.

        Returns:
            Per-entity statistics.

        Raises:
            DynamicsError: Dynamics failed beyond the client's retries.
            PublishError: NATS refused the batches.
        """
        names = list(entities or self.config.entities)
        slots = asyncio.Semaphore(self.config.parallel_entities)

        async def one(name: str) -> LoadStats:
            async with slots:
                return await self.load_entity(name, restart=restart)

        # Every entity runs to its end before a failure is raised: no task is left behind
        # still writing the state of an entity the next round starts again.
        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return {s.entity: s for s in results if isinstance(s, LoadStats)}

    async def load_entity(self, entity: str, *, restart: bool = False) -> LoadStats:
        """Load one entity, resuming an interrupted load unless ``restart``.

        Returns:
            What was published in this run.
        """
        started = time.perf_counter()
        stats = LoadStats(entity=entity)
        key = sync_key(entity)
        st = await self.state.get(key, EntitySync)
        if st is not None and st.phase == "delta" and not restart:
            stats.already_loaded = True
            return stats
        if st is None or restart or st.phase != "full":
            previous_loads = st.full_loads if st is not None else 0
            st = EntitySync(
                phase="full",
                run_id=uuid.uuid4().hex[:12],
                started_ms=self.clock(),
                full_loads=previous_loads,
            )
            await self.state.put(key, st)
        else:
            stats.resumed = st.next_url is not None
        await self._run(entity, st, stats)
        stats.seconds = time.perf_counter() - started
        logger.info(
            "full load of %s: %d records in %d pages, %.1fs",
            entity,
            stats.records,
            stats.pages,
            stats.seconds,
        )
        return stats

    async def _fetch(self, entity: str, url: str, *, first_load: bool = False) -> TypedPage:
        raw = await self.client.get_page_bytes(url, track_changes=True)
        page = self.maps[entity].decode_page(raw, drop_nulls=first_load)
        page.digest = content_digest(url, raw)
        return page

    async def _fetch_first(self, entity: str, *, first_load: bool) -> tuple[str, TypedPage]:
        """The first page, dropping ``$select`` columns this organisation does not have."""
        while True:
            emap = self.maps[entity]
            url = self.client.query_url(emap.entity_set, emap.select)
            try:
                return url, await self._fetch(entity, url, first_load=first_load)
            except BadRequestError as e:
                column = missing_property(e)
                if column is None or column not in emap.select or column == emap.key:
                    raise
                await self.maps.drop_column(entity, column)

    async def _run(self, entity: str, st: EntitySync, stats: LoadStats) -> None:
        key = sync_key(entity)
        reload = st.full_loads > 0
        queue: asyncio.Queue[TypedPage | None] = asyncio.Queue(maxsize=2)

        async def fetch() -> None:
            # Pages are fetched and decoded one ahead of the page being published.
            url: str | None = st.next_url
            first = not reload
            if url is None:
                url, page = await self._fetch_first(entity, first_load=first)
            else:
                page = await self._fetch(entity, url, first_load=first)
            while True:
                await queue.put(page)
                if page.next_link is None:
                    break
                url = page.next_link
                page = await self._fetch(entity, url, first_load=first)
            await queue.put(None)

        fetcher = asyncio.create_task(fetch())
        try:
            while True:
                get = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({get, fetcher}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    fetcher.result()  # re-raise the fetch failure
                    continue
                page = get.result()
                if page is None:
                    break
                stats.skipped_rows += page.skipped
                mutations = page.mutations
                batch_id = f"dynamics:{entity}:{st.run_id}:p{st.pages}:{page.digest}"
                if reload and self.differ is not None:
                    mutations = await self.differ.reduce(entity, mutations)
                ids = await self.publisher.publish(entity, mutations, batch_id)
                stats.batch_ids.extend(ids)
                stats.pages += 1
                stats.records += len(mutations)
                st.pages += 1
                st.records += len(mutations)
                st.updated_ms = self.clock()
                if page.next_link is not None:
                    st.next_url = page.next_link
                else:
                    st.phase = "delta"
                    st.next_url = None
                    st.delta_link = page.delta_link
                    st.full_loads += 1
                    if page.delta_link is None:
                        logger.warning(
                            "no delta link for %s: is change tracking enabled on the table?",
                            entity,
                        )
                await self.state.put(key, st)
        finally:
            if not fetcher.done():
                fetcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetcher
