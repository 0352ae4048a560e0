"""Concurrent writers: no lost update, sequences unique and in order, readers miss nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import msgspec

from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from backend.store.errors import VersionConflictError
from backend.store.sqlite import SqliteRecordStore
from backend.store.types import CommitResult, RecordWrite, WriteBatch

WORKERS = Path(__file__).with_name("store_workers.py")


async def increment(store: RecordStore, record_id: str, times: int) -> int:
    """Bump ``fields.counter`` ``times`` times with read-merge-CAS-retry; return lost races."""
    lost = 0
    for _ in range(times):
        while True:
            current = await store.get("account", record_id)
            assert current is not None
            bumped = msgspec.structs.replace(
                current,
                version=current.version + 1,
                fields={**current.fields, "counter": current.fields["counter"] + 1},
            )
            try:
                await store.apply(
                    WriteBatch(
                        writes=[RecordWrite(record=bumped, expected_version=current.version)]
                    )
                )
                break
            except VersionConflictError:
                lost += 1
    return lost


async def test_racing_tasks_lose_no_update(store: RecordStore, rec, put) -> None:
    await put(rec("hot", fields={"counter": 0}))
    lost = await asyncio.gather(*(increment(store, "hot", 15) for _ in range(6)))
    final = await store.get("account", "hot")
    assert final is not None
    assert final.fields["counter"] == 90
    assert final.version == 91
    assert sum(lost) > 0  # the tasks really raced


async def test_concurrent_batches_get_unique_ordered_sequences(store: RecordStore, rec) -> None:
    async def writer(w: int) -> list[CommitResult]:
        out = []
        for b in range(10):
            records = [rec(f"w{w}-b{b}-{i}", channels=[f"c:{i % 2}"]) for i in range(5)]
            batch = WriteBatch(writes=[RecordWrite(record=r, expected_version=0) for r in records])
            out.append(await store.apply(batch))
        return out

    results = [r for rs in await asyncio.gather(*(writer(w) for w in range(6))) for r in rs]
    seqs = [r.seq for c in results for r in c.records]
    assert len(seqs) == len(set(seqs)) == 300
    for c in results:
        assert [r.seq for r in c.records] == list(range(c.first_seq, c.last_seq + 1))
    page = await store.changes(["c:0", "c:1"], 0, limit=1000)
    feed_seqs = [e.seq for e in page.entries]
    assert feed_seqs == sorted(seqs)
    assert page.last_seq == await store.head_seq() == max(seqs)


async def test_a_reader_paging_during_writes_misses_nothing(store: RecordStore, rec, put) -> None:
    for i in range(10):
        await put(rec(f"r{i}", fields={"n": 0}))
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for _ in range(7):
            for i in range(w, 10, 3):
                while True:
                    cur = await store.get("account", f"r{i}")
                    assert cur is not None
                    new = msgspec.structs.replace(
                        cur, version=cur.version + 1, fields={"n": cur.fields["n"] + 1}
                    )
                    try:
                        await store.apply(
                            WriteBatch(
                                writes=[RecordWrite(record=new, expected_version=cur.version)]
                            )
                        )
                        break
                    except VersionConflictError:
                        pass

    async def reader() -> dict[str, int]:
        seen: dict[str, int] = {}
        after = 0
        while True:
            finished = done.is_set()
            page = await store.changes(["c:a"], after, limit=4)
            assert [e.seq for e in page.entries] == sorted(e.seq for e in page.entries)
            assert all(e.seq > after for e in page.entries)
            for e in page.entries:
                assert e.change is not None
                seen[e.id] = e.change.fields["n"]
            after = page.last_seq
            if finished and not page.has_more:
                return seen
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(3)))
    done.set()
    seen = await reading
    final = await store.get_many([("account", f"r{i}") for i in range(10)])
    assert seen == {k[1]: r.fields["n"] for k, r in final.items()}
    assert set(seen.values()) == {7}


async def test_two_processes_and_local_tasks_lose_no_update(sqlite_path: Path, rec) -> None:
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(sqlite_path)))
    await store.start()
    try:
        first = rec("hot", fields={"counter": 0})
        await store.apply(WriteBatch(writes=[RecordWrite(record=first, expected_version=0)]))
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKERS),
                "race",
                str(sqlite_path),
                "hot",
                "25",
                stdout=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        waits = [asyncio.create_task(asyncio.wait_for(p.communicate(), 60)) for p in procs]
        local = 0
        # Keep writing locally for as long as the other processes run, so all three race.
        while not all(w.done() for w in waits):
            await increment(store, "hot", 1)
            local += 1
        outputs = [await w for w in waits]
        assert [p.returncode for p in procs] == [0, 0]
        assert all(int(out.decode()) >= 0 for out, _ in outputs)
        final = await store.get("account", "hot")
        assert final is not None
        assert final.fields["counter"] == 50 + local
        assert final.version == 51 + local
    finally:
        await store.close()


async def test_sequence_is_never_reused_after_restart(sqlite_path: Path, rec) -> None:
    config = StoreConfig(sqlite_path=str(sqlite_path))
    first = SqliteRecordStore(config)
    await first.start()
    await first.apply(WriteBatch(writes=[RecordWrite(record=rec("a"), expected_version=0)]))
    await first.apply(
        WriteBatch(
            writes=[RecordWrite(record=rec("a", version=2, deleted=True), expected_version=1)]
        )
    )
    await first.compact(10**15)  # drops the record with the highest sequence
    await first.close()
    second = SqliteRecordStore(config)
    await second.start()
    try:
        result = await second.apply(
            WriteBatch(writes=[RecordWrite(record=rec("b"), expected_version=0)])
        )
        assert result.first_seq == 3
    finally:
        await second.close()
