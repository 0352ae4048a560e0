"""Tombstone and removal retention, compaction and "checkpoint too old"."""

from __future__ import annotations

import pytest

from backend.store.base import RecordStore
from backend.store.errors import CheckpointTooOldError
from backend.store.types import WriteBatch
from sync_protocol.changesets import ChangesetResult

DAY_MS = 86_400_000


async def test_compaction_drops_old_tombstones_and_removals(
    store: RecordStore, rec, put, clock
) -> None:
    await put(rec("keep"))  # 1
    await put(rec("gone"))  # 2
    await put(rec("gone", version=2, deleted=True))  # 3
    await put(rec("moved", channels=["c:a"]))  # 4
    await put(rec("moved", version=2, channels=["c:b"]))  # 5: removal from c:a
    cutoff = clock.advance(DAY_MS)
    clock.advance(DAY_MS)
    await put(rec("late"))  # 6
    await put(rec("late", version=2, deleted=True))  # 7: newer than the cutoff

    dropped = await store.compact(cutoff)

    assert dropped == 2  # the tombstone of "gone" and the removal of "moved" from c:a
    assert await store.oldest_seq() == 5
    assert await store.get("account", "gone") is None
    late = await store.get("account", "late")
    assert late is not None and late.deleted
    page = await store.changes(["c:a", "c:b"], 0)
    assert [(e.seq, e.id, e.removed_from) for e in page.entries] == [
        (1, "keep", None),
        (5, "moved", None),
        (7, "late", None),
    ]
    assert await store.compact(cutoff) == 0
    assert await store.oldest_seq() == 5


async def test_checkpoints_before_the_oldest_sequence_are_too_old(
    store: RecordStore, rec, put, clock
) -> None:
    await put(rec("a"))  # 1
    await put(rec("b"))  # 2
    await put(rec("b", version=2, deleted=True))  # 3
    await put(rec("c"))  # 4
    await store.compact(clock.advance(1))
    assert await store.oldest_seq() == 3
    for after in (1, 2):
        with pytest.raises(CheckpointTooOldError) as info:
            await store.changes(["c:a"], after)
        assert info.value.code == "checkpoint_too_old"
        assert (info.value.after_seq, info.value.oldest_seq) == (after, 3)
    assert [e.seq for e in (await store.changes(["c:a"], 3)).entries] == [4]
    assert [e.seq for e in (await store.changes(["c:a"], 0)).entries] == [1, 4]


async def test_compaction_never_lowers_the_oldest_sequence(
    store: RecordStore, rec, put, clock
) -> None:
    await put(rec("a"))
    await put(rec("a", version=2, deleted=True))  # 2
    await store.compact(clock.advance(1))
    assert await store.oldest_seq() == 2
    await put(rec("b"))
    assert await store.compact(clock.advance(1)) == 0
    assert await store.oldest_seq() == 2


async def test_a_compacted_record_can_be_created_again(store: RecordStore, rec, put, clock) -> None:
    await put(rec("a"))
    await put(rec("a", version=2, deleted=True))
    await store.compact(clock.advance(1))
    again = await put(rec("a", fields={"name": "reborn"}), expected=0)
    assert again.seq == 3
    got = await store.get("account", "a")
    assert got is not None and got.fields == {"name": "reborn"} and not got.deleted
    sums = await store.checksums(["c:a"])
    assert sums["c:a"].count == 1


async def test_compaction_drops_changeset_results_past_retention(
    store: RecordStore, rec, clock
) -> None:
    old = ChangesetResult(changeset_id="dev-1:1", results=[])
    await store.apply(WriteBatch(changeset=old, device_id="dev-1"))
    clock.advance(31 * DAY_MS)  # past the default 30-day retention
    fresh = ChangesetResult(changeset_id="dev-1:2", results=[])
    await store.apply(WriteBatch(changeset=fresh, device_id="dev-1"))
    assert await store.compact(clock.now - DAY_MS) == 1
    assert await store.changeset_result("dev-1:1") is None
    assert await store.changeset_result("dev-1:2") is not None
