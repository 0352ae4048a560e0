"""The change feed, snapshots and per-channel checksums."""

from __future__ import annotations

import pytest

from backend.store.base import RecordStore
from backend.store.errors import InvalidRequestError
from backend.store.types import RecordWrite, WriteBatch
from sync_protocol.checksum import EMPTY, checksum_of, record_hash
from sync_protocol.hlc import HLC
from sync_protocol.records import Record, RecordChange
from tests.contract.conftest import BASE_MS


def expected_checksum(records: list[Record], channel: str):
    return checksum_of(
        record_hash(r.entity, r.id, r.version, r.fields)
        for r in records
        if channel in r.channels and not r.deleted
    )


async def test_entries_come_in_sequence_order_once_per_record(store: RecordStore, rec, put) -> None:
    await put(rec("r1", channels=["c:a"]))
    await put(rec("r2", channels=["c:b"]))
    await put(rec("r3", channels=["c:a", "c:b"]))
    await put(rec("r4", channels=["c:other"]))
    page = await store.changes(["c:b", "c:a"], 0)
    assert [(e.seq, e.id) for e in page.entries] == [(1, "r1"), (2, "r2"), (3, "r3")]
    assert all(e.change is not None and e.change.seq == e.seq for e in page.entries)
    assert page.has_more is False and page.last_seq == 4


async def test_only_the_latest_state_of_a_record_is_returned(store: RecordStore, rec, put) -> None:
    await put(rec("r1", fields={"n": 1}))
    await put(rec("r2"))
    await put(rec("r1", version=2, fields={"n": 2}))
    page = await store.changes(["c:a"], 0)
    assert [(e.seq, e.id) for e in page.entries] == [(2, "r2"), (3, "r1")]
    assert page.entries[1].change is not None and page.entries[1].change.fields == {"n": 2}
    later = await store.changes(["c:a"], 2)
    assert [(e.seq, e.id) for e in later.entries] == [(3, "r1")]


async def test_leaving_a_channel_leaves_a_removal_entry(store: RecordStore, rec, put) -> None:
    await put(rec("r1", channels=["c:a", "c:b"]))
    await put(rec("r1", version=2, channels=["c:b"]))
    only_a = await store.changes(["c:a"], 1)
    assert len(only_a.entries) == 1
    removal = only_a.entries[0]
    assert (removal.seq, removal.id, removal.removed_from, removal.change) == (2, "r1", "c:a", None)
    only_b = await store.changes(["c:b"], 1)
    assert only_b.entries[0].change is not None and only_b.entries[0].removed_from is None
    both = await store.changes(["c:a", "c:b"], 1)
    assert len(both.entries) == 1 and both.entries[0].change is not None
    assert both.entries[0].change.channels == ("c:b",)


async def test_leaving_every_requested_channel_gives_one_removal_per_channel(
    store: RecordStore, rec, put
) -> None:
    await put(rec("r1", channels=["c:a", "c:b"]))
    await put(rec("r1", version=2, channels=["c:z"]))
    page = await store.changes(["c:a", "c:b"], 0)
    assert sorted((e.seq, e.removed_from) for e in page.entries) == [(2, "c:a"), (2, "c:b")]
    assert all(e.change is None and e.id == "r1" for e in page.entries)


async def test_coming_back_to_a_channel_replaces_the_removal(store: RecordStore, rec, put) -> None:
    await put(rec("r1", channels=["c:a"]))
    await put(rec("r1", version=2, channels=["c:b"]))
    await put(rec("r1", version=3, channels=["c:a"]))
    page = await store.changes(["c:a", "c:b"], 0)
    assert [(e.seq, e.removed_from is None) for e in page.entries] == [(3, True)]
    b_only = await store.changes(["c:b"], 0)
    assert [(e.seq, e.removed_from) for e in b_only.entries] == [(3, "c:b")]


async def test_a_deletion_is_a_tombstone_entry(store: RecordStore, rec, put) -> None:
    await put(rec("r1"))
    await put(rec("r1", version=2, deleted=True))
    page = await store.changes(["c:a"], 1)
    assert len(page.entries) == 1
    tomb = page.entries[0].change
    assert tomb is not None and tomb.deleted and page.entries[0].removed_from is None


async def test_pages_follow_the_limit_and_resume_after_last_seq(store: RecordStore, rec) -> None:
    writes = [RecordWrite(record=rec(f"r{i}"), expected_version=0) for i in range(5)]
    await store.apply(WriteBatch(writes=writes))
    await store.apply(
        WriteBatch(writes=[RecordWrite(record=rec("x", channels=["c:x"]), expected_version=0)])
    )
    seen: list[int] = []
    after, pages = 0, 0
    while True:
        page = await store.changes(["c:a"], after, limit=2)
        pages += 1
        seen += [e.seq for e in page.entries]
        assert len(page.entries) <= 2
        after = page.last_seq
        if not page.has_more:
            break
    assert seen == [1, 2, 3, 4, 5]
    assert pages == 3
    assert after == 6  # the head, though seq 6 is in another channel


async def test_a_full_page_that_reaches_the_head_reports_no_more(
    store: RecordStore, rec, put
) -> None:
    await put(rec("r1"))
    await put(rec("r2"))
    page = await store.changes(["c:a"], 0, limit=2)
    assert [e.seq for e in page.entries] == [1, 2]
    assert page.has_more is False and page.last_seq == 2


async def test_caught_up_and_unknown_channels_give_empty_pages(
    store: RecordStore, rec, put
) -> None:
    await put(rec("r1"))
    assert (await store.changes(["c:a"], 1)).entries == []
    page = await store.changes(["c:nobody"], 0, with_checksums=True)
    assert page.entries == [] and page.last_seq == 1 and page.has_more is False
    assert page.checksums == {"c:nobody": EMPTY}
    empty = await store.changes([], 0)
    assert empty.entries == [] and empty.last_seq == 1


async def test_checksums_track_live_records_incrementally(store: RecordStore, rec, put) -> None:
    live: dict[str, Record] = {}
    for r in [
        rec("r1", channels=["c:a", "c:b"]),
        rec("r2", channels=["c:a"]),
        rec("r3", channels=["c:b"]),
    ]:
        live[r.id] = await put(r)
    live["r1"] = await put(rec("r1", version=2, channels=["c:b"], fields={"name": "moved"}))
    live["r2"] = await put(rec("r2", version=2, deleted=True))
    live["r3"] = await put(rec("r3", version=2, channels=["c:b", "c:a"], fields={"n": 3}))
    sums = await store.checksums(["c:a", "c:b", "c:none"])
    records = list(live.values())
    assert sums["c:a"] == expected_checksum(records, "c:a")
    assert sums["c:b"] == expected_checksum(records, "c:b")
    assert sums["c:a"].count == 1 and sums["c:b"].count == 2
    assert sums["c:none"] == EMPTY


async def test_feed_checksums_match_the_head_they_come_with(store: RecordStore, rec, put) -> None:
    records = [await put(rec(f"r{i}", channels=["c:a"])) for i in range(3)]
    partial = await store.changes(["c:a"], 0, limit=1, with_checksums=True)
    assert partial.has_more and partial.checksums == {}
    final = await store.changes(["c:a"], partial.last_seq, with_checksums=True)
    assert final.has_more is False
    assert final.checksums == {"c:a": expected_checksum(records, "c:a")}
    assert final.last_seq == await store.head_seq()


async def test_scan_streams_live_records_in_sequence_order(store: RecordStore, rec, put) -> None:
    await put(rec("b", channels=["c:a"]))
    await put(rec("a", channels=["c:a", "c:b"]))
    await put(rec("d", channels=["c:b"]))
    await put(rec("c", channels=["c:a"], entity="contact"))
    await put(rec("e", channels=["c:a"]))
    await put(rec("e", version=2, deleted=True))
    await put(rec("f", channels=["c:a"]))
    await put(rec("f", version=2, channels=["c:z"]))
    first = await store.scan(["c:a", "c:b"], 0, limit=2)
    assert [(r.entity, r.id, r.seq) for r in first] == [("account", "b", 1), ("account", "a", 2)]
    rest = await store.scan(["c:a", "c:b"], first[-1].seq, limit=10)
    assert [(r.entity, r.id, r.seq) for r in rest] == [("account", "d", 3), ("contact", "c", 4)]
    assert rest[1].fields == {"name": "Account c"} and rest[1].channels == ["c:a"]
    assert await store.scan(["c:nobody"], 0) == []


async def test_a_record_written_during_a_scan_is_met_again_not_skipped(
    store: RecordStore, rec, put
) -> None:
    for name in "abcd":
        await put(rec(name))
    first = await store.scan(["c:a"], 0, limit=2)
    assert [r.id for r in first] == ["a", "b"]
    await put(rec("a", version=2, fields={"name": "moved"}))  # behind the cursor
    await put(rec("c", version=2, fields={"name": "also moved"}))  # ahead of it
    rest = await store.scan(["c:a"], first[-1].seq, limit=10)
    assert [(r.id, r.version) for r in rest] == [("d", 1), ("a", 2), ("c", 2)]


async def test_bad_limits_are_typed_errors(store: RecordStore) -> None:
    with pytest.raises(InvalidRequestError):
        await store.changes(["c:a"], 0, limit=0)
    with pytest.raises(InvalidRequestError):
        await store.changes(["c:a"], -1)
    with pytest.raises(InvalidRequestError):
        await store.scan(["c:a"], 0, limit=0)
    with pytest.raises(InvalidRequestError):
        await store.scan(["c:a"], -1)


async def test_a_feed_entry_is_what_devices_receive(store: RecordStore, rec, put) -> None:
    live = rec("r1", version=1, fields={"name": "Uno", "city": "Łódź"}, channels=["c:a", "c:b"])
    live.clocks["city"] = HLC(BASE_MS + 50, 3, "dev-z")  # the greatest clock of the record
    await put(live)
    tomb = rec("r2", version=1, deleted=True)
    await put(tomb)

    page = await store.changes(["c:a"], 0)

    first, second = (e.change for e in page.entries)
    assert first is not None and second is not None
    assert first == RecordChange(
        entity="account",
        id="r1",
        version=1,
        seq=1,
        fields={"name": "Uno", "city": "Łódź"},
        clock=HLC(BASE_MS + 50, 3, "dev-z"),
        channels=("c:a", "c:b"),
    )
    assert (second.deleted, second.fields, second.clock) == (True, {}, tomb.max_clock())
    stored = await store.get("account", "r1")
    assert stored is not None and stored.to_change() == first  # the same as the full record


async def test_a_record_moving_back_and_forth_keeps_one_entry_per_channel(
    store: RecordStore, rec, put
) -> None:
    for version, channel in enumerate(["c:a", "c:b", "c:a", "c:b"], start=1):
        await put(rec("r1", version=version, channels=[channel]))
    only_a = await store.changes(["c:a"], 0)
    assert [(e.seq, e.removed_from) for e in only_a.entries] == [(4, "c:a")]
    only_b = await store.changes(["c:b"], 0)
    assert [(e.seq, e.removed_from) for e in only_b.entries] == [(4, None)]
    assert await store.scan(["c:a"], 0) == []
    assert [r.version for r in await store.scan(["c:b"], 0)] == [4]
