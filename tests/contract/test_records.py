"""Records: get, get_many, batched compare-and-swap writes and sequence assignment."""

from __future__ import annotations

import pytest

from backend.store.base import RecordStore
from backend.store.errors import InvalidRequestError, VersionConflictError
from backend.store.types import RecordWrite, WriteBatch


async def test_missing_records_are_absent(store: RecordStore) -> None:
    assert await store.get("account", "nope") is None
    assert await store.get_many([("account", "nope"), ("contact", "x")]) == {}
    assert await store.get_many([]) == {}
    assert await store.head_seq() == 0


async def test_insert_then_get_round_trips_the_record(store: RecordStore, rec, put) -> None:
    record = rec("a1", channels=["c:a", "c:b"], fields={"name": "Acme", "revenue": 12.5})
    written = await put(record)
    assert written.seq == 1
    got = await store.get("account", "a1")
    assert got == written
    assert got is not None and got.seq == 1 and got.channels == ["c:a", "c:b"]
    assert got.fields == {"name": "Acme", "revenue": 12.5}


async def test_get_many_returns_only_existing_keys(store: RecordStore, rec, put) -> None:
    await put(rec("a1"))
    await put(rec("c1", entity="contact"))
    found = await store.get_many([("account", "a1"), ("contact", "c1"), ("account", "zz")])
    assert set(found) == {("account", "a1"), ("contact", "c1")}
    assert found[("contact", "c1")].entity == "contact"


async def test_get_many_handles_more_keys_than_one_query(store: RecordStore, rec) -> None:
    records = [rec(f"r{i:04d}") for i in range(1200)]
    await store.apply(
        WriteBatch(writes=[RecordWrite(record=r, expected_version=0) for r in records])
    )
    keys = [("account", r.id) for r in records]
    found = await store.get_many(keys)
    assert len(found) == 1200
    assert found[("account", "r1199")].seq == 1200


async def test_batch_assigns_consecutive_increasing_sequences(store: RecordStore, rec) -> None:
    batch = WriteBatch(
        writes=[RecordWrite(record=rec(f"r{i}"), expected_version=0) for i in range(5)]
    )
    result = await store.apply(batch)
    assert (result.first_seq, result.last_seq) == (1, 5)
    assert [r.seq for r in result.records] == [1, 2, 3, 4, 5]
    second = await store.apply(
        WriteBatch(writes=[RecordWrite(record=rec("r9"), expected_version=0)])
    )
    assert (second.first_seq, second.last_seq) == (6, 6)
    assert await store.head_seq() == 6


async def test_update_with_the_current_version_succeeds(store: RecordStore, rec, put) -> None:
    await put(rec("a1", fields={"name": "v1"}))
    await put(rec("a1", version=2, fields={"name": "v2"}))
    got = await store.get("account", "a1")
    assert got is not None and got.version == 2 and got.fields == {"name": "v2"} and got.seq == 2


async def test_insert_of_an_existing_record_is_a_version_conflict(
    store: RecordStore, rec, put
) -> None:
    await put(rec("a1"))
    with pytest.raises(VersionConflictError) as info:
        await put(rec("a1", fields={"name": "other"}), expected=0)
    assert info.value.keys == [("account", "a1")]
    assert info.value.code == "version_conflict"
    got = await store.get("account", "a1")
    assert got is not None and got.fields == {"name": "Account a1"}


async def test_stale_expected_version_is_a_conflict(store: RecordStore, rec, put) -> None:
    await put(rec("a1"))
    await put(rec("a1", version=2))
    with pytest.raises(VersionConflictError) as info:
        await put(rec("a1", version=2, fields={"name": "late"}), expected=1)
    assert info.value.keys == [("account", "a1")]


async def test_update_of_a_missing_record_is_a_conflict(store: RecordStore, rec, put) -> None:
    with pytest.raises(VersionConflictError):
        await put(rec("ghost", version=3))
    assert await store.get("account", "ghost") is None


async def test_a_conflict_writes_nothing_from_the_batch(store: RecordStore, rec, put) -> None:
    await put(rec("a1"))
    head = await store.head_seq()
    batch = WriteBatch(
        writes=[
            RecordWrite(record=rec("new-1"), expected_version=0),
            RecordWrite(record=rec("a1", version=5), expected_version=4),
            RecordWrite(record=rec("new-2"), expected_version=0),
        ],
        state={"svc/checkpoint": b"42"},
    )
    with pytest.raises(VersionConflictError) as info:
        await store.apply(batch)
    assert info.value.keys == [("account", "a1")]
    assert await store.get_many([("account", "new-1"), ("account", "new-2")]) == {}
    assert await store.head_seq() == head
    assert await store.get_state("svc/checkpoint") is None
    page = await store.changes(["c:a"], 0)
    assert [e.id for e in page.entries] == ["a1"]


async def test_conflict_on_an_insert_names_the_existing_key(store: RecordStore, rec, put) -> None:
    await put(rec("a1"))
    batch = WriteBatch(
        writes=[
            RecordWrite(record=rec("fresh"), expected_version=0),
            RecordWrite(record=rec("a1"), expected_version=0),
        ]
    )
    with pytest.raises(VersionConflictError) as info:
        await store.apply(batch)
    assert info.value.keys == [("account", "a1")]
    assert await store.get("account", "fresh") is None


async def test_two_writes_of_one_record_in_a_batch_chain_versions(store: RecordStore, rec) -> None:
    batch = WriteBatch(
        writes=[
            RecordWrite(record=rec("a1", fields={"n": 1}), expected_version=0),
            RecordWrite(record=rec("a1", version=2, fields={"n": 2}), expected_version=1),
        ]
    )
    result = await store.apply(batch)
    assert [r.seq for r in result.records] == [1, 2]
    got = await store.get("account", "a1")
    assert got is not None and got.version == 2 and got.fields == {"n": 2} and got.seq == 2
    page = await store.changes(["c:a"], 0)
    assert [(e.seq, e.id) for e in page.entries] == [(2, "a1")]


async def test_tombstones_are_kept_and_returned_by_get(store: RecordStore, rec, put) -> None:
    await put(rec("a1"))
    await put(rec("a1", version=2, deleted=True))
    got = await store.get("account", "a1")
    assert got is not None and got.deleted and got.version == 2


@pytest.mark.parametrize(
    ("version", "expected"),
    [(1, 1), (0, 0), (3, -1)],
    ids=["not-increasing", "zero-version", "negative-expected"],
)
async def test_malformed_writes_are_rejected_with_a_typed_error(
    store: RecordStore, rec, version: int, expected: int
) -> None:
    record = rec("a1")
    record.version = version
    with pytest.raises(InvalidRequestError) as info:
        await store.apply(
            WriteBatch(writes=[RecordWrite(record=record, expected_version=expected)])
        )
    assert info.value.code == "invalid_store_request"
    assert await store.head_seq() == 0


async def test_state_only_batch_allocates_no_sequence(store: RecordStore) -> None:
    result = await store.apply(WriteBatch(state={"importer/account": b"token-1"}))
    assert result.records == [] and result.last_seq == 0 and result.first_seq == 1
    assert await store.get_state("importer/account") == b"token-1"
    assert await store.head_seq() == 0


async def test_scan_entity_lists_one_entity_by_id_tombstones_included(
    store: RecordStore, rec, put
) -> None:
    await put(rec("c"))
    await put(rec("a", channels=["c:z"]))
    await put(rec("b", entity="contact"))
    await put(rec("d", version=1, deleted=True))
    first = await store.scan_entity("account", None, 2)  # type: ignore[attr-defined]
    assert [r.id for r in first] == ["a", "c"]
    rest = await store.scan_entity("account", "c", 10)  # type: ignore[attr-defined]
    assert [(r.id, r.deleted) for r in rest] == [("d", True)]
    assert rest[0] == await store.get("account", "d")
