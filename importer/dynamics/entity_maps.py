"""The entity maps of one importer, and what they learnt about the organisation's columns.

Our schema may name columns a Dynamics organisation does not have (a field that is
device-only data there). The first query that selects such a column fails with "Could not
find a property named 'x'"; the loader then drops the column, and :class:`EntityMaps`
remembers it in durable state so every later process (writeback included) leaves it out
from the start.
"""

from __future__ import annotations

import logging

from ..state import COLUMNS_PREFIX, MissingColumns, StateStore, columns_key
from .mapping import EntityMap, ScopeResolver, entity_maps

logger = logging.getLogger("crmsync.importer.maps")


class EntityMaps(dict[str, EntityMap]):
    """Entity name -> :class:`EntityMap`, with the organisation's missing columns applied.

    Args:
        node: Clock node of upstream rows.
        scope: Territory/country resolver shared by every map.
        state: Durable state (``None``: nothing is remembered, for tests).
    """

    def __init__(
        self, node: str, scope: ScopeResolver | None = None, state: StateStore | None = None
    ) -> None:
        super().__init__(entity_maps(node, scope))
        self.node = node
        self.scope = scope
        self.state = state

    async def load(self) -> None:
        """Apply the missing columns remembered by earlier runs."""
        if self.state is None:
            return
        for key, missing in (await self.state.scan(COLUMNS_PREFIX, MissingColumns)).items():
            entity = key[len(COLUMNS_PREFIX) :]
            if entity in self:
                self[entity] = EntityMap(entity, self.node, self.scope, frozenset(missing.columns))

    async def drop_column(self, entity: str, column: str) -> EntityMap:
        """Leave ``column`` out of ``entity`` from now on (and in later runs).

        Returns:
            The new map.
        """
        emap = self[entity].without(column)
        self[entity] = emap
        logger.warning("Dynamics has no column %s.%s: left out", entity, column)
        if self.state is not None:
            await self.state.put(columns_key(entity), MissingColumns(columns=sorted(emap.missing)))
        return emap
