"""Conflicts (open, resolved, by owner) and the append-only audit trail."""

from __future__ import annotations

import pytest

from backend.store.base import RecordStore
from backend.store.errors import InvalidRequestError, NotFoundError, VersionConflictError
from backend.store.types import AuditEntry, ConflictRecord, RecordWrite, WriteBatch


def conflict(
    cid: str, owner: str = "u1", created_ms: int = 0, status: str = "open"
) -> ConflictRecord:
    return ConflictRecord(
        id=cid,
        entity="account",
        record_id="r1",
        field="description",
        device_value="device text",
        server_value="server text",
        status=status,  # type: ignore[arg-type]
        policy="manual",
        owner=owner,
        device_id="dev-1",
        changeset_id="dev-1:1",
        created_ms=created_ms,
    )


async def test_conflicts_are_stored_with_the_batch_and_listed_newest_first(
    store: RecordStore, rec, clock
) -> None:
    await store.apply(
        WriteBatch(
            writes=[RecordWrite(record=rec("r1"), expected_version=0)],
            conflicts=[conflict("k1", created_ms=10), conflict("k2", owner="u2", created_ms=20)],
        )
    )
    await store.apply(WriteBatch(conflicts=[conflict("k3", status="auto_resolved")]))
    everything = await store.conflicts()
    assert [c.id for c in everything] == ["k3", "k2", "k1"]
    assert everything[0].created_ms == clock.now  # stamped by the store when unset
    assert (
        everything[2].device_value == "device text" and everything[2].server_value == "server text"
    )
    assert [c.id for c in await store.conflicts(status="open")] == ["k2", "k1"]
    assert [c.id for c in await store.conflicts(owner="u2")] == ["k2"]
    assert [c.id for c in await store.conflicts(status="open", owner="u1")] == ["k1"]
    assert [c.id for c in await store.conflicts(limit=1)] == ["k3"]


async def test_resolving_a_conflict_records_who_and_when(store: RecordStore, clock) -> None:
    await store.apply(WriteBatch(conflicts=[conflict("k1", created_ms=5)]))
    clock.advance(1000)
    resolved = await store.resolve_conflict("k1", "kept_server", "admin@example.com")
    assert resolved.status == "resolved"
    assert (resolved.resolution, resolved.resolved_by, resolved.resolved_ms) == (
        "kept_server",
        "admin@example.com",
        clock.now,
    )
    assert await store.conflicts(status="open") == []
    assert [c.id for c in await store.conflicts(status="resolved")] == ["k1"]
    again = await store.resolve_conflict("k1", "other", "someone")
    assert again.resolution == "kept_server"


async def test_resolving_an_unknown_conflict_is_not_found(store: RecordStore) -> None:
    with pytest.raises(NotFoundError) as info:
        await store.resolve_conflict("nope", "x", "y")
    assert info.value.code == "not_found"


async def test_audit_entries_are_appended_with_seq_and_time(store: RecordStore, rec, clock) -> None:
    for version in (1, 2):
        await store.apply(
            WriteBatch(
                writes=[
                    RecordWrite(record=rec("r1", version=version), expected_version=version - 1)
                ],
                audit=[
                    AuditEntry(
                        entity="account",
                        record_id="r1",
                        user="u1",
                        device_id="dev-1",
                        source="device",
                        changeset_id=f"dev-1:{version}",
                        outcome="applied",
                        version_before=version - 1,
                        version_after=version,
                    )
                ],
            )
        )
    await store.apply(
        WriteBatch(
            audit=[
                AuditEntry(entity="contact", record_id="c1", user="u2", outcome="rejected", at_ms=7)
            ]
        )
    )
    trail = await store.audit_trail()
    assert [(a.record_id, a.version_after) for a in trail] == [("c1", 0), ("r1", 2), ("r1", 1)]
    assert [a.seq for a in trail] == [0, 2, 1]
    assert trail[0].at_ms == 7 and trail[1].at_ms == clock.now
    mine = await store.audit_trail("account", "r1", limit=1)
    assert [(a.changeset_id, a.version_before, a.source, a.device_id) for a in mine] == [
        ("dev-1:2", 1, "device", "dev-1")
    ]
    assert [a.record_id for a in await store.audit_trail("contact")] == ["c1"]
    with pytest.raises(InvalidRequestError):
        await store.audit_trail(record_id="r1")


async def test_audit_of_a_failed_batch_is_not_kept(store: RecordStore, rec) -> None:
    batch = WriteBatch(
        writes=[RecordWrite(record=rec("r1", version=2), expected_version=1)],
        audit=[AuditEntry(entity="account", record_id="r1", user="u1", outcome="applied")],
    )
    with pytest.raises(VersionConflictError):
        await store.apply(batch)
    assert await store.audit_trail() == []


def audited(record, expected: int, changeset: str) -> WriteBatch:
    return WriteBatch(
        writes=[RecordWrite(record=record, expected_version=expected)],
        audit=[
            AuditEntry(
                entity=record.entity,
                record_id=record.id,
                user="u1",
                changeset_id=changeset,
                outcome="applied",
                version_before=expected,
                version_after=record.version,
            )
        ],
    )


async def test_a_records_trail_outlives_its_compacted_tombstone(
    store: RecordStore, rec, clock
) -> None:
    await store.apply(audited(rec("gone"), 0, "c1"))
    await store.apply(audited(rec("gone", version=2, deleted=True), 1, "c2"))
    clock.advance(1000)
    assert await store.compact(clock.now) >= 1
    assert await store.get("account", "gone") is None
    # A record created after the purge (it may get the purged row's place) has its own trail.
    await store.apply(audited(rec("new"), 0, "c3"))
    # The same id coming back: both lives show in its trail.
    await store.apply(audited(rec("gone"), 0, "c4"))
    gone = await store.audit_trail("account", "gone")
    assert [a.changeset_id for a in gone] == ["c4", "c2", "c1"]
    assert [a.changeset_id for a in await store.audit_trail("account", "new")] == ["c3"]
    assert [a.changeset_id for a in await store.audit_trail("account", "gone", limit=2)] == [
        "c4",
        "c2",
    ]
