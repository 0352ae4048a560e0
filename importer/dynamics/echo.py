"""Recognising our own writes when Dynamics reports them back (no ping-pong).

Writeback records every row version it produces (the row's ETag after the write, and the
values it sent). When the next delta carries a row with exactly that ETag, the change is
ours: the store already holds those values (they came from a device), so the change
tracker publishes only what Dynamics added on top (its new ETag, columns it computed such
as ``fullname``) and never the written values again, which would re-stamp them with the
Dynamics clock and could override a newer device edit. A delete writeback is remembered
with the :data:`DELETED` marker and its ``$deletedEntity`` is dropped entirely.

Entries live in memory and in the store's durable state (they survive a restart between
the write and the delta); an entry is dropped once its echo was seen, or after
``ttl_ms``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..state import ECHO_PREFIX, Echo, StateStore, echo_key

DELETED = "$deleted"
"""ETag marker of a row writeback deleted."""

_DAY_MS = 86_400_000


def _wall_ms() -> int:
    return int(time.time() * 1000)


class EchoRegistry:
    """What writeback wrote, by ``(entity, id)``.

    Args:
        state: Durable state.
        ttl_ms: Forget entries older than this (their echo was missed or superseded).
        clock: Wall time in ms.
    """

    def __init__(
        self,
        state: StateStore,
        *,
        ttl_ms: int = 7 * _DAY_MS,
        clock: Callable[[], int] = _wall_ms,
    ) -> None:
        self.state = state
        self.ttl_ms = ttl_ms
        self.clock = clock
        self._entries: dict[tuple[str, str], Echo] = {}
        self.matched = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self) -> int:
        """Load the durable entries (dropping expired ones); returns how many were kept."""
        cutoff = self.clock() - self.ttl_ms
        for key, echo in (await self.state.scan(ECHO_PREFIX, Echo)).items():
            entity, _, record_id = key[len(ECHO_PREFIX) :].partition(":")
            if echo.at_ms < cutoff:
                await self.state.put(key, None)
                continue
            self._entries[(entity, record_id)] = echo
        return len(self._entries)

    async def remember(
        self, entity: str, record_id: str, etag: str, fields: Mapping[str, Any]
    ) -> None:
        """Record a row version writeback produced (``etag`` :data:`DELETED` for a delete)."""
        echo = Echo(etag=etag, fields=dict(fields), at_ms=self.clock())
        self._entries[(entity, record_id)] = echo
        await self.state.put(echo_key(entity, record_id), echo)

    async def fetch(self, entity: str, record_id: str) -> Echo | None:
        """The latest write to a row, also if another process (a writeback worker) made it."""
        echo = self._entries.get((entity, record_id))
        if echo is None:
            echo = await self.state.get(echo_key(entity, record_id), Echo)
            if echo is not None:
                self._entries[(entity, record_id)] = echo
        return echo

    def get(self, entity: str, record_id: str) -> Echo | None:
        """The latest write to a row, if remembered."""
        return self._entries.get((entity, record_id))

    def match(self, entity: str, record_id: str, etag: str | None) -> Echo | None:
        """The entry if the row version ``etag`` is our own write, else ``None``."""
        echo = self._entries.get((entity, record_id))
        if echo is None or etag is None or echo.etag != etag:
            return None
        return echo

    async def seen(self, entity: str, record_id: str) -> None:
        """Drop an entry whose echo arrived."""
        if self._entries.pop((entity, record_id), None) is not None:
            self.matched += 1
            await self.state.put(echo_key(entity, record_id), None)
