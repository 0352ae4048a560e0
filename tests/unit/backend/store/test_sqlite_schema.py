"""SQLite adapter specifics: WAL, versioned migrations, readers beside a writer, closing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from backend.store.config import StoreConfig
from backend.store.errors import StoreUnavailableError
from backend.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteRecordStore
from backend.store.types import AuditEntry, RecordWrite, WriteBatch
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


def schema_2_database(path: Path, rows: list[tuple[Record, bool]]) -> None:
    """A database as schema version 2 left it: whole-record bodies, the old feed.

    ``rows`` are records with whether their ``clock`` column is set (NULL: written before
    migration 2 added it). Record ``m`` also has a removal row in ``c:b``, which it left.
    """
    with sqlite3.connect(path) as conn:
        for statements in MIGRATIONS[:2]:
            for sql in statements:
                conn.execute(sql)
        conn.execute("INSERT INTO channels (chan, name) VALUES (1, 'c:a'), (2, 'c:b')")
        for rid, (r, with_clock) in enumerate(rows, start=1):
            clock = msgspec.msgpack.encode(r.max_clock()) if with_clock else None
            conn.execute(
                "INSERT INTO records (rid, entity, id, version, seq, deleted, chans, hash,"
                " at_ms, data, clock) VALUES (?, ?, ?, ?, ?, ?, '1', 0, 0, ?, ?)",
                (
                    rid,
                    r.entity,
                    r.id,
                    r.version,
                    r.seq,
                    r.deleted,
                    msgspec.msgpack.encode(r),
                    clock,
                ),
            )
            conn.execute(
                "INSERT INTO feed (chan, entity, id, seq, removed, at_ms, rid)"
                " VALUES (1, ?, ?, ?, 0, 0, ?)",
                (r.entity, r.id, r.seq, rid),
            )
            if r.id == "m":
                conn.execute(
                    "INSERT INTO feed (chan, entity, id, seq, removed, at_ms, rid)"
                    " VALUES (2, ?, ?, ?, 1, 0, ?)",
                    (r.entity, r.id, r.seq, rid),
                )
        for record_id in ("a", "never-stored"):
            entry = AuditEntry(entity="account", record_id=record_id, user="u1", seq=1)
            conn.execute(
                "INSERT INTO audit (entity, record_id, at_ms, data) VALUES ('account', ?, 0, ?)",
                (record_id, msgspec.msgpack.encode(entry)),
            )
        conn.execute(f"UPDATE meta SET value = {len(rows)} WHERE key = 'head_seq'")
        conn.execute("PRAGMA user_version = 2")


async def test_a_schema_2_database_migrates_and_its_rows_still_read(tmp_path: Path) -> None:
    live = record("a")
    live.clocks = {"name": HLC(1_700_000_000_000, 2, "dev-a")}
    gone = record("b")
    gone.deleted, gone.deleted_clock = True, HLC(1_700_000_000_005, 0, "dev-b")
    moved = record("m")
    for seq, r in enumerate((live, gone, moved), start=1):
        r.seq = seq
    config = StoreConfig(sqlite_path=str(tmp_path / "store.db"))
    schema_2_database(Path(config.sqlite_path), [(live, True), (gone, False), (moved, True)])

    store = SqliteRecordStore(config)
    await store.start()  # migration 3: the feed by (chan, seq), removals listed in ``left``
    try:
        page = await store.changes(["c:a"], 0)
        assert [e.change for e in page.entries] == [r.to_change() for r in (live, gone, moved)]
        assert (page.entries[1].change.fields, page.entries[1].change.clock) == (
            {},
            gone.deleted_clock,
        )
        left = await store.changes(["c:b"], 0)
        assert [(e.seq, e.id, e.removed_from) for e in left.entries] == [(3, "m", "c:b")]
        assert await store.get_many([("account", "a"), ("account", "b")]) == {
            ("account", "a"): live,
            ("account", "b"): gone,
        }
        assert [r.id for r in await store.scan(["c:a"], 0)] == ["a", "m"]
        # Migration 4: old audit entries are found through their record's rid, or not.
        assert [a.record_id for a in await store.audit_trail("account", "a")] == ["a"]
        orphan = await store.audit_trail("account", "never-stored")
        assert [a.record_id for a in orphan] == ["never-stored"]

        back = record("m")
        back.version, back.channels = 2, ["c:b"]
        await store.apply(WriteBatch(writes=[RecordWrite(record=back, expected_version=1)]))
        now_b = await store.changes(["c:b"], 0)  # the old removal row went with the return
        assert [(e.seq, e.removed_from) for e in now_b.entries] == [(4, None)]
        with sqlite3.connect(config.sqlite_path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("SELECT left FROM records WHERE id = 'm'").fetchone() == ("1:4",)
    finally:
        await store.close()
