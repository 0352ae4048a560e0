"""Changeset results: stored with their writes, replayed by id, listed per device."""

from __future__ import annotations

import pytest

from backend.store.base import RecordStore
from backend.store.errors import DuplicateChangesetError, VersionConflictError
from backend.store.types import RecordWrite, WriteBatch
from sync_protocol.changesets import ChangesetResult, MutationResult


def result(changeset_id: str, *outcomes: str) -> ChangesetResult:
    return ChangesetResult(
        changeset_id=changeset_id,
        results=[
            MutationResult(index=i, entity="account", id=f"r{i}", outcome=o)  # type: ignore[arg-type]
            for i, o in enumerate(outcomes)
        ],
    )


async def test_result_is_stored_with_the_writes_and_the_last_seq(store: RecordStore, rec) -> None:
    batch = WriteBatch(
        writes=[
            RecordWrite(record=rec("r0"), expected_version=0),
            RecordWrite(record=rec("r1"), expected_version=0),
        ],
        changeset=result("dev-1:1", "applied", "applied"),
        device_id="dev-1",
    )
    committed = await store.apply(batch)
    stored = await store.changeset_result("dev-1:1")
    assert stored is not None
    assert stored.seq == committed.last_seq == 2
    assert [r.outcome for r in stored.results] == ["applied", "applied"]
    assert await store.changeset_result("dev-1:999") is None


async def test_an_all_rejected_changeset_is_still_stored_in_order(
    store: RecordStore, rec, put
) -> None:
    await put(rec("x"))
    committed = await store.apply(
        WriteBatch(changeset=result("dev-1:1", "rejected"), device_id="dev-1")
    )
    assert committed.records == [] and committed.last_seq == 2
    stored = await store.changeset_result("dev-1:1")
    assert stored is not None and stored.seq == 2 and stored.results[0].outcome == "rejected"
    assert await store.head_seq() == 2
    assert [r.changeset_id for r in await store.device_results("dev-1", 1)] == ["dev-1:1"]


async def test_replaying_a_stored_changeset_is_refused_and_changes_nothing(
    store: RecordStore, rec
) -> None:
    first = WriteBatch(
        writes=[RecordWrite(record=rec("r0"), expected_version=0)],
        changeset=result("dev-1:7", "applied"),
        device_id="dev-1",
    )
    await store.apply(first)
    replay = WriteBatch(
        writes=[RecordWrite(record=rec("other"), expected_version=0)],
        changeset=result("dev-1:7", "applied"),
        device_id="dev-1",
    )
    with pytest.raises(DuplicateChangesetError) as info:
        await store.apply(replay)
    assert isinstance(info.value, VersionConflictError)
    assert info.value.code == "duplicate_changeset"
    assert await store.get("account", "other") is None
    assert await store.head_seq() == 1
    stored = await store.changeset_result("dev-1:7")
    assert stored is not None and stored.seq == 1


async def test_a_conflicting_batch_stores_no_result(store: RecordStore, rec, put) -> None:
    await put(rec("r0"))
    batch = WriteBatch(
        writes=[RecordWrite(record=rec("r0", version=6), expected_version=5)],
        changeset=result("dev-1:1", "applied"),
        device_id="dev-1",
    )
    with pytest.raises(VersionConflictError):
        await store.apply(batch)
    assert await store.changeset_result("dev-1:1") is None


async def test_device_results_are_per_device_after_a_seq_in_order(store: RecordStore, rec) -> None:
    for n, device in enumerate(["dev-1", "dev-2", "dev-1", "dev-1"]):
        await store.apply(
            WriteBatch(
                writes=[RecordWrite(record=rec(f"r{n}"), expected_version=0)],
                changeset=result(f"{device}:{n}", "applied"),
                device_id=device,
            )
        )
    mine = await store.device_results("dev-1", 0)
    assert [(r.changeset_id, r.seq) for r in mine] == [
        ("dev-1:0", 1),
        ("dev-1:2", 3),
        ("dev-1:3", 4),
    ]
    assert [r.changeset_id for r in await store.device_results("dev-1", 3)] == ["dev-1:3"]
    assert await store.device_results("dev-9", 0) == []
