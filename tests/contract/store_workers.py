"""Writer processes for the SQLite multi-process tests (run as scripts, not collected).

``race DB ID TIMES``: increment the ``counter`` field of record ``ID`` ``TIMES`` times with
read-merge-CAS-retry; prints the number of lost races.

``crash DB N``: forever apply batches that move all ``N`` records ``crash-<i>`` from
version ``v`` to ``v + 1`` together, with the changeset result ``crash:<v+1>``, an audit
entry and the state ``crash/last``; the test SIGKILLs it at some point.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import msgspec

from backend.store.config import StoreConfig
from backend.store.errors import VersionConflictError
from backend.store.sqlite import SqliteRecordStore
from backend.store.types import AuditEntry, RecordWrite, WriteBatch
from sync_protocol.changesets import ChangesetResult, MutationResult
from sync_protocol.hlc import HLC
from sync_protocol.records import Record


async def race(db: str, record_id: str, times: int) -> None:
    store = SqliteRecordStore(StoreConfig(sqlite_path=db))
    await store.start()
    lost = 0
    try:
        for _ in range(times):
            while True:
                current = await store.get("account", record_id)
                assert current is not None
                bumped = msgspec.structs.replace(
                    current,
                    version=current.version + 1,
                    fields={**current.fields, "counter": current.fields["counter"] + 1},
                )
                write = RecordWrite(record=bumped, expected_version=current.version)
                try:
                    await store.apply(WriteBatch(writes=[write]))
                    break
                except VersionConflictError:
                    lost += 1
    finally:
        await store.close()
    print(lost, flush=True)


def crash_record(i: int, version: int) -> Record:
    clock = HLC(1_700_000_000_000 + version, 0, "crash-writer")
    fields = {"name": f"Crash {i}", "batch": version, "padding": "x" * 200}
    return Record(
        entity="account",
        id=f"crash-{i:04d}",
        version=version,
        fields=fields,
        clocks={k: clock for k in fields},
        channels=["c:crash", f"c:crash-{i % 3}"],
    )


async def crash(db: str, n: int) -> None:
    store = SqliteRecordStore(StoreConfig(sqlite_path=db))
    await store.start()
    first = await store.get("account", "crash-0000")
    version = 0 if first is None else first.version
    while True:
        nxt = version + 1
        batch = WriteBatch(
            writes=[
                RecordWrite(record=crash_record(i, nxt), expected_version=version) for i in range(n)
            ],
            changeset=ChangesetResult(
                changeset_id=f"crash:{nxt}",
                results=[
                    MutationResult(index=0, entity="account", id="crash-0000", outcome="applied")
                ],
            ),
            device_id="crash",
            audit=[
                AuditEntry(
                    entity="account", record_id="crash-0000", user="crash", version_after=nxt
                )
            ],
            state={"crash/last": str(nxt).encode()},
        )
        await store.apply(batch)
        version = nxt


def main() -> None:
    command, db, *rest = sys.argv[1:]
    if command == "race":
        asyncio.run(race(db, rest[0], int(rest[1])))
    elif command == "crash":
        asyncio.run(crash(db, int(rest[0])))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
