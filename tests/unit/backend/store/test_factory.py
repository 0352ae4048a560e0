"""create_store picks the adapter the config names."""

from __future__ import annotations

from pathlib import Path

from backend.store.config import StoreConfig
from backend.store.couchbase import CouchbaseRecordStore
from backend.store.factory import create_store
from backend.store.sqlite import SqliteRecordStore


def test_sqlite_is_the_default_adapter(tmp_path: Path) -> None:
    store = create_store(StoreConfig(sqlite_path=str(tmp_path / "x.db")))
    assert isinstance(store, SqliteRecordStore)
    assert not (tmp_path / "x.db").exists()  # nothing happens before start()


def test_couchbase_config_gives_the_couchbase_adapter() -> None:
    config = StoreConfig(
        backend="couchbase",
        couchbase_url="couchbase://127.0.0.1",
        couchbase_username="u",
        couchbase_password="p",
    )
    store = create_store(config, clock=lambda: 5)
    assert isinstance(store, CouchbaseRecordStore)
