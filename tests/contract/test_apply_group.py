"""Group commit: several batches in one call, each atomic on its own, in order."""

from __future__ import annotations

from backend.store.base import RecordStore
from backend.store.errors import DuplicateChangesetError, InvalidRequestError, VersionConflictError
from backend.store.types import CommitResult, RecordWrite, WriteBatch
from sync_protocol.changesets import ChangesetResult
from sync_protocol.checksum import EMPTY, record_hash


def batch(rec, cs: str, *ids: str, expected: int = 0, channel: str = "c:a") -> WriteBatch:
    return WriteBatch(
        writes=[
            RecordWrite(
                record=rec(i, version=expected + 1, channels=[channel]), expected_version=expected
            )
            for i in ids
        ],
        changeset=ChangesetResult(changeset_id=cs, results=[]),
        device_id=cs.split(":")[0],
    )


async def test_batches_commit_in_order_with_increasing_sequences(store: RecordStore, rec) -> None:
    outcomes = await store.apply_group(
        [batch(rec, "d1:1", "a", "b"), batch(rec, "d2:1", "c"), batch(rec, "d3:1", "d", "e")]
    )
    assert all(isinstance(o, CommitResult) for o in outcomes)
    ranges = [(o.first_seq, o.last_seq) for o in outcomes if isinstance(o, CommitResult)]
    assert ranges == [(1, 2), (3, 3), (4, 5)]
    for cs, seq in (("d1:1", 2), ("d2:1", 3), ("d3:1", 5)):
        stored = await store.changeset_result(cs)
        assert stored is not None and stored.seq == seq
    page = await store.changes(["c:a"], 0)
    assert [(e.id, e.seq) for e in page.entries] == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 4),
        ("e", 5),
    ]
    assert await store.head_seq() == 5


async def test_a_refused_batch_writes_nothing_and_the_others_commit(
    store: RecordStore, rec, put
) -> None:
    await put(rec("taken", channels=["c:a"]))  # seq 1: a create of "taken" must now fail
    outcomes = await store.apply_group(
        [
            batch(rec, "d1:1", "a"),
            batch(rec, "d2:1", "b", "taken", channel="c:new"),  # CAS fails on "taken"
            batch(rec, "d3:1", "c"),
        ]
    )
    assert isinstance(outcomes[0], CommitResult) and isinstance(outcomes[2], CommitResult)
    assert isinstance(outcomes[1], VersionConflictError)
    assert outcomes[1].keys == [("account", "taken")]
    assert (outcomes[0].last_seq, outcomes[2].last_seq) == (2, 3)
    assert await store.get("account", "b") is None
    assert await store.changeset_result("d2:1") is None
    assert [e.id for e in (await store.changes(["c:a", "c:new"], 0)).entries] == [
        "taken",
        "a",
        "c",
    ]
    # The refused batch's channel never came to exist, and checksums count only commits.
    sums = await store.checksums(["c:a", "c:new"])
    assert sums.get("c:new", EMPTY) == EMPTY
    live = [await store.get("account", i) for i in ("taken", "a", "c")]
    expected = EMPTY
    for r in live:
        assert r is not None
        expected = expected.add(record_hash(r.entity, r.id, r.version, r.fields))
    assert sums["c:a"] == expected
    # The channel can still be created later (no stale cached id).
    again = await store.apply_group([batch(rec, "d2:2", "b", channel="c:new")])
    assert isinstance(again[0], CommitResult)
    assert [e.id for e in (await store.changes(["c:new"], 0)).entries] == ["b"]


async def test_duplicates_and_malformed_batches_get_their_own_errors(
    store: RecordStore, rec
) -> None:
    await store.apply(batch(rec, "d1:1", "a"))
    bad = WriteBatch(writes=[RecordWrite(record=rec("z", version=1), expected_version=1)])
    outcomes = await store.apply_group(
        [batch(rec, "d1:1", "x"), bad, batch(rec, "d2:1", "y"), batch(rec, "d2:1", "w")]
    )
    assert isinstance(outcomes[0], DuplicateChangesetError)
    assert isinstance(outcomes[1], InvalidRequestError)
    assert isinstance(outcomes[2], CommitResult)
    assert isinstance(outcomes[3], DuplicateChangesetError)  # same id twice in one group
    assert await store.get("account", "x") is None and await store.get("account", "w") is None
    assert await store.head_seq() == 2


async def test_later_batches_see_earlier_ones_of_the_group(store: RecordStore, rec) -> None:
    first = batch(rec, "d1:1", "a")
    second = batch(rec, "d1:2", "a", expected=1)  # based on the version the first writes
    outcomes = await store.apply_group([first, second])
    assert all(isinstance(o, CommitResult) for o in outcomes)
    stored = await store.get("account", "a")
    assert stored is not None and stored.version == 2 and stored.seq == 2
