"""The encrypted local database: encryption at rest, keys, migrations, records, wipe."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from client_sdk import database, keys, search
from client_sdk.database import (
    BASE_MIGRATIONS,
    LocalDatabase,
    LocalRecord,
    Migration,
    database_files,
    key_path_for,
    pending_key_path_for,
    wipe_database,
)
from client_sdk.errors import (
    DatabaseBusyError,
    DatabaseClosedError,
    DatabaseKeyMismatchError,
    InvalidRecordError,
    InvalidStateValueError,
    KeyFileExistsError,
    KeyFileNotFoundError,
    LocalDatabaseError,
    MigrationError,
    RecordExistsError,
    SchemaTooNewError,
    WrongKeystoreKeyError,
    WrongPassphraseError,
)
from client_sdk.keys import KeystoreKey, Passphrase

SECRET = "Zebulon-Quartz-4711"


def account(
    id_: str, name: str, *, version: int = 1, deleted: bool = False, **extra: object
) -> LocalRecord:
    return LocalRecord(
        entity="account",
        id=id_,
        version=version,
        seq=version,
        fields={"name": name, **extra},
        deleted=deleted,
        channels=("owner:u1", "country:IT"),
    )


def contact(id_: str, fullname: str, parent: str) -> LocalRecord:
    return LocalRecord(
        entity="contact",
        id=id_,
        version=1,
        fields={"fullname": fullname, "parentcustomerid": parent},
    )


def all_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in database_files(path) if p.exists())


# --- encryption at rest ---------------------------------------------------------------


def test_file_is_unreadable_without_the_key(local_db: LocalDatabase, db_path: Path) -> None:
    local_db.upsert_records([account("a1", SECRET)])
    local_db.close()
    plain = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.DatabaseError):
            plain.execute("SELECT name FROM sqlite_master").fetchall()
    finally:
        plain.close()
    assert not db_path.read_bytes().startswith(b"SQLite format 3")


def test_plaintext_never_reaches_disk_including_wal(local_db: LocalDatabase, db_path: Path) -> None:
    local_db.upsert_records([account(f"a{i}", f"{SECRET} #{i}", city=SECRET) for i in range(300)])
    local_db.set_state("checkpoint", SECRET)
    # The database is still open: the committed pages sit in the -wal file.
    wal = Path(f"{db_path}-wal")
    assert wal.exists() and wal.stat().st_size > 0
    on_disk = all_bytes(db_path) + key_path_for(db_path).read_bytes()
    assert SECRET.encode() not in on_disk
    assert SECRET.encode("utf-16-le") not in on_disk
    assert local_db.get_record("account", "a7") == account("a7", f"{SECRET} #7", city=SECRET)
    local_db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert SECRET.encode() not in all_bytes(db_path)


def test_phone_friendly_pragmas(local_db: LocalDatabase) -> None:
    def pragma(name: str) -> object:
        return local_db.conn.execute(f"PRAGMA {name}").fetchone()[0]

    assert pragma("journal_mode") == "wal"
    assert pragma("synchronous") == 1  # NORMAL
    assert pragma("mmap_size") == 0
    assert pragma("temp_store") == 2  # MEMORY
    assert pragma("cache_size") == -database.DEFAULT_CACHE_KIB
    assert str(pragma("cipher_version")).startswith("4.")


def test_wrong_passphrase_on_open(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    local_db.close()
    with pytest.raises(WrongPassphraseError) as info:
        LocalDatabase.open(db_path, Passphrase("wrong", passphrase.params))
    assert info.value.code == "wrong_passphrase"


def test_a_foreign_data_key_fails_at_open(tmp_path: Path, keystore_key: KeystoreKey) -> None:
    # Same KEK, two databases: swapping their key files must fail at open with a
    # typed error, not with "file is not a database" on a later query.
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    LocalDatabase.create(a, keystore_key).close()
    with LocalDatabase.create(b, keystore_key) as db_b:
        db_b.upsert_records([account("b1", "B")])
    shutil.copy(key_path_for(a), key_path_for(b))
    with pytest.raises(DatabaseKeyMismatchError) as info:
        LocalDatabase.open(b, keystore_key)
    assert info.value.code == "database_key_mismatch"


def test_open_without_key_file(tmp_path: Path, keystore_key: KeystoreKey) -> None:
    with pytest.raises(KeyFileNotFoundError):
        LocalDatabase.open(tmp_path / "never.db", keystore_key)
    assert not LocalDatabase.exists(tmp_path / "never.db")


def test_create_refuses_an_existing_database(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    local_db.upsert_records([account("a1", "Keep me")])
    local_db.close()
    with pytest.raises(KeyFileExistsError):
        LocalDatabase.create(db_path, passphrase)
    with LocalDatabase.open(db_path, passphrase) as db:
        assert db.get_record("account", "a1") is not None


def test_create_clears_leftovers_of_an_interrupted_wipe(
    db_path: Path, passphrase: Passphrase
) -> None:
    with LocalDatabase.create(db_path, passphrase) as db:
        db.upsert_records([account("a1", "old")])
    keys.shred_key_file(key_path_for(db_path))  # the wipe stopped after the key
    with LocalDatabase.create(db_path, passphrase) as db:
        assert db.count_records() == 0


# --- keys over an open database --------------------------------------------------------


def test_change_passphrase_keeps_data(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    local_db.upsert_records([account("a1", "Città")])
    key_id = local_db.key_id
    db_bytes = db_path.read_bytes()
    new = Passphrase("new passphrase", passphrase.params)
    local_db.change_kek(passphrase, new)
    assert db_path.read_bytes() == db_bytes  # re-wrap only: the data is untouched
    local_db.close()
    with pytest.raises(WrongPassphraseError):
        LocalDatabase.open(db_path, passphrase)
    with LocalDatabase.open(db_path, new) as db:
        assert db.key_id == key_id
        assert db.get_record("account", "a1") == account("a1", "Città")


def test_switch_to_keystore_keeps_data(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase, keystore_key: KeystoreKey
) -> None:
    local_db.upsert_records([account("a1", "Łódź")])
    with pytest.raises(WrongPassphraseError):
        local_db.change_kek(Passphrase("not it", passphrase.params), keystore_key)
    local_db.change_kek(passphrase, keystore_key)
    local_db.close()
    with LocalDatabase.open(db_path, keystore_key) as db:
        assert db.search("lodz")[0].id == "a1"


def test_rekey_keeps_data_and_retires_the_old_key(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    local_db.upsert_records([account(f"a{i}", f"Rossi {i}") for i in range(50)])
    old_key = keys.unlock_key_file(key_path_for(db_path), passphrase)
    new_id = local_db.rekey(passphrase)
    assert new_id != old_key.key_id
    assert local_db.key_id == new_id
    assert keys.read_key_file(key_path_for(db_path)).key_id == new_id
    assert not pending_key_path_for(db_path).exists()
    assert local_db.count_records() == 50  # still usable on the same connection
    local_db.close()
    with pytest.raises(DatabaseKeyMismatchError):
        database._connect(db_path, old_key)
    with LocalDatabase.open(db_path, passphrase) as db:
        assert db.key_id == new_id
        assert db.count_records() == 50
        assert {h.id for h in db.search("rossi", limit=100)} == {f"a{i}" for i in range(50)}


def test_rekey_inside_a_transaction_is_refused(
    local_db: LocalDatabase, passphrase: Passphrase
) -> None:
    with local_db.transaction(), pytest.raises(DatabaseBusyError):
        local_db.rekey(passphrase)


def test_rekey_crash_before_key_swap_is_finished_on_open(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_db.upsert_records([account("a1", "Survivor")])

    def crash(source: object, target: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(keys, "replace_key_file", crash)
    with pytest.raises(OSError):
        local_db.rekey(passphrase)
    monkeypatch.undo()
    local_db.close()
    assert pending_key_path_for(db_path).exists()
    pending_id = keys.read_key_file(pending_key_path_for(db_path)).key_id
    with LocalDatabase.open(db_path, passphrase) as db:
        assert db.key_id == pending_id
        assert db.get_record("account", "a1") is not None
    assert not pending_key_path_for(db_path).exists()
    assert keys.read_key_file(key_path_for(db_path)).key_id == pending_id


def test_rekey_crash_before_pragma_is_rolled_back_on_open(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    local_db.upsert_records([account("a1", "Survivor")])
    key_id = local_db.key_id
    local_db.close()
    # Step 1 done (next key written), step 2 never ran.
    keys.write_key_file(
        pending_key_path_for(db_path), keys.wrap_data_key(keys.new_data_key(), passphrase)
    )
    with LocalDatabase.open(db_path, passphrase) as db:
        assert db.key_id == key_id
        assert db.get_record("account", "a1") is not None
    assert not pending_key_path_for(db_path).exists()


# --- wipe ----------------------------------------------------------------------------


def test_wipe_destroys_the_key_first_then_every_file(
    local_db: LocalDatabase, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_db.upsert_records([account("a1", SECRET)])
    key_present_at_removal: list[bool] = []
    real_remove = database._remove_database_file

    def spy(path: Path) -> None:
        key_present_at_removal.append(key_path_for(db_path).exists())
        real_remove(path)

    monkeypatch.setattr(database, "_remove_database_file", spy)
    local_db.wipe()
    assert key_present_at_removal and not any(key_present_at_removal)
    assert list(db_path.parent.iterdir()) == []
    assert local_db.closed
    with pytest.raises(DatabaseClosedError):
        local_db.count_records()


def test_wipe_without_unlocking(local_db: LocalDatabase, db_path: Path) -> None:
    local_db.upsert_records([account("a1", "x")])
    local_db.close()
    # What a crash inside an atomic key-file write leaves behind.
    stray = db_path.parent / f".{key_path_for(db_path).name}.1a2b3c4d.tmp"
    stray.write_bytes(key_path_for(db_path).read_bytes())
    wipe_database(db_path)  # e.g. the device was revoked while the app was locked
    assert list(db_path.parent.iterdir()) == []


# --- migrations ----------------------------------------------------------------------


def applied(db: LocalDatabase) -> list[tuple[int, str]]:
    return db.conn.execute(
        "SELECT version, name FROM schema_migrations ORDER BY version"
    ).fetchall()


def test_migrations_are_idempotent(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    base = [(m.version, m.name) for m in BASE_MIGRATIONS]
    assert applied(local_db) == base
    assert local_db.migrations_applied_at_open == [v for v, _ in base]
    local_db.close()
    for _ in range(2):
        with LocalDatabase.open(db_path, passphrase) as db:
            assert db.migrations_applied_at_open == []
            assert applied(db) == base
            assert db.schema_version() == BASE_MIGRATIONS[-1].version


def test_extension_migrations_apply_once_in_order(db_path: Path, passphrase: Passphrase) -> None:
    calls: list[int] = []
    extra = (
        Migration(100, "outbox", ("CREATE TABLE outbox(id INTEGER PRIMARY KEY, body TEXT)",)),
        Migration(
            101, "seed", apply=lambda conn: calls.append(conn.execute("SELECT 101").fetchone()[0])
        ),
    )
    with LocalDatabase.create(db_path, passphrase, migrations=extra) as db:
        assert db.migrations_applied_at_open[-2:] == [100, 101]
        assert "outbox" in db.db.table_names()
    with LocalDatabase.open(db_path, passphrase, migrations=extra) as db:
        assert db.migrations_applied_at_open == []
    assert calls == [101]


def test_failed_migration_leaves_nothing_behind(db_path: Path, passphrase: Passphrase) -> None:
    def boom(conn: sqlite3.Connection) -> None:
        raise RuntimeError("bad data")

    broken = (Migration(100, "half", ("CREATE TABLE half(x)",), apply=boom),)
    with pytest.raises(MigrationError) as info:
        LocalDatabase.create(db_path, passphrase, migrations=broken)
    assert info.value.code == "migration_failed"
    with LocalDatabase.open(db_path, passphrase) as db:
        assert "half" not in db.db.table_names()
        assert db.schema_version() == BASE_MIGRATIONS[-1].version


def test_bad_migration_lists_are_refused(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    local_db.close()
    for migrations in (
        (Migration(5, "clashes with the base range"),),
        (Migration(101, "b"), Migration(100, "a")),
        (Migration(100, ""),),
    ):
        with pytest.raises(MigrationError):
            LocalDatabase.open(db_path, passphrase, migrations=migrations)
    with LocalDatabase.open(db_path, passphrase, migrations=(Migration(100, "first"),)):
        pass
    with pytest.raises(MigrationError):
        LocalDatabase.open(db_path, passphrase, migrations=(Migration(100, "renamed"),))


def test_schema_from_a_newer_app_is_refused(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    local_db.close()
    LocalDatabase.open(db_path, passphrase, migrations=(Migration(100, "future"),)).close()
    with pytest.raises(SchemaTooNewError) as info:
        LocalDatabase.open(db_path, passphrase)
    assert info.value.code == "schema_too_new"


# --- records -------------------------------------------------------------------------


def test_upsert_get_iterate_count(local_db: LocalDatabase) -> None:
    written = local_db.upsert_records(
        [account("a2", "Beta"), account("a1", "Alpha", revenue=12.5), contact("c1", "Anna", "a1")]
    )
    assert written == 3
    assert local_db.get_record("account", "a1") == account("a1", "Alpha", revenue=12.5)
    assert local_db.get_record("account", "nope") is None
    assert [r.id for r in local_db.iter_records("account")] == ["a1", "a2"]
    assert local_db.count_records() == 3
    assert local_db.count_records("contact") == 1


def test_upsert_overwrites_and_last_duplicate_wins(local_db: LocalDatabase) -> None:
    local_db.upsert_records([account("a1", "One")])
    local_db.upsert_records([account("a1", "Two", version=2), account("a1", "Three", version=3)])
    assert local_db.get_record("account", "a1") == account("a1", "Three", version=3)
    assert local_db.count_records(include_deleted=True) == 1


def test_tombstones_are_kept_but_hidden(local_db: LocalDatabase) -> None:
    local_db.upsert_records([account("a1", "Alpha"), account("a2", "Beta")])
    local_db.upsert_records([account("a1", "Alpha", version=2, deleted=True)])
    record = local_db.get_record("account", "a1")
    assert record is not None and record.deleted
    assert [r.id for r in local_db.iter_records("account")] == ["a2"]
    assert [r.id for r in local_db.iter_records("account", include_deleted=True)] == ["a1", "a2"]
    assert local_db.count_records() == 1


def test_purge_removes_records(local_db: LocalDatabase) -> None:
    local_db.upsert_records([account("a1", "Alpha"), account("a2", "Beta")])
    assert local_db.purge_records([("account", "a1"), ("account", "missing")]) == 1
    assert local_db.get_record("account", "a1") is None
    assert local_db.count_records() == 1


MALFORMED = [
    LocalRecord(entity="Account!", id="x", version=1),
    LocalRecord(entity="account", id="", version=1),
    LocalRecord(entity="account", id="x", version=-1),
    LocalRecord(entity="account", id="x", version=True),
    LocalRecord(entity="account", id="x", version=1, fields=["not", "a", "dict"]),  # type: ignore[arg-type]
    LocalRecord(entity="account", id="x", version=1, fields={"when": object()}),
]
"""Records no write may take: a bad entity, id or version, fields that are not JSON values."""


@pytest.mark.parametrize(
    "bad",
    [
        *MALFORMED,
        {"entity": "account", "id": "x", "version": 1},
    ],
)
def test_invalid_records_write_nothing(local_db: LocalDatabase, bad: object) -> None:
    with pytest.raises(InvalidRecordError) as info:
        local_db.upsert_records([account("ok", "Fine"), bad])  # type: ignore[list-item]
    assert info.value.code == "invalid_record"
    assert local_db.count_records(include_deleted=True) == 0
    assert local_db.search("fine") == []


def test_transaction_is_atomic_across_records_and_state(local_db: LocalDatabase) -> None:
    with pytest.raises(RuntimeError), local_db.transaction():
        local_db.upsert_records([account("a1", "Alpha")])
        local_db.set_state("checkpoint", "42")
        raise RuntimeError("page failed")
    assert local_db.count_records() == 0
    assert local_db.get_state("checkpoint") is None
    assert local_db.search("alpha") == []
    with local_db.transaction():
        local_db.upsert_records([account("a1", "Alpha")])
        local_db.set_state("checkpoint", "42")
    assert local_db.get_state("checkpoint") == "42"
    assert local_db.search("alpha")[0].id == "a1"


def test_sync_state(local_db: LocalDatabase) -> None:
    assert local_db.get_state("missing", "default") == "default"
    for value in ("text", b"\x00bytes", 7, 2.5, None):
        local_db.set_state("k", value)
        assert local_db.get_state("k", "default") == value
    local_db.delete_state("k")
    assert local_db.get_state("k") is None
    with pytest.raises(InvalidStateValueError):
        local_db.set_state("k", ["list"])  # type: ignore[arg-type]
    with pytest.raises(InvalidStateValueError):
        local_db.set_state("", "x")


def test_find_records_uses_the_partial_index(local_db: LocalDatabase) -> None:
    local_db.upsert_records(
        [
            account("a1", "Alpha", address1_city="Kraków"),
            account("a2", "Beta", address1_city="Łódź"),
        ]
        + [contact(f"c{i}", f"Person {i}", "a1" if i % 2 else "a2") for i in range(10)]
    )
    found = local_db.find_records("contact", "parentcustomerid", "a1")
    assert sorted(r.id for r in found) == ["c1", "c3", "c5", "c7", "c9"]
    assert [r.id for r in local_db.find_records("account", "address1_city", "Łódź")] == ["a2"]
    assert len(local_db.find_records("contact", "parentcustomerid", "a1", limit=2)) == 2
    plan = local_db.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM records WHERE entity = 'contact' AND "
        f"{database.field_expression('parentcustomerid')} = 'a1'"
    ).fetchall()
    assert "records_contact_parentcustomerid" in str(plan)


def test_ensure_field_index(local_db: LocalDatabase) -> None:
    local_db.ensure_field_index("lead", "companyname")
    local_db.ensure_field_index("lead", "companyname")  # idempotent
    assert "records_lead_companyname" in {
        name
        for (name,) in local_db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    with pytest.raises(InvalidRecordError):
        local_db.ensure_field_index("lead", "bad'name")


def test_sqlite_utils_runs_on_the_encrypted_connection(local_db: LocalDatabase) -> None:
    assert isinstance(local_db.db, sqlite_utils.Database)
    notes = local_db.db.table("notes")
    notes.insert_all([{"id": 1, "body": SECRET}, {"id": 2, "body": "b"}], pk="id")
    notes.upsert({"id": 2, "body": "c"}, pk="id")
    assert list(local_db.db.query("SELECT body FROM notes ORDER BY id")) == [
        {"body": SECRET},
        {"body": "c"},
    ]
    assert notes.count == 2
    with local_db.db.atomic():
        local_db.upsert_records([account("a1", "Inside sqlite-utils atomic")])
    assert local_db.count_records() == 1


def test_closed_database_raises_typed_error(local_db: LocalDatabase) -> None:
    local_db.close()
    local_db.close()  # idempotent
    for call in (
        lambda: local_db.conn,
        lambda: local_db.search("x"),
        lambda: local_db.get_state("k"),
    ):
        with pytest.raises(DatabaseClosedError) as info:
            call()
        assert info.value.code == "database_closed"


def test_keystore_opened_database(db_path: Path, keystore_key: KeystoreKey) -> None:
    with LocalDatabase.create(db_path, keystore_key) as db:
        db.upsert_records([account("a1", "Alpha")])
    with pytest.raises(WrongKeystoreKeyError):
        LocalDatabase.open(db_path, KeystoreKey(b"\xff" * 32))
    with LocalDatabase.open(db_path, keystore_key) as db:
        assert db.count_records() == 1


# --- bulk load -----------------------------------------------------------------------


def record_indexes(db: LocalDatabase) -> set[str]:
    return {
        name
        for (name,) in db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'"
            " AND sql IS NOT NULL"
        )
    }


def test_bulk_load_defers_and_rebuilds_field_indexes(local_db: LocalDatabase) -> None:
    before = record_indexes(local_db)
    contact_index = "records_contact_parentcustomerid"
    assert contact_index in before
    with local_db.bulk_load():
        assert record_indexes(local_db) == before  # nothing written yet
        with local_db.bulk_load():  # re-entrant
            local_db.upsert_records([contact(f"c{i}", f"P {i}", "a1") for i in range(20)])
        # Only the indexes scoped to the entities written are deferred.
        assert record_indexes(local_db) == before - {contact_index}
        # Still correct without the index.
        assert len(local_db.find_records("contact", "parentcustomerid", "a1")) == 20
    assert record_indexes(local_db) == before
    assert local_db.conn.execute("SELECT count(*) FROM deferred_indexes").fetchone()[0] == 0
    assert len(local_db.find_records("contact", "parentcustomerid", "a1")) == 20


def test_bulk_load_interrupted_is_repaired_on_open(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    before = record_indexes(local_db)
    with local_db.bulk_load():
        local_db.upsert_records([contact("c1", "P", "a1")])
        local_db.close()  # the app is killed mid-bootstrap
    with LocalDatabase.open(db_path, passphrase) as db:
        assert record_indexes(db) == before
        assert db.find_records("contact", "parentcustomerid", "a1")[0].id == "c1"


def test_deferred_indexes_and_key_are_rebuilt_keeping_the_newest_copy(
    local_db: LocalDatabase,
) -> None:
    before = record_indexes(local_db)
    assert "records_key" in before
    assert local_db.defer_indexes() == len(before)
    assert record_indexes(local_db) == set()
    # Without its key the table takes a record twice (an older copy, then a newer one).
    local_db.insert_prepared(
        database.prepare_records([account("a1", "Old", version=1), contact("c1", "P", "a1")])
    )
    local_db.insert_prepared(database.prepare_records([account("a1", "New", version=2)]))
    assert local_db.count_records() == 3
    assert len(local_db.search("old")) == 1 and len(local_db.search("new")) == 1
    assert local_db.restore_indexes() == 1
    assert record_indexes(local_db) == before
    assert local_db.conn.execute("SELECT count(*) FROM deferred_indexes").fetchone() == (0,)
    assert local_db.get_record("account", "a1").fields == {"name": "New"}  # type: ignore[union-attr]
    assert local_db.search("old") == [] and [h.id for h in local_db.search("new")] == ["a1"]
    assert local_db.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert local_db.restore_indexes() == 0  # nothing left to do


@pytest.mark.parametrize("write", ["upsert", "purge"])
def test_a_write_while_the_key_is_deferred_rebuilds_it_first(
    local_db: LocalDatabase, write: str
) -> None:
    local_db.defer_indexes()
    local_db.insert_prepared(database.prepare_records([account("a1", "Old")]))
    local_db.insert_prepared(database.prepare_records([account("a1", "New", version=2)]))
    if write == "upsert":
        local_db.upsert_records([account("a1", "Local", version=3)])
        assert local_db.get_record("account", "a1").fields == {"name": "Local"}  # type: ignore[union-attr]
    else:
        assert local_db.purge_records([("account", "a1")]) == 1
        assert local_db.get_record("account", "a1") is None
        assert local_db.search("old") == [] == local_db.search("new")
    assert local_db.count_records() == (1 if write == "upsert" else 0)
    assert "records_key" in record_indexes(local_db)
    local_db.upsert_records([account("a2", "Kept")])
    with pytest.raises(RecordExistsError):  # the key guards prepared inserts again
        local_db.insert_prepared(database.prepare_records([account("a2", "Again")]))


def test_deferred_key_interrupted_is_rebuilt_on_open(
    local_db: LocalDatabase, db_path: Path, passphrase: Passphrase
) -> None:
    before = record_indexes(local_db)
    local_db.defer_indexes()
    local_db.insert_prepared(database.prepare_records([account("a1", "Old")]))
    local_db.insert_prepared(database.prepare_records([account("a1", "New", version=2)]))
    local_db.close()  # the app is killed mid-bootstrap
    with LocalDatabase.open(db_path, passphrase) as db:
        assert record_indexes(db) == before
        assert db.count_records() == 1
        assert db.get_record("account", "a1").fields == {"name": "New"}  # type: ignore[union-attr]


# --- prepared inserts (the bootstrap path) ----------------------------------------------


def mixed_records() -> list[LocalRecord]:
    """Entities interleaved, a non-searchable one, non-ASCII text, list channels."""
    return [
        contact("c2", "Jürgen Weiß", "a1"),
        account("a1", "Łódź Maszyny", address1_city="Łódź", telephone1="+48 42 1234567"),
        LocalRecord(entity="systemuser", id="u1", version=3, seq=9, fields={"fullname": "Ops"}),
        contact("c1", "François Lefèvre", "a1"),
        account("a2", "Müller GmbH", version=2, channels_note=None),
        LocalRecord(
            entity="lead",
            id="l1",
            version=1,
            fields={"subject": "Fiera", "companyname": "Verdi", "n": 1.5, "tags": ["x", 2]},
            channels=["owner:u1"],  # type: ignore[arg-type]  # a list, as decoded off the wire
        ),
    ]


def stored_rows(db: LocalDatabase) -> list[tuple[object, ...]]:
    return db.conn.execute(
        "SELECT doc, entity, id, version, seq, hex(fields), deleted, channels,"
        " typeof(version), typeof(seq) FROM records ORDER BY doc"
    ).fetchall()


def test_prepared_insert_stores_exactly_what_upsert_stores(
    tmp_path: Path, passphrase: Passphrase
) -> None:
    records = mixed_records()
    with (
        LocalDatabase.create(tmp_path / "a.db", passphrase) as upserted,
        LocalDatabase.create(tmp_path / "b.db", passphrase) as inserted,
    ):
        assert upserted.upsert_records(records) == 6
        prepared = database.prepare_records(records)
        assert prepared.count == 6
        assert inserted.insert_prepared(prepared) == 6
        assert stored_rows(inserted) == stored_rows(upserted)
        for r in records:
            assert inserted.get_record(r.entity, r.id) == upserted.get_record(r.entity, r.id)
        for query in ("weiss", "lodz", "muell", "mueller", "fiera verdi", "42 1234", "ops"):
            assert inserted.search(query) == upserted.search(query), query
        assert [r.id for r in inserted.find_records("contact", "parentcustomerid", "a1")]
        assert inserted.conn.execute("SELECT * FROM doc_counter ORDER BY 1").fetchall() == (
            upserted.conn.execute("SELECT * FROM doc_counter ORDER BY 1").fetchall()
        )
        # Later writes go on from the same counters and keep search in step.
        for db in (upserted, inserted):
            db.upsert_records([account("a1", "Renamed"), contact("c3", "Zoë", "a2")])
            db.purge_records([("contact", "c2")])
        assert stored_rows(inserted) == stored_rows(upserted)
        assert inserted.search("renamed")[0].id == "a1"
        assert inserted.search("lodz") == [] == upserted.search("lodz")
        assert inserted.search("weiss") == []


def test_prepared_fields_are_the_canonical_json_that_checksums_hash() -> None:
    prepared = database.prepare_records([account("a1", "Alpha", zeta=1, beta=[2])])
    assert prepared.fields_json == (b'{"beta":[2],"name":"Alpha","zeta":1}',)
    assert [g.entity for g in database.prepare_records(mixed_records()).groups] == [
        "systemuser",  # entity code 0
        "account",
        "contact",
        "lead",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        *MALFORMED,
        LocalRecord(entity="account", id="x", version=1, fields={"s": "\ud800"}),
        LocalRecord(entity="account", id="x", version=1, deleted=True),
        LocalRecord(entity="account", id="ok", version=2),  # the same key twice
    ],
)
def test_prepare_records_refuses_what_cannot_be_inserted_as_new(bad: LocalRecord) -> None:
    with pytest.raises(InvalidRecordError) as info:
        database.prepare_records([account("ok", "Fine"), bad])
    assert info.value.code == "invalid_record"


def test_inserting_a_stored_record_as_new_writes_nothing(local_db: LocalDatabase) -> None:
    local_db.upsert_records([account("a1", "Alpha")])
    before = stored_rows(local_db)
    counters = local_db.conn.execute("SELECT * FROM doc_counter").fetchall()
    prepared = database.prepare_records([contact("c1", "Carla", "a1"), account("a0", "Zero")])
    prepared_again = database.prepare_records([account("a1", "Alpha again")])
    with local_db.transaction():
        local_db.set_state("checkpoint", "7")
        local_db.insert_prepared(prepared)
        with pytest.raises(RecordExistsError) as info:
            local_db.insert_prepared(prepared_again)
        assert info.value.code == "record_exists"
    # The failed call left nothing; the rest of the transaction committed.
    assert local_db.get_state("checkpoint") == "7"
    assert local_db.get_record("account", "a1").fields == {"name": "Alpha"}  # type: ignore[union-attr]
    assert local_db.count_records() == 3
    assert [h.id for h in local_db.search("alpha")] == ["a1"]
    assert [h.id for h in local_db.search("carla")] == ["c1"]
    assert stored_rows(local_db)[0] == before[0]
    assert counters != local_db.conn.execute("SELECT * FROM doc_counter").fetchall()


def test_exhausted_document_ids_write_nothing(local_db: LocalDatabase) -> None:
    local_db.upsert_records([account("a1", "Alpha")])
    high = search.doc_range(search.entity_code("account"))[1]
    local_db.conn.execute("UPDATE doc_counter SET last_doc = ?", (high - 1,))
    with pytest.raises(LocalDatabaseError, match="exhausted"):
        local_db.insert_prepared(
            database.prepare_records([account("a2", "Beta"), account("a3", "Gamma")])
        )
    with pytest.raises(LocalDatabaseError, match="exhausted"):
        local_db.upsert_records([account("a2", "Beta"), account("a3", "Gamma")])
    assert local_db.conn.execute("SELECT last_doc FROM doc_counter").fetchall() == [(high - 1,)]
    assert local_db.count_records() == 1
    assert local_db.insert_prepared(database.prepare_records([account("a2", "Beta")])) == 1
    assert local_db.get_record("account", "a2") is not None


def test_bulk_load_defers_field_indexes_for_prepared_inserts(local_db: LocalDatabase) -> None:
    before = record_indexes(local_db)
    contact_index = "records_contact_parentcustomerid"
    with local_db.bulk_load():
        local_db.insert_prepared(
            database.prepare_records([contact(f"c{i}", f"P {i}", "a1") for i in range(20)])
        )
        assert record_indexes(local_db) == before - {contact_index}
    assert record_indexes(local_db) == before
    assert len(local_db.find_records("contact", "parentcustomerid", "a1")) == 20
