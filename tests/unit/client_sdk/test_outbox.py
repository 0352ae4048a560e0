"""The outbox: ordering, safe coalescing, changeset ids that survive a crash, dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client_sdk.client import open_replica
from client_sdk.database import LocalDatabase, LocalRecord
from client_sdk.keys import KeystoreKey
from client_sdk.outbox import COUNTER_KEY, Outbox, OutboxEntry
from sync_protocol.hlc import HLC

KEK = KeystoreKey(b"\x07" * 32)
ID1 = "00000000-0000-4000-8000-0000000000a1"
ID2 = "00000000-0000-4000-8000-0000000000a2"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LocalDatabase]:
    database = open_replica(tmp_path / "replica.db", KEK)
    yield database
    database.close()


def _append(
    db: LocalDatabase,
    id_: str = ID1,
    fields: dict[str, object] | None = None,
    *,
    op: str = "upsert",
    base: int = 0,
    wall: int = 1000,
    mid: str | None = None,
) -> OutboxEntry:
    with db.transaction() as conn:
        return Outbox.append(
            conn,
            mutation_id=mid or f"m{wall}",
            entity="account",
            id=id_,
            op=op,  # type: ignore[arg-type]
            base_version=base,
            fields=fields or {},
            clock=HLC(wall, 0, "dev1"),
            now_ms=wall,
        )


def test_upserts_of_the_same_record_on_the_same_base_coalesce_with_the_later_clock(
    db: LocalDatabase,
) -> None:
    first = _append(db, fields={"name": "A", "address1_city": "Roma"}, wall=1)
    folded = _append(db, fields={"name": "B"}, wall=2)
    assert folded.mutation_id == first.mutation_id
    [entry] = Outbox.entries(db.conn)
    assert entry.fields == {"name": "B", "address1_city": "Roma"}
    assert entry.clock == HLC(2, 0, "dev1")


@pytest.mark.parametrize(
    ("second_base", "second_op"),
    [(1, "upsert"), (0, "delete")],
    ids=["other base version", "delete"],
)
def test_no_coalescing_across_base_versions_or_into_deletes(
    db: LocalDatabase, second_base: int, second_op: str
) -> None:
    _append(db, fields={"name": "A"}, wall=1)
    _append(
        db,
        fields={} if second_op == "delete" else {"name": "B"},
        op=second_op,
        base=second_base,
        wall=2,
    )
    assert [e.op for e in Outbox.entries(db.conn)] == ["upsert", second_op]


def test_no_coalescing_into_a_row_already_in_a_changeset(db: LocalDatabase) -> None:
    _append(db, fields={"name": "A"}, wall=1)
    with db.transaction() as conn:
        assert Outbox.assign_changeset(conn, "dev1", 10) is not None
    _append(db, fields={"name": "B"}, wall=2)
    rows = Outbox.entries(db.conn)
    assert [(r.status, r.fields) for r in rows] == [
        ("inflight", {"name": "A"}),
        ("pending", {"name": "B"}),
    ]


def test_other_records_in_between_do_not_prevent_coalescing(db: LocalDatabase) -> None:
    _append(db, ID1, {"name": "A"}, wall=1)
    _append(db, ID2, {"name": "X"}, wall=2)
    _append(db, ID1, {"address1_city": "Bari"}, wall=3)
    rows = Outbox.entries(db.conn)
    assert [(r.id, r.fields) for r in rows] == [
        (ID1, {"name": "A", "address1_city": "Bari"}),
        (ID2, {"name": "X"}),
    ]


def test_changeset_ids_come_from_a_persistent_counter_and_survive_reopening(
    db: LocalDatabase, tmp_path: Path
) -> None:
    for i in range(5):
        _append(db, f"00000000-0000-4000-8000-00000000000{i}", {"name": str(i)}, wall=i + 1)
    with db.transaction() as conn:
        first = Outbox.assign_changeset(conn, "dev1", 2)
    assert first is not None
    assert first[0] == "dev1:1"
    assert [e.fields["name"] for e in first[1]] == ["0", "1"]
    db.close()

    # "Crash": reopen; the in-flight changeset is the same id with the same content.
    reopened = open_replica(tmp_path / "replica.db", KEK)
    try:
        again = Outbox.inflight(reopened.conn)
        assert again == first
        with reopened.transaction() as conn:
            Outbox.remove(conn, [e.seq for e in first[1]])
            second = Outbox.assign_changeset(conn, "dev1", 10)
        assert second is not None
        assert second[0] == "dev1:2"
        assert [e.fields["name"] for e in second[1]] == ["2", "3", "4"]
        assert reopened.get_state(COUNTER_KEY) == 2
    finally:
        reopened.close()


def test_assigning_with_nothing_pending_does_not_burn_a_counter_value(db: LocalDatabase) -> None:
    with db.transaction() as conn:
        assert Outbox.assign_changeset(conn, "dev1", 10) is None
    assert db.get_state(COUNTER_KEY) is None


def test_a_failed_transaction_assigns_nothing(db: LocalDatabase) -> None:
    _append(db, fields={"name": "A"})
    with pytest.raises(RuntimeError), db.transaction() as conn:
        Outbox.assign_changeset(conn, "dev1", 10)
        raise RuntimeError("crash before commit")
    assert Outbox.inflight(db.conn) is None
    assert db.get_state(COUNTER_KEY) is None


def test_rejected_rows_keep_their_place_and_requeue_without_their_changeset(
    db: LocalDatabase,
) -> None:
    a = _append(db, ID1, {"name": "A"}, wall=1)
    _append(db, ID2, {"name": "B"}, wall=2)
    with db.transaction() as conn:
        cs = Outbox.assign_changeset(conn, "dev1", 10)
        assert cs is not None
        Outbox.reject(conn, a.seq, "field_not_writable", "nope")
    [rejected] = Outbox.entries(db.conn, "rejected")
    assert (rejected.mutation_id, rejected.code, rejected.changeset_id) == (
        a.mutation_id,
        "field_not_writable",
        "dev1:1",
    )
    with db.transaction() as conn:
        Outbox.requeue(conn, a.seq)
    entry = Outbox.get(db.conn, a.mutation_id)
    assert entry is not None
    assert (entry.status, entry.changeset_id, entry.code, entry.attempts) == (
        "pending",
        None,
        None,
        1,
    )
    assert Outbox.counts(db.conn) == {"pending": 1, "inflight": 1, "rejected": 0}


def test_rebase_pending_moves_only_unsent_rows_on_the_old_base(db: LocalDatabase) -> None:
    _append(db, ID1, {"name": "A"}, base=3, wall=1)
    with db.transaction() as conn:
        Outbox.assign_changeset(conn, "dev1", 10)
    _append(db, ID1, {"name": "B"}, base=3, wall=2)
    _append(db, ID1, {"name": "C"}, base=2, op="delete", wall=3)
    with db.transaction() as conn:
        Outbox.rebase_pending(conn, "account", ID1, 3, 4)
    assert [(e.status, e.base_version) for e in Outbox.entries(db.conn)] == [
        ("inflight", 3),
        ("pending", 4),
        ("pending", 2),
    ]


def test_base_round_trip_and_absent_base(db: LocalDatabase) -> None:
    base = LocalRecord(
        entity="account",
        id=ID1,
        version=4,
        seq=17,
        fields={"name": "Rossi", "revenue": 1.5},
        channels=("territory:IT-NW",),
    )
    with db.transaction() as conn:
        assert Outbox.get_base(conn, "account", ID1) == (False, None)
        Outbox.put_base(conn, "account", ID1, base)
        Outbox.put_base(conn, "account", ID2, None)
    assert Outbox.get_base(db.conn, "account", ID1) == (True, base)
    assert Outbox.get_base(db.conn, "account", ID2) == (True, None)
    assert Outbox.base_keys(db.conn, "account", [ID1, ID2, "x"]) == {ID1, ID2}
    assert [b.id for b in Outbox.iter_bases(db.conn)] == [ID1]
    with db.transaction() as conn:
        Outbox.drop_base(conn, "account", ID1)
    assert not Outbox.has_base(db.conn, "account", ID1)
