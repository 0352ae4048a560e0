"""Per-entity field indexes: named as synced records carry their fields, and migration 5,
which repairs replicas whose indexes used the Dynamics Web API names (all-NULL keys)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from client_sdk import database, keys
from client_sdk.client import open_replica
from client_sdk.database import (
    BASE_MIGRATIONS,
    DEFAULT_FIELD_INDEXES,
    LEGACY_FIELD_INDEXES,
    Connection,
    LocalDatabase,
    LocalRecord,
    field_expression,
    field_index_name,
    key_path_for,
)
from client_sdk.keys import KeystoreKey
from client_sdk.local import DeviceClock, Filter, LocalStore
from client_sdk.sync import REPLICA_MIGRATIONS
from sync_protocol.entities import SCHEMAS, EntitySchema, FieldSpec

KEK = KeystoreKey(b"\x5a" * 32)
REPO = Path(__file__).resolve().parents[3]
LEGACY_NAMES = {field_index_name(e, f) for e, f in LEGACY_FIELD_INDEXES} - {
    field_index_name(e, f) for e, f in DEFAULT_FIELD_INDEXES
}
NEW_NAMES = {field_index_name(e, f) for e, f in DEFAULT_FIELD_INDEXES}


def uid(n: int) -> str:
    return str(uuid.UUID(int=n, version=4))


ACCOUNTS = [uid(1000 + i) for i in range(5)]


def replica_records() -> list[LocalRecord]:
    """Records as the sync engine stores them: lookups under their schema names."""
    records = [
        LocalRecord(
            entity="account",
            id=a,
            version=1,
            fields={"name": f"Account {i}", "address1_city": "Kraków" if i % 2 else "Łódź"},
        )
        for i, a in enumerate(ACCOUNTS)
    ]
    for i in range(40):
        records.append(
            LocalRecord(
                entity="contact",
                id=uid(2000 + i),
                version=1,
                fields={"fullname": f"Person {i}", "parentcustomerid": ACCOUNTS[i % 5]},
            )
        )
    for i in range(10):
        records.append(
            LocalRecord(
                entity="opportunity",
                id=uid(3000 + i),
                version=1,
                fields={
                    "name": f"Deal {i}",
                    "parentaccountid": ACCOUNTS[i % 5],
                    "customerid": ACCOUNTS[(i + 1) % 5],
                },
            )
        )
        records.append(
            LocalRecord(
                entity="appointment",
                id=uid(4000 + i),
                version=1,
                fields={"subject": f"Visit {i}", "regardingobjectid": ACCOUNTS[i % 5]},
            )
        )
        records.append(
            LocalRecord(
                entity="quote",
                id=uid(5000 + i),
                version=1,
                fields={"name": f"Quote {i}", "opportunityid": uid(3000 + i % 3)},
            )
        )
    return records


def create_v4_replica(path: Path) -> LocalDatabase:
    """A replica as the SDK created it before schema version 5: base migrations 1-4
    (migration 3 with the Web API names) and the sync layer's."""
    data_key = keys.create_key_file(key_path_for(path), KEK)
    conn = database._connect(path, data_key)
    database._configure(conn, database.DEFAULT_CACHE_KIB)
    old = [m for m in BASE_MIGRATIONS if m.version <= 4]
    applied = database._migrate(conn, [*old, *REPLICA_MIGRATIONS])
    return LocalDatabase(path, conn, data_key.key_id, applied)


def raw_connection(path: Path) -> Connection:
    """The database as it is on disk, without migrating it."""
    return database._connect(path, keys.unlock_key_file(key_path_for(path), KEK))


def index_names(conn: Connection) -> set[str]:
    return {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'"
            " AND sql IS NOT NULL"
        )
    }


def non_null_entries(conn: Connection, entity: str, field: str) -> int:
    """Entries with a key in the (entity, field) index, read through that index."""
    return int(
        conn.execute(
            f'SELECT count(*) FROM records INDEXED BY "{field_index_name(entity, field)}"'
            f" WHERE entity = '{entity}' AND {field_expression(field)} IS NOT NULL"
        ).fetchone()[0]
    )


def plan(conn: Connection, sql: str, params: list[object] | tuple[object, ...]) -> str:
    return " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


# --- the definitions --------------------------------------------------------------------


def test_every_indexed_field_is_in_the_entity_schema() -> None:
    assert DEFAULT_FIELD_INDEXES
    assert len(set(DEFAULT_FIELD_INDEXES)) == len(DEFAULT_FIELD_INDEXES)
    for entity, field in DEFAULT_FIELD_INDEXES:
        assert field in SCHEMAS[entity].fields, (entity, field)


def test_the_app_s_lookups_are_indexed_under_their_synced_names() -> None:
    for pair in (
        ("account", "address1_city"),
        ("contact", "parentcustomerid"),
        ("opportunity", "parentaccountid"),
        ("opportunity", "customerid"),
        ("quote", "opportunityid"),
        ("appointment", "regardingobjectid"),
    ):
        assert pair in DEFAULT_FIELD_INDEXES
    # Every link to a record the device holds is indexed; links elsewhere are not.
    for entity, s in SCHEMAS.items():
        for name, spec in s.fields.items():
            if spec.kind == "lookup":
                linked = any(t in SCHEMAS for t in spec.target)
                assert ((entity, name) in DEFAULT_FIELD_INDEXES) == linked, (entity, name)
    assert ("account", "ownerid") not in DEFAULT_FIELD_INDEXES


def test_index_definitions_follow_the_schema() -> None:
    schemas = {
        "ticket": EntitySchema(
            "ticket",
            "tickets",
            "ticketid",
            "title",
            {
                "title": FieldSpec("string", 100),
                "accountid": FieldSpec("lookup", target=("ticket",)),
                "ownerid": FieldSpec("lookup", target=("systemuser",)),
            },
            {},
        )
    }
    assert database.schema_field_indexes(schemas, [("ticket", "title")]) == (
        ("ticket", "title"),
        ("ticket", "accountid"),
    )
    with pytest.raises(ValueError, match=r"ticket\.missing"):
        database.schema_field_indexes(schemas, [("ticket", "missing")])
    with pytest.raises(ValueError, match=r"nope\.title"):
        database.schema_field_indexes(schemas, [("nope", "title")])


def test_a_new_replica_has_only_the_current_indexes(tmp_path: Path) -> None:
    with open_replica(tmp_path / "r.db", KEK) as db:
        assert db.schema_version() >= 5
        names = index_names(db.conn)
        assert names >= NEW_NAMES
        assert not names & LEGACY_NAMES
        db.upsert_records(replica_records())
        assert non_null_entries(db.conn, "contact", "parentcustomerid") == 40


# --- migration 5 ----------------------------------------------------------------------


def test_an_old_replica_is_repaired_at_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with create_v4_replica(path) as old:
        old.upsert_records(replica_records())
        assert index_names(old.conn) >= LEGACY_NAMES
        assert not index_names(old.conn) & (NEW_NAMES - {"records_account_address1_city"})
        # The bug: every entry of the lookup indexes had a NULL key.
        assert non_null_entries(old.conn, "contact", "_parentcustomerid_value") == 0
        # So a query by parent walked every contact.
        assert "parentcustomerid" not in plan(
            old.conn,
            "SELECT id FROM records WHERE entity = 'contact'"
            f" AND {field_expression('parentcustomerid')} = ?",
            (ACCOUNTS[0],),
        )

    with open_replica(path, KEK) as db:
        # 6 copies the table to turn its key into a droppable index: the rebuilt field
        # indexes must survive it, with every entry.
        assert db.migrations_applied_at_open == [5, 6]
        assert db.conn.execute("SELECT name FROM schema_migrations WHERE version = 5").fetchone()
        names = index_names(db.conn)
        assert names >= NEW_NAMES | {"records_key"} and not names & LEGACY_NAMES
        assert db.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for entity, field, expected in (
            ("contact", "parentcustomerid", 40),
            ("opportunity", "parentaccountid", 10),
            ("opportunity", "customerid", 10),
            ("appointment", "regardingobjectid", 10),
            ("quote", "opportunityid", 10),
            ("account", "address1_city", 5),
            ("account", "primarycontactid", 0),
        ):
            assert non_null_entries(db.conn, entity, field) == expected, (entity, field)

        # The SDK's own query paths use the rebuilt indexes and return the right rows.
        store = LocalStore(db, DeviceClock(db, "dev-1"))
        expected_ids = [uid(2000 + i) for i in range(0, 40, 5)]
        sql, params = store._select("contact", {"parentcustomerid": ACCOUNTS[0]}, ())
        assert "records_contact_parentcustomerid" in plan(db.conn, sql, params)
        page = store.query("contact", {"parentcustomerid": ACCOUNTS[0]}, limit=100)
        assert [r.id for r in page.items] == sorted(expected_ids)
        assert store.count("contact", [Filter("parentcustomerid", "eq", ACCOUNTS[0])]) == 8
        found = db.find_records("contact", "parentcustomerid", ACCOUNTS[0])
        assert sorted(r.id for r in found) == sorted(expected_ids)
        for entity, field, value, count in (
            ("opportunity", "parentaccountid", ACCOUNTS[1], 2),
            ("opportunity", "customerid", ACCOUNTS[1], 2),
            ("appointment", "regardingobjectid", ACCOUNTS[2], 2),
            ("quote", "opportunityid", uid(3000), 4),
        ):
            sql, params = store._select(entity, {field: value}, ())
            assert field_index_name(entity, field) in plan(db.conn, sql, params)
            assert len(store.query(entity, {field: value}).items) == count
            assert len(db.find_records(entity, field, value)) == count

    with open_replica(path, KEK) as db:
        assert db.migrations_applied_at_open == []


def test_migration_forgets_a_legacy_index_deferred_by_an_interrupted_bulk_load(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = create_v4_replica(path)
    with old.bulk_load():
        old.upsert_records(replica_records())
        deferred = {n for (n,) in old.conn.execute("SELECT name FROM deferred_indexes")}
        assert "records_contact__parentcustomerid_value" in deferred
        assert "records_account_address1_city" in deferred
        old.close()  # the app is killed mid-bootstrap
    with open_replica(path, KEK) as db:
        names = index_names(db.conn)
        assert names >= NEW_NAMES and not names & LEGACY_NAMES
        assert db.conn.execute("SELECT count(*) FROM deferred_indexes").fetchone()[0] == 0
        assert non_null_entries(db.conn, "contact", "parentcustomerid") == 40
        assert non_null_entries(db.conn, "account", "address1_city") == 5


CRASH_MID_MIGRATION = """
import dataclasses, os, sys
from pathlib import Path
from client_sdk import database
from client_sdk.client import open_replica
from client_sdk.keys import KeystoreKey

def crash(conn):
    database._rebuild_field_indexes(conn)  # all of the work done, not committed
    os._exit(3)

database.BASE_MIGRATIONS = tuple(
    dataclasses.replace(m, apply=crash) if m.version == 5 else m
    for m in database.BASE_MIGRATIONS
)
open_replica(Path(sys.argv[1]), KeystoreKey(bytes.fromhex(sys.argv[2])), cache_kib=16)
sys.exit(1)  # not reached
"""


def test_a_crash_mid_migration_leaves_the_old_state_and_the_next_open_migrates(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with create_v4_replica(path) as old:
        old.upsert_records(replica_records())
    before = raw_connection(path)
    legacy_state = (index_names(before), before.execute("PRAGMA integrity_check").fetchall())
    before.close()

    child = subprocess.run(
        [sys.executable, "-c", CRASH_MID_MIGRATION, str(path), KEK.key.hex()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 3, child.stderr

    after = raw_connection(path)
    try:
        assert (index_names(after), after.execute("PRAGMA integrity_check").fetchall()) == (
            legacy_state
        )
        versions = {v for (v,) in after.execute("SELECT version FROM schema_migrations")}
        assert 5 not in versions and 4 in versions
    finally:
        after.close()

    with open_replica(path, KEK) as db:
        assert db.migrations_applied_at_open == [5, 6]
        names = index_names(db.conn)
        assert names >= NEW_NAMES and not names & LEGACY_NAMES
        assert non_null_entries(db.conn, "contact", "parentcustomerid") == 40
        assert len(db.find_records("contact", "parentcustomerid", ACCOUNTS[3])) == 8


def test_a_default_index_missing_from_a_migrated_replica_is_created_at_open(
    tmp_path: Path,
) -> None:
    """A lookup added to the schema later gets its index on existing replicas too."""
    path = tmp_path / "r.db"
    with open_replica(path, KEK) as db:
        db.upsert_records(replica_records())
        db.conn.execute('DROP INDEX "records_appointment_regardingobjectid"')
    with open_replica(path, KEK) as db:
        assert db.migrations_applied_at_open == []
        assert "records_appointment_regardingobjectid" in index_names(db.conn)
        assert non_null_entries(db.conn, "appointment", "regardingobjectid") == 10


def test_local_queries_on_an_indexed_field_use_its_index(tmp_path: Path) -> None:
    with open_replica(tmp_path / "r.db", KEK) as db:
        db.upsert_records(replica_records())
        store = LocalStore(db, DeviceClock(db, "dev-1"))
        index = "records_contact_parentcustomerid"
        parent = ACCOUNTS[2]
        expected = sorted(uid(2000 + i) for i in range(2, 40, 5))
        for where in (
            {"parentcustomerid": parent},
            [Filter("parentcustomerid", "eq", parent)],
            [Filter("parentcustomerid", "eq", parent), Filter("fullname", "startswith", "P")],
        ):
            sql, params = store._select("contact", where, ())
            assert index in plan(db.conn, sql, params), where
            assert [r.id for r in store.query("contact", where, limit=3).items] == expected[:3]
            page = store.query("contact", where, limit=3, offset=3)
            assert [r.id for r in page.items] == expected[3:6] and page.next_offset == 6
        sql, params = store._select("contact", {"parentcustomerid": parent}, ["-fullname"])
        assert index in plan(db.conn, sql, params)
        names = [
            r.fields["fullname"]
            for r in store.query(
                "contact", {"parentcustomerid": parent}, order_by=["-fullname"]
            ).items
        ]
        assert names == sorted(names, reverse=True) and len(names) == 8
        count_sql = (
            "SELECT count(*) FROM records WHERE entity = 'contact' AND deleted = 0"
            f" AND {field_expression('parentcustomerid')} = ?"
        )
        assert index in plan(db.conn, count_sql, (parent,))
        assert store.count("contact", {"parentcustomerid": parent}) == 8
        # Without such a filter, pages still walk the (entity, id) key and stop early.
        sql, params = store._select("contact", {"fullname": "Person 3"}, ())
        assert "TEMP B-TREE" not in plan(db.conn, sql, params)
        assert [r.id for r in store.query("contact", {"fullname": "Person 3"}).items] == [uid(2003)]
