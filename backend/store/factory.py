"""Build the configured record store."""

from __future__ import annotations

from collections.abc import Callable

from .base import RecordStore
from .config import StoreConfig
from .sqlite import SqliteRecordStore, wall_ms


def create_store(config: StoreConfig, clock: Callable[[], int] = wall_ms) -> RecordStore:
    """The adapter ``config.backend`` names, not yet started (call ``await store.start()``).

    Args:
        config: The store configuration.
        clock: Wall time in milliseconds, for retention stamps (tests inject their own).

    Returns:
        A :class:`SqliteRecordStore` or a ``CouchbaseRecordStore``.
    """
    if config.backend == "couchbase":
        # Imported here: the couchbase SDK is only loaded by deployments that use it.
        from .couchbase import CouchbaseRecordStore

        return CouchbaseRecordStore(config, clock=clock)
    return SqliteRecordStore(config, clock=clock)
