"""SQLite adapter specifics: WAL, versioned migrations, readers beside a writer, closing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backend.store.config import StoreConfig
from backend.store.errors import StoreUnavailableError
from backend.store.sqlite import SCHEMA_VERSION, SqliteRecordStore
from backend.store.types import RecordWrite, WriteBatch
from sync_protocol.hlc import HLC
from sync_protocol.records import Record


def record(id: str) -> Record:
    return Record(entity="account", id=id, version=1, fields={"name": id}, channels=["c:a"])


async def test_start_creates_a_wal_database_at_the_current_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "store.db"
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(path)))
    await store.start()
    try:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    finally:
        await store.close()


async def test_reopening_keeps_the_data_and_runs_no_migration_twice(tmp_path: Path) -> None:
    config = StoreConfig(sqlite_path=str(tmp_path / "store.db"))
    first = SqliteRecordStore(config)
    await first.start()
    await first.apply(WriteBatch(writes=[RecordWrite(record=record("a"), expected_version=0)]))
    await first.close()
    second = SqliteRecordStore(config)
    await second.start()
    try:
        got = await second.get("account", "a")
        assert got is not None and got.seq == 1
    finally:
        await second.close()


async def test_a_database_from_newer_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(path)))
    with pytest.raises(StoreUnavailableError, match="newer"):
        await store.start()
    await store.close()


async def test_reads_proceed_while_another_connection_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(path), sqlite_busy_timeout=0.2))
    await store.start()
    try:
        await store.apply(WriteBatch(writes=[RecordWrite(record=record("a"), expected_version=0)]))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer, mid-transaction
        try:
            page = await store.changes(["c:a"], 0)
            assert [e.id for e in page.entries] == ["a"]
            with pytest.raises(StoreUnavailableError) as info:
                await store.put_state("k", b"v")
            assert info.value.code == "store_unavailable"
        finally:
            other.execute("ROLLBACK")
            other.close()
        await store.put_state("k", b"v")
        assert await store.get_state("k") == b"v"
    finally:
        await store.close()


async def test_a_closed_store_refuses_calls_with_a_typed_error(tmp_path: Path) -> None:
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(tmp_path / "store.db")))
    with pytest.raises(StoreUnavailableError):
        await store.head_seq()
    await store.start()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailableError):
        await store.get("account", "a")


async def test_rows_from_before_the_clock_column_still_read_in_the_feed(tmp_path: Path) -> None:
    config = StoreConfig(sqlite_path=str(tmp_path / "store.db"))
    store = SqliteRecordStore(config)
    await store.start()
    live = record("a")
    live.clocks = {"name": HLC(1_700_000_000_000, 2, "dev-a")}
    gone = record("b")
    gone.deleted, gone.deleted_clock = True, HLC(1_700_000_000_005, 0, "dev-b")
    await store.apply(
        WriteBatch(writes=[RecordWrite(record=r, expected_version=0) for r in (live, gone)])
    )
    expected = [r.to_change() for r in (live, gone)]
    await store.close()
    # Turn the file back into a schema-1 database: no clock column.
    with sqlite3.connect(config.sqlite_path) as conn:
        conn.execute("ALTER TABLE records DROP COLUMN clock")
        conn.execute("PRAGMA user_version = 1")

    reopened = SqliteRecordStore(config)
    await reopened.start()  # migration 2 adds the column, NULL for the old rows
    try:
        page = await reopened.changes(["c:a"], 0)
        assert [e.change for e in page.entries] == expected
        assert expected[0].clock == HLC(1_700_000_000_000, 2, "dev-a")
        assert (expected[1].fields, expected[1].clock) == ({}, gone.deleted_clock)
        with sqlite3.connect(config.sqlite_path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        await reopened.close()
