"""The local entity API: optimistic writes with their outbox rows, queries, search, clocks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from client_sdk.client import open_replica
from client_sdk.database import LocalDatabase, LocalRecord
from client_sdk.errors import (
    InvalidQueryError,
    LocalRecordNotFoundError,
    MutationNotFoundError,
    MutationNotRejectedError,
)
from client_sdk.keys import KeystoreKey
from client_sdk.local import DeviceClock, Filter, LocalStore, overlay
from client_sdk.outbox import Outbox, OutboxEntry
from sync_protocol.errors import (
    InvalidFieldValueError,
    InvalidRecordIdError,
    UnknownEntityError,
    UnknownFieldError,
)
from sync_protocol.hlc import HLC

KEK = KeystoreKey(b"\x09" * 32)


class FakeWall:
    """A wall clock the test moves (and can move backwards)."""

    def __init__(self, ms: int = 1_700_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def wall() -> FakeWall:
    return FakeWall()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LocalDatabase]:
    database = open_replica(tmp_path / "replica.db", KEK)
    yield database
    database.close()


@pytest.fixture
def store(db: LocalDatabase, wall: FakeWall) -> LocalStore:
    return LocalStore(db, DeviceClock(db, "dev-1", wall))


def test_create_is_visible_at_once_and_queued_with_a_clock(store: LocalStore) -> None:
    view = store.upsert("account", None, {"name": "Ferrari S.p.A.", "address1_city": "Maranello"})
    assert uuid.UUID(view.id).version == 4
    assert view.version == 0
    assert view.status == "pending"
    assert store.get("account", view.id) == view
    [entry] = store.pending()
    assert (entry.entity, entry.id, entry.op, entry.base_version) == (
        "account",
        view.id,
        "upsert",
        0,
    )
    assert entry.fields == {"name": "Ferrari S.p.A.", "address1_city": "Maranello"}
    assert entry.clock.node == "dev-1"
    assert [h.id for h in store.search("maranello")] == [view.id]


def test_partial_update_keeps_other_fields_and_clears_with_none(
    store: LocalStore, db: LocalDatabase
) -> None:
    rec = LocalRecord(
        entity="contact",
        id=str(uuid.uuid4()),
        version=3,
        fields={"firstname": "Anna", "lastname": "Nowak", "jobtitle": "CFO"},
        channels=("owner:x",),
    )
    db.upsert_records([rec])
    view = store.upsert("contact", rec.id, {"jobtitle": None, "mobilephone": "+48 600 100 200"})
    assert view.fields == {
        "firstname": "Anna",
        "lastname": "Nowak",
        "jobtitle": None,
        "mobilephone": "+48 600 100 200",
    }
    assert view.version == 3
    [entry] = store.pending()
    assert entry.base_version == 3
    assert entry.fields == {"jobtitle": None, "mobilephone": "+48 600 100 200"}
    # The record's server state is kept as the base, for rebasing and checksums.
    assert Outbox.get_base(db.conn, "contact", rec.id) == (True, rec)


def test_successive_edits_coalesce_and_clocks_increase(store: LocalStore, wall: FakeWall) -> None:
    view = store.upsert("lead", None, {"subject": "Fiera"})
    first_clock = store.pending()[0].clock
    wall.ms -= 5_000  # the phone's clock jumps backwards
    store.upsert("lead", view.id, {"lastname": "Verdi"})
    [entry] = store.pending()
    assert entry.fields == {"subject": "Fiera", "lastname": "Verdi"}
    assert entry.clock > first_clock


@pytest.mark.parametrize(
    ("entity", "fields", "error"),
    [
        ("spaceship", {"name": "x"}, UnknownEntityError),
        ("account", {"colour": "red"}, UnknownFieldError),
        ("account", {"name": 42}, InvalidFieldValueError),
        ("account", {"industrycode": 99}, InvalidFieldValueError),
        ("account", {"createdon": "2024-01-01T00:00:00Z"}, InvalidFieldValueError),
        ("contact", {"emailaddress1": "not-an-address"}, InvalidFieldValueError),
    ],
)
def test_invalid_writes_are_refused_with_the_servers_codes_and_leave_nothing(
    store: LocalStore, db: LocalDatabase, entity: str, fields: dict[str, object], error: type
) -> None:
    with pytest.raises(error) as info:
        store.upsert(entity, None, fields)
    assert info.value.code == error.code
    assert store.pending() == []
    assert db.count_records() == 0


def test_bad_record_id_is_refused(store: LocalStore) -> None:
    with pytest.raises(InvalidRecordIdError):
        store.upsert("account", "not-a-uuid", {"name": "x"})
    upper = "ABCDEF00-0000-4000-8000-000000000001"
    assert store.upsert("account", upper, {"name": "x"}).id == upper.lower()


def test_write_and_outbox_row_commit_together(
    store: LocalStore, db: LocalDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(LocalDatabase, "upsert_records", boom)
    with pytest.raises(RuntimeError):
        store.upsert("account", None, {"name": "Lost"})
    monkeypatch.undo()
    assert store.pending() == []
    assert Outbox.any_base(db.conn) is False


def test_delete_leaves_a_tombstone_and_a_delete_mutation(
    store: LocalStore, db: LocalDatabase
) -> None:
    rec = LocalRecord(entity="account", id=str(uuid.uuid4()), version=2, fields={"name": "Old"})
    db.upsert_records([rec])
    store.delete("account", rec.id)
    assert store.get("account", rec.id) is None
    stored = db.get_record("account", rec.id)
    assert stored is not None and stored.deleted
    assert [(e.op, e.base_version) for e in store.pending()] == [("delete", 2)]
    assert store.search("old") == []
    with pytest.raises(LocalRecordNotFoundError):
        store.delete("account", rec.id)
    with pytest.raises(LocalRecordNotFoundError):
        store.upsert("account", rec.id, {"name": "Back"})


def test_deleting_a_never_sent_create_forgets_it(store: LocalStore, db: LocalDatabase) -> None:
    view = store.upsert("appointment", None, {"subject": "Visita"})
    store.upsert("appointment", view.id, {"location": "Torino"})
    store.delete("appointment", view.id)
    assert store.pending() == []
    assert db.get_record("appointment", view.id) is None
    assert not Outbox.any_base(db.conn)


def test_deleting_a_create_already_in_flight_sends_a_delete(
    store: LocalStore, db: LocalDatabase
) -> None:
    view = store.upsert("appointment", None, {"subject": "Visita"})
    with store.transaction() as conn:
        Outbox.assign_changeset(conn, "dev-1", 10)
    store.delete("appointment", view.id)
    assert [(e.op, e.status) for e in store.pending()] == [
        ("upsert", "inflight"),
        ("delete", "pending"),
    ]


@pytest.fixture
def accounts(db: LocalDatabase) -> list[LocalRecord]:
    rows = [
        ("Alfa", "Milano", 10, True),
        ("Beta", "Roma", 250, False),
        ("Gamma 100%", "Milano", 40, None),
        ("Delta_x", "Torino", None, True),
        ("Epsilon", "Milano", 5, False),
    ]
    recs = [
        LocalRecord(
            entity="account",
            id=f"00000000-0000-4000-8000-00000000000{i}",
            version=1,
            fields={
                "name": name,
                "address1_city": city,
                **({"numberofemployees": n} if n is not None else {}),
                **({"statecode": 0 if active else 1} if active is not None else {}),
            },
        )
        for i, (name, city, n, active) in enumerate(rows)
    ]
    gone = LocalRecord(
        entity="account",
        id="00000000-0000-4000-8000-0000000000ff",
        version=1,
        fields={"name": "Gone", "address1_city": "Milano"},
        deleted=True,
    )
    db.upsert_records([*recs, gone])
    return recs


def _names(page: object) -> list[str]:
    return [v.fields["name"] for v in page.items]  # type: ignore[attr-defined]


def test_query_filters_order_and_pages(store: LocalStore, accounts: list[LocalRecord]) -> None:
    milano = store.query("account", {"address1_city": "Milano"}, order_by=["name"])
    assert _names(milano) == ["Alfa", "Epsilon", "Gamma 100%"]  # tombstone excluded
    desc = store.query("account", None, order_by=["-numberofemployees"], limit=2)
    assert _names(desc) == ["Beta", "Gamma 100%"]
    assert desc.next_offset == 2
    rest = store.query("account", None, order_by=["-numberofemployees"], limit=2, offset=2)
    assert _names(rest) == ["Alfa", "Epsilon"]
    last = store.query("account", None, order_by=["-numberofemployees"], limit=2, offset=4)
    assert _names(last) == ["Delta_x"] and last.next_offset is None

    def names(*filters: Filter) -> list[str]:
        return _names(store.query("account", list(filters), order_by=["name"]))

    assert names(Filter("numberofemployees", "ge", 10), Filter("numberofemployees", "lt", 250)) == [
        "Alfa",
        "Gamma 100%",
    ]
    assert names(Filter("address1_city", "in", ["Roma", "Torino"])) == ["Beta", "Delta_x"]
    assert names(Filter("name", "contains", "%")) == ["Gamma 100%"]  # % is literal
    assert names(Filter("name", "contains", "_")) == ["Delta_x"]
    assert names(Filter("name", "startswith", "e")) == ["Epsilon"]
    assert names(Filter("numberofemployees", "is_null")) == ["Delta_x"]
    assert names(Filter("address1_city", "ne", "Milano")) == ["Beta", "Delta_x"]
    assert names(Filter("id", "eq", accounts[1].id)) == ["Beta"]
    assert store.count("account", {"address1_city": "Milano"}) == 3


def test_query_sees_local_edits_and_their_status(
    store: LocalStore, accounts: list[LocalRecord]
) -> None:
    store.upsert("account", accounts[1].id, {"address1_city": "Milano"})
    page = store.query("account", {"address1_city": "Milano"}, order_by=["name"])
    assert [(v.fields["name"], v.status) for v in page.items] == [
        ("Alfa", "synced"),
        ("Beta", "pending"),
        ("Epsilon", "synced"),
        ("Gamma 100%", "synced"),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"where": {"no_such_field": 1}},
        {"where": {"name') OR 1=1 --": 1}},
        {"where": [Filter("name", "regex", "x")]},  # type: ignore[arg-type]
        {"where": [Filter("address1_city", "in", "Roma")]},
        {"where": [Filter("name", "eq", {"a": 1})]},
        {"where": [Filter("name", "lt", None)]},
        {"order_by": ["name; DROP TABLE records"]},
        {"order_by": ["nope"]},
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
    ],
)
def test_bad_queries_get_a_typed_error(
    store: LocalStore, accounts: list[LocalRecord], kwargs: dict[str, object]
) -> None:
    with pytest.raises(InvalidQueryError) as info:
        store.query("account", **kwargs)  # type: ignore[arg-type]
    assert info.value.code == "invalid_query"
    assert store.count("account") == 5


def test_hlc_survives_a_restart_even_if_the_wall_clock_went_back(
    tmp_path: Path, wall: FakeWall
) -> None:
    path = tmp_path / "clock.db"
    db = open_replica(path, KEK)
    store = LocalStore(db, DeviceClock(db, "dev-1", wall))
    store.upsert("lead", None, {"subject": "a"})
    before = store.pending()[0].clock
    db.close()
    wall.ms -= 3_600_000
    db = open_replica(path, KEK)
    try:
        store = LocalStore(db, DeviceClock(db, "dev-1", wall))
        store.upsert("lead", None, {"subject": "b"})
        after = store.pending()[-1].clock
        assert after > before
    finally:
        db.close()


def test_retry_and_discard_need_a_rejected_mutation(store: LocalStore) -> None:
    view = store.upsert("lead", None, {"subject": "a"})
    [entry] = store.pending()
    with pytest.raises(MutationNotFoundError):
        store.retry("nope")
    with pytest.raises(MutationNotRejectedError):
        store.discard(entry.mutation_id)
    assert store.get("lead", view.id) is not None


def test_discard_returns_to_the_server_version_keeping_other_edits(
    store: LocalStore, db: LocalDatabase
) -> None:
    rec = LocalRecord(
        entity="account", id=str(uuid.uuid4()), version=5, fields={"name": "Srv", "revenue": 1.0}
    )
    db.upsert_records([rec])
    store.upsert("account", rec.id, {"revenue": 99.0})
    with store.transaction() as conn:
        cs = Outbox.assign_changeset(conn, "dev-1", 10)
        assert cs is not None
        Outbox.reject(conn, cs[1][0].seq, "field_not_writable", "revenue is Dynamics-owned")
    store.upsert("account", rec.id, {"name": "Mine"})
    view = store.get("account", rec.id)
    assert view is not None
    assert view.status == "rejected"
    assert view.fields == {"name": "Mine", "revenue": 99.0}
    [rejected] = store.rejections()
    store.discard(rejected.mutation_id)
    view = store.get("account", rec.id)
    assert view is not None
    assert (view.fields, view.status) == ({"name": "Mine", "revenue": 1.0}, "pending")
    [only] = store.pending()
    with pytest.raises(MutationNotFoundError):
        store.retry(rejected.mutation_id)
    assert only.fields == {"name": "Mine"}


def _entry(op: str, fields: dict[str, object], seq: int) -> OutboxEntry:
    return OutboxEntry(
        mutation_id=f"m{seq}",
        seq=seq,
        entity="account",
        id="i",
        op=op,  # type: ignore[arg-type]
        base_version=1,
        fields=fields,
        clock=HLC(seq, 0, "d"),
        status="pending",
    )


def test_overlay_replays_mutations_in_order() -> None:
    base = LocalRecord(entity="account", id="i", version=7, fields={"name": "A", "x": 1})
    assert overlay("account", "i", base, []) is base
    out = overlay(
        "account", "i", base, [_entry("upsert", {"name": "B"}, 1), _entry("delete", {}, 2)]
    )
    assert out is not None and out.deleted and out.version == 7
    back = overlay(
        "account",
        "i",
        base,
        [_entry("delete", {}, 1), _entry("upsert", {"name": "C"}, 2)],
    )
    assert back is not None and not back.deleted and back.fields == {"name": "C", "x": 1}
    assert overlay("account", "i", None, [_entry("delete", {}, 1)]) is None
    created = overlay("account", "i", None, [_entry("upsert", {"name": "N"}, 1)])
    assert created is not None and created.version == 0 and created.fields == {"name": "N"}
