"""The sync engine against an in-memory server that merges with the real protocol code.

``FakeServer`` keeps records, a change feed, stored changeset results and checksums the
way the gateway and applier do (merge, checksums and wire types come from
``sync_protocol``), and ``FakeTransport`` can drop the connection at chosen points. The
end-to-end behaviour against the real services is in ``tests/e2e``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.client import open_replica
from client_sdk.database import LocalDatabase, database_files, key_path_for, prepare_records
from client_sdk.errors import (
    DeviceRevokedError,
    InvalidRecordError,
    NetworkError,
    RequestRejectedError,
    SyncStoppedError,
)
from client_sdk.events import (
    ConflictResolved,
    Event,
    EventBus,
    MutationRejected,
    ReplicaWiped,
    ResyncStarted,
    SyncFailed,
)
from client_sdk.keys import KeystoreKey
from client_sdk.local import DeviceClock, LocalStore
from client_sdk.outbox import Outbox
from client_sdk.sync import (
    BOOT_COUNT_KEY,
    BOOT_MODE_KEY,
    BOOT_RESUME_KEY,
    CHECKPOINT_KEY,
    ChecksumBook,
    ChecksumDeltas,
    SyncConfig,
    SyncEngine,
    backoff_delay,
    prepare_snapshot_batch,
)
from client_sdk.transport import ChangesetRefusedError, MutationError
from sync_protocol.changesets import ChangesetResult, MutationResult, PushRequest
from sync_protocol.checksum import ChannelChecksum, encoded_record_hash, record_hash
from sync_protocol.hlc import HLC
from sync_protocol.merge import MergeContext, merge
from sync_protocol.policy import EntityPolicy, WritePermission
from sync_protocol.pull import BootstrapBatch, PullResponse, Removal
from sync_protocol.records import Record, RecordChange
from sync_protocol.version import PROTOCOL_VERSION

KEK = KeystoreKey(b"\x05" * 32)
WALL = 1_700_000_000_000


def rid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# --- the fake server -----------------------------------------------------------------


@dataclass
class FeedEntry:
    seq: int
    record: Record
    was_in: frozenset[str]


@dataclass
class FakeServer:
    """Records, feed, results and checksums, merged with ``sync_protocol.merge``."""

    batch: int = 3
    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    feed: list[FeedEntry] = field(default_factory=list)
    seq: int = 0
    results: dict[str, tuple[str, ChangesetResult]] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    oldest_seq: int = 0
    revoked: set[str] = field(default_factory=set)
    writable: frozenset[str] | None = None
    policy: EntityPolicy = field(default_factory=EntityPolicy)
    now_ms: int = WALL + 10_000

    @staticmethod
    def channels_for(fields: dict[str, Any]) -> list[str]:
        return [f"territory:{fields.get('territory') or 'none'}"]

    def _commit(self, before: Record | None, rec: Record) -> Record:
        self.seq += 1
        rec.seq = self.seq
        rec.channels = self.channels_for(rec.fields)
        self.records[(rec.entity, rec.id)] = rec
        was = frozenset(before.channels) if before is not None else frozenset()
        self.feed.append(FeedEntry(self.seq, msgspec.structs.replace(rec), was))
        return rec

    def write(
        self, entity: str, id_: str, fields: dict[str, Any], *, delete: bool = False
    ) -> Record:
        """A change from elsewhere (Dynamics, an operator), through the same merge."""
        current = self.records.get((entity, id_))
        self.now_ms += 1
        m_fields = {} if delete else fields
        from sync_protocol.changesets import Mutation

        mutation = Mutation(
            entity=entity,
            id=id_,
            clock=HLC(self.now_ms, 0, "upstream:dynamics"),
            op="delete" if delete else "upsert",
            base_version=current.version if current else 0,
            fields=m_fields,
        )
        merged = merge(current, mutation, MergeContext(source="upstream", now_ms=self.now_ms))
        assert merged.record is not None, merged.result
        return self._commit(current, merged.record)

    def push(self, device: str, grants: frozenset[str], req: PushRequest) -> ChangesetResult:
        stored = self.results.get(req.changeset_id)
        if stored is not None:
            return stored[1]
        self.now_ms += 1
        perm = WritePermission(create=True, update=True, delete=True, fields=self.writable)
        ctx = MergeContext(
            source="device",
            origin=f"device:{device}",
            policy=self.policy,
            permission=perm,
            now_ms=self.now_ms,
        )
        out: list[MutationResult] = []
        for i, m in enumerate(req.mutations):
            current = self.records.get((m.entity, m.id))
            if current is not None and not grants.intersection(current.channels):
                out.append(
                    MutationResult(
                        index=i, entity=m.entity, id=m.id, outcome="rejected", code="not_found"
                    )
                )
                continue
            merged = merge(current, m, ctx, i)
            if merged.record is not None and merged.changed:
                self._commit(current, merged.record)
            out.append(merged.result)
        result = ChangesetResult(changeset_id=req.changeset_id, results=out, seq=self.seq)
        self.results[req.changeset_id] = (device, result)
        self.applied.append(req.changeset_id)
        return result

    def checksums(self, grants: frozenset[str]) -> dict[str, ChannelChecksum]:
        sums = {c: ChannelChecksum() for c in grants}
        for r in self.records.values():
            if r.deleted:
                continue
            h = record_hash(r.entity, r.id, r.version, r.fields)
            for c in r.channels:
                if c in grants:
                    sums[c] = sums[c].add(h)
        return sums

    def pull(
        self, device: str, grants: frozenset[str], checkpoint: str, limit: int
    ) -> PullResponse:
        after = int(checkpoint or 0)
        results = [r for cid, (d, r) in self.results.items() if d == device and r.seq > after]
        if device in self.revoked:
            return PullResponse(protocol=1, checkpoint="", has_more=False, action="wipe")
        if checkpoint and after < self.oldest_seq:
            return PullResponse(
                protocol=1, checkpoint="", has_more=False, results=results, action="resync"
            )
        entries = [e for e in self.feed if e.seq > after]
        page, more = entries[:limit], len(entries) > limit
        changes: list[RecordChange] = []
        removals: list[Removal] = []
        for e in page:
            if grants.intersection(e.record.channels):
                ch = e.record.to_change()
                ch.channels = tuple(c for c in e.record.channels if c in grants)
                changes.append(ch)
            elif grants.intersection(e.was_in):
                removals.append(Removal(entity=e.record.entity, id=e.record.id))
        last = page[-1].seq if page else max(after, self.seq if not more else after)
        return PullResponse(
            protocol=PROTOCOL_VERSION,
            checkpoint=str(last),
            has_more=more,
            changes=changes,
            removals=removals,
            results=results,
            checksums={} if more else self.checksums(grants),
        )

    def snapshot(self, grants: frozenset[str], resume: str | None) -> Iterator[BootstrapBatch]:
        if resume:
            head_s, entity, id_ = resume.split("|")
            head, after = int(head_s), (entity, id_)
        else:
            head, after = self.seq, ("", "")
        live = sorted(
            k
            for k, r in self.records.items()
            if not r.deleted and grants.intersection(r.channels) and k > after
        )
        sent = 0
        while True:
            chunk, live = live[: self.batch], live[self.batch :]
            records = []
            for k in chunk:
                ch = self.records[k].to_change()
                ch.channels = tuple(c for c in self.records[k].channels if c in grants)
                records.append(ch)
            sent += len(records)
            last = chunk[-1] if chunk else after
            after = last
            done = not live
            yield BootstrapBatch(
                records=records,
                resume=f"{head}|{last[0]}|{last[1]}",
                done=done,
                checkpoint=str(head) if done else "",
                total=sent,
            )
            if done:
                return


class FakeTransport:
    """One device's connection to the fake server, with failure injection."""

    def __init__(self, server: FakeServer, grants: set[str]) -> None:
        self.server = server
        self.grants = frozenset(grants)
        self.pushes: list[PushRequest] = []
        self.bootstrap_resumes: list[str | None] = []
        self.drop_push: str | None = None  # "before" or "after" the server applies
        self.drop_pull = False
        self.drop_bootstrap_after: int | None = None
        self.mangle_bootstrap: Callable[[BootstrapBatch], BootstrapBatch] | None = None
        self.pending_pushes = 0
        self.refuse: ChangesetRefusedError | None = None
        self.poke_queue: asyncio.Queue[int] = asyncio.Queue()
        self.registered: list[str] = []

    async def register_device(self, device_id: str, name: str = "", platform: str = "") -> None:
        if device_id in self.server.revoked:
            raise DeviceRevokedError("revoked")
        self.registered.append(device_id)

    async def push(self, request: PushRequest) -> ChangesetResult:
        self.pushes.append(request)
        if self.drop_push == "before":
            self.drop_push = None
            raise NetworkError("connection reset before the server got it")
        if self.refuse is not None:
            refusal, self.refuse = self.refuse, None
            raise refusal
        result = self.server.push(request.device_id, self.grants, request)
        if self.drop_push == "after":
            self.drop_push = None
            raise NetworkError("connection reset after the server applied it")
        if self.pending_pushes:
            self.pending_pushes -= 1
            return ChangesetResult(changeset_id=request.changeset_id, results=[], status="pending")
        return result

    async def pull(self, device_id: str, checkpoint: str, limit: int) -> PullResponse:
        if self.drop_pull:
            self.drop_pull = False
            raise NetworkError("no route to host")
        return self.server.pull(device_id, self.grants, checkpoint, limit)

    async def bootstrap(self, device_id: str, resume: str | None) -> AsyncIterator[BootstrapBatch]:
        self.bootstrap_resumes.append(resume)
        for n, batch in enumerate(self.server.snapshot(self.grants, resume)):
            if self.drop_bootstrap_after is not None and n >= self.drop_bootstrap_after:
                self.drop_bootstrap_after = None
                raise NetworkError("stream cut")
            yield batch if self.mangle_bootstrap is None else self.mangle_bootstrap(batch)

    async def pokes(self, device_id: str) -> AsyncIterator[int]:
        while True:
            yield await self.poke_queue.get()

    async def aclose(self) -> None:
        return None


@dataclass
class Device:
    db: LocalDatabase
    store: LocalStore
    engine: SyncEngine
    transport: FakeTransport
    events: list[Event]


class Devices:
    def __init__(self, tmp_path: Path, server: FakeServer) -> None:
        self.tmp_path = tmp_path
        self.server = server
        self.opened: list[Device] = []

    def open(
        self,
        name: str,
        grants: set[str] | None = None,
        config: SyncConfig | None = None,
        wall_ms: int = WALL,
    ) -> Device:
        db = open_replica(self.tmp_path / f"{name}.db", KEK)
        store = LocalStore(db, DeviceClock(db, name, lambda: wall_ms))
        transport = FakeTransport(self.server, grants or {"territory:IT-NW"})
        bus = EventBus()
        seen: list[Event] = []
        bus.subscribe(seen.append)
        engine = SyncEngine(
            store,
            transport,
            name,
            events=bus,
            config=config or SyncConfig(pull_limit=4, push_batch=3, pending_wait_s=0),
            rnd=lambda: 0.0,
        )
        store.on_write = engine.notify_local_write
        device = Device(db, store, engine, transport, seen)
        self.opened.append(device)
        return device

    def close(self) -> None:
        for d in self.opened:
            d.db.close()


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def devices(tmp_path: Path, server: FakeServer) -> Iterator[Devices]:
    ds = Devices(tmp_path, server)
    yield ds
    ds.close()


def seed(server: FakeServer, n: int, territory: str = "IT-NW") -> list[str]:
    ids = [rid(i) for i in range(1, n + 1)]
    for i, id_ in enumerate(ids):
        server.write("account", id_, {"name": f"Cliente {i}", "territory": territory})
    return ids


def visible(device: Device, entity: str = "account") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    offset: int | None = 0
    while offset is not None:
        page = device.store.query(entity, limit=1000, offset=offset)
        out.update({v.id: v.fields for v in page.items})
        offset = page.next_offset
    return out


def server_view(
    server: FakeServer, entity: str = "account", channel: str = "territory:IT-NW"
) -> dict[str, dict[str, Any]]:
    """What a device granted ``channel`` must show."""
    return {
        k[1]: r.fields
        for k, r in server.records.items()
        if k[0] == entity and not r.deleted and channel in r.channels
    }


# --- tests ---------------------------------------------------------------------------


async def test_first_sync_bootstraps_then_pulls_and_checksums_match(
    devices: Devices, server: FakeServer
) -> None:
    seed(server, 10)
    server.write("account", rid(99), {"name": "Elsewhere", "territory": "PL-MZ"})
    phone = devices.open("phone")
    done = await phone.engine.sync()
    assert visible(phone) == {
        k: v for k, v in server_view(server).items() if v["territory"] == "IT-NW"
    }
    assert done.checksum_ok is True
    assert phone.engine.checkpoint == str(server.seq)
    # Later changes arrive by pull, in pages.
    for i in range(1, 6):
        server.write("account", rid(i), {"address1_city": "Torino"})
    done = await phone.engine.sync()
    assert done.pulled == 5 and done.checksum_ok is True
    assert phone.store.count("account", {"address1_city": "Torino"}) == 5
    assert phone.engine.checksums(["territory:IT-NW"]) == server.checksums(
        frozenset({"territory:IT-NW"})
    )


async def test_offline_edits_on_two_devices_converge(devices: Devices, server: FakeServer) -> None:
    ids = seed(server, 3)
    # A's edits happen later in real time than B's.
    a = devices.open("phone-a", wall_ms=WALL + 60_000)
    b = devices.open("phone-b", wall_ms=WALL + 30_000)
    await a.engine.sync()
    await b.engine.sync()
    # Offline: different fields of one record, the same field of another, a create, a delete.
    a.store.upsert("account", ids[0], {"address1_city": "Genova"})
    b.store.upsert("account", ids[0], {"telephone1": "+39 010 123456"})
    a.store.upsert("account", ids[1], {"name": "A, later"})
    b.store.upsert("account", ids[1], {"name": "B, earlier"})
    created = a.store.upsert("account", None, {"name": "Nuovo", "territory": "IT-NW"})
    b.store.delete("account", ids[2])
    await a.engine.sync()
    await b.engine.sync()
    await a.engine.sync()
    assert visible(a) == visible(b) == server_view(server)
    assert visible(a)[ids[0]]["address1_city"] == "Genova"
    assert visible(a)[ids[0]]["telephone1"] == "+39 010 123456"
    assert created.id in visible(b) and ids[2] not in visible(a)
    assert a.store.pending() == [] and b.store.pending() == []
    assert visible(a)[ids[1]]["name"] == "A, later"  # last writer wins, on every replica
    [conflict] = [e for e in b.events if isinstance(e, ConflictResolved)]
    assert conflict.result.id == ids[1] and conflict.result.fields == {"name": "A, later"}


async def test_network_drop_after_apply_is_retried_with_the_same_changeset(
    devices: Devices, server: FakeServer
) -> None:
    phone = devices.open("phone")
    await phone.engine.sync()
    view = phone.store.upsert("lead", None, {"subject": "Fiera", "territory": "IT-NW"})
    phone.transport.drop_push = "after"
    with pytest.raises(NetworkError):
        await phone.engine.sync()
    assert phone.store.pending()[0].status == "inflight"
    await phone.engine.sync()
    first, retry = phone.transport.pushes
    assert retry.changeset_id == first.changeset_id == "phone:1"
    assert retry.mutations == first.mutations
    assert server.applied == ["phone:1"]  # applied once
    assert server.records[("lead", view.id)].version == 1
    assert phone.store.pending() == []
    assert phone.store.get("lead", view.id).version == 1  # type: ignore[union-attr]


async def test_network_drop_before_the_server_resends_identically(
    devices: Devices, server: FakeServer
) -> None:
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("lead", None, {"subject": "x", "territory": "IT-NW"})
    phone.transport.drop_push = "before"
    with pytest.raises(NetworkError):
        await phone.engine.sync()
    # A new edit meanwhile goes into a later changeset, not into the one in flight.
    phone.store.upsert("lead", None, {"subject": "y", "territory": "IT-NW"})
    await phone.engine.sync()
    assert [p.changeset_id for p in phone.transport.pushes] == ["phone:1", "phone:1", "phone:2"]
    assert [len(p.mutations) for p in phone.transport.pushes] == [1, 1, 1]
    assert server.applied == ["phone:1", "phone:2"]


async def test_a_rejected_mutation_does_not_block_the_ones_behind_it(
    devices: Devices, server: FakeServer
) -> None:
    ids = seed(server, 2)
    server.writable = frozenset({"name", "territory", "address1_city"})
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("account", ids[0], {"address1_city": "Asti"})
    phone.store.upsert("account", ids[1], {"revenue": 5.0})  # not writable: rejected
    phone.store.upsert("account", None, {"name": "Dopo", "territory": "IT-NW"})
    await phone.engine.sync()
    [rejected] = phone.store.rejections()
    assert (rejected.id, rejected.code) == (ids[1], "field_not_writable")
    assert server.records[("account", ids[0])].fields["address1_city"] == "Asti"
    assert any(v["name"] == "Dopo" for v in server_view(server).values())
    assert [e.code for e in phone.events if isinstance(e, MutationRejected)] == [
        "field_not_writable"
    ]
    # The edit stays visible, flagged, until the app decides.
    shown = phone.store.get("account", ids[1])
    assert shown is not None and shown.status == "rejected" and shown.fields["revenue"] == 5.0
    # Later edits keep flowing.
    phone.store.upsert("account", ids[0], {"address1_city": "Alba"})
    await phone.engine.sync()
    assert server.records[("account", ids[0])].fields["address1_city"] == "Alba"
    # Retry once the server allows it: a new changeset id, then applied.
    server.writable = None
    phone.store.retry(rejected.mutation_id)
    await phone.engine.sync()
    assert phone.store.rejections() == []
    assert server.records[("account", ids[1])].fields["revenue"] == 5.0
    assert phone.transport.pushes[-1].changeset_id not in {
        p.changeset_id for p in phone.transport.pushes[:-1]
    }


async def test_discard_restores_the_server_version(devices: Devices, server: FakeServer) -> None:
    ids = seed(server, 1)
    server.writable = frozenset({"name"})
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("account", ids[0], {"revenue": 7.0})
    await phone.engine.sync()
    [rejected] = phone.store.rejections()
    server.write("account", ids[0], {"name": "Renamed upstream"})
    await phone.engine.sync()
    assert phone.store.get("account", ids[0]).fields["revenue"] == 7.0  # type: ignore[union-attr]
    phone.store.discard(rejected.mutation_id)
    shown = phone.store.get("account", ids[0])
    assert shown is not None and shown.status == "synced"
    assert shown.fields == server.records[("account", ids[0])].fields
    assert not Outbox.any_base(phone.db.conn)
    assert (await phone.engine.sync()).checksum_ok is True


async def test_a_refused_changeset_dead_letters_only_the_named_mutations(
    devices: Devices, server: FakeServer
) -> None:
    phone = devices.open("phone")
    await phone.engine.sync()
    good = phone.store.upsert("lead", None, {"subject": "ok", "territory": "IT-NW"})
    bad = phone.store.upsert("lead", None, {"subject": "bad", "territory": "IT-NW"})
    phone.transport.refuse = ChangesetRefusedError(
        "422",
        status=422,
        server_code="field_not_writable",
        errors=[MutationError(index=1, code="field_not_writable")],
    )
    await phone.engine.sync()
    [rejected] = phone.store.rejections()
    assert rejected.id == bad.id and rejected.code == "field_not_writable"
    assert ("lead", good.id) in server.records
    assert [p.changeset_id for p in phone.transport.pushes] == ["phone:1", "phone:2"]
    assert [m.id for m in phone.transport.pushes[1].mutations] == [good.id]


async def test_pull_rebases_unsynced_edits_onto_new_server_state(
    devices: Devices, server: FakeServer
) -> None:
    ids = seed(server, 1)
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("account", ids[0], {"address1_city": "Mine"})
    server.write("account", ids[0], {"name": "Theirs", "telephone1": "+39 011 1"})
    phone.transport.drop_push = "before"  # the push fails; the pull still must not lose it
    with pytest.raises(NetworkError):
        await phone.engine.sync()
    phone.transport.drop_push = None
    phone.engine._registered = True
    count, action, _ = await phone.engine._pull()
    assert (count, action) == (1, "none")
    shown = phone.store.get("account", ids[0])
    assert shown is not None
    assert shown.fields["name"] == "Theirs" and shown.fields["address1_city"] == "Mine"
    assert shown.version == 2 and shown.status == "pending"
    await phone.engine.sync()
    assert server.records[("account", ids[0])].fields["address1_city"] == "Mine"
    assert server.records[("account", ids[0])].fields["name"] == "Theirs"
    assert visible(phone) == server_view(server)


async def test_removals_purge_records_that_left_the_scope(
    devices: Devices, server: FakeServer
) -> None:
    ids = seed(server, 3)
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("account", ids[1], {"address1_city": "Kept edit"})
    phone.transport.drop_push = "before"
    with pytest.raises(NetworkError):
        await phone.engine.sync()
    server.write("account", ids[0], {"territory": "FR-IDF"})
    server.write("account", ids[1], {"territory": "FR-IDF"})
    phone.engine._registered = True
    await phone.engine._pull()
    assert phone.db.get_record("account", ids[0]) is None
    assert phone.store.search("cliente 0") == []
    # The record with an unsynced edit keeps the edit; the server answers for it later.
    assert phone.store.get("account", ids[1]).fields == {"address1_city": "Kept edit"}  # type: ignore[union-attr]
    await phone.engine.sync()
    [rejected] = phone.store.rejections()
    assert rejected.code == "not_found"


async def test_checkpoint_too_old_resyncs_keeping_unsynced_changes(
    devices: Devices, server: FakeServer
) -> None:
    ids = seed(server, 7)
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("account", ids[0], {"address1_city": "Unsynced"})
    created = phone.store.upsert("account", None, {"name": "Offline new", "territory": "IT-NW"})
    # While the phone is away: changes, and deletes whose tombstones are then compacted.
    server.write("account", ids[3], {"name": "Changed"})
    server.write("account", ids[4], {}, delete=True)
    server.records.pop(("account", ids[4]))
    server.write("account", ids[5], {"territory": "FR-IDF"})
    server.oldest_seq = server.seq
    phone.transport.drop_push = "before"
    with pytest.raises(NetworkError):
        await phone.engine.sync()
    await phone.engine.sync()
    assert any(isinstance(e, ResyncStarted) for e in phone.events)
    assert visible(phone) == server_view(server)
    assert server.records[("account", ids[0])].fields["address1_city"] == "Unsynced"
    assert server.records[("account", created.id)].fields["name"] == "Offline new"
    assert ids[4] not in visible(phone) and ids[5] not in visible(phone)
    assert (await phone.engine.sync()).checksum_ok is True


async def test_revoked_device_wipes_itself(devices: Devices, server: FakeServer) -> None:
    seed(server, 2)
    phone = devices.open("phone")
    await phone.engine.sync()
    path = phone.db.path
    server.revoked.add("phone")
    phone.engine._registered = True
    with pytest.raises(DeviceRevokedError):
        await phone.engine.sync()
    assert phone.engine.wiped
    assert any(isinstance(e, ReplicaWiped) for e in phone.events)
    assert not key_path_for(path).exists()
    assert not any(f.exists() for f in database_files(path))
    with pytest.raises(SyncStoppedError):
        await phone.engine.sync()


async def test_bootstrap_resumes_after_a_dropped_stream(
    devices: Devices, server: FakeServer
) -> None:
    seed(server, 10)  # 4 batches of 3
    phone = devices.open("phone")
    phone.transport.drop_bootstrap_after = 2
    with pytest.raises(NetworkError):
        await phone.engine.sync()
    assert phone.db.count_records() == 6
    token = phone.db.get_state(BOOT_RESUME_KEY)
    assert isinstance(token, str) and token.endswith(rid(6))
    assert phone.db.get_state(BOOT_COUNT_KEY) == 6  # an int, committed with its batch
    assert phone.db.get_state(CHECKPOINT_KEY) is None
    done = await phone.engine.sync()
    assert phone.transport.bootstrap_resumes == [None, token]
    assert visible(phone) == server_view(server)
    assert done.checksum_ok is True


def replica_indexes(device: Device) -> set[str]:
    return {
        name
        for (name,) in device.db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'"
            " AND sql IS NOT NULL"
        )
    }


async def test_a_first_bootstrap_loads_without_indexes_and_builds_them_at_the_end(
    devices: Devices, server: FakeServer
) -> None:
    seed(server, 10)
    phone = devices.open("phone")
    before = replica_indexes(phone)
    phone.transport.drop_bootstrap_after = 2
    with pytest.raises(NetworkError):
        await phone.engine.sync()
    assert "records_key" not in replica_indexes(phone)  # deferred while the load goes on
    # The user edits meanwhile: the key comes back before the write (no duplicate).
    mine = phone.store.upsert("account", None, {"name": "Creata offline"})
    assert replica_indexes(phone) == before
    done = await phone.engine.sync()
    assert replica_indexes(phone) == before
    assert phone.db.conn.execute("SELECT count(*) FROM deferred_indexes").fetchone() == (0,)
    assert {k: v for k, v in visible(phone).items() if k != mine.id} == server_view(server)
    assert phone.db.count_records() == 11
    assert done.checksum_ok is True


async def test_a_checksum_mismatch_is_repaired(devices: Devices, server: FakeServer) -> None:
    ids = seed(server, 5)
    phone = devices.open("phone")
    await phone.engine.sync()
    # The server changes records without a feed entry (a lost change): the device's
    # checksums no longer match.
    server.write("account", ids[1], {"name": "silent"})
    server.write("account", ids[2], {}, delete=True)
    del server.feed[-2:]
    done = await phone.engine.sync()
    assert any(
        isinstance(e, ResyncStarted) and e.reason == "checksum_mismatch" for e in phone.events
    )
    assert done.checksum_ok is True
    assert visible(phone) == server_view(server)


async def test_a_stale_checksum_book_is_rebuilt_without_a_resync(
    devices: Devices, server: FakeServer
) -> None:
    seed(server, 4)
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.db.conn.execute("DELETE FROM channel_checksums")
    done = await phone.engine.sync()
    assert done.checksum_ok is True
    assert not any(isinstance(e, ResyncStarted) for e in phone.events)


async def test_pending_push_result_arrives_with_the_pull(
    devices: Devices, server: FakeServer
) -> None:
    phone = devices.open("phone")
    await phone.engine.sync()
    view = phone.store.upsert("lead", None, {"subject": "late", "territory": "IT-NW"})
    phone.transport.pending_pushes = 1
    await phone.engine.sync()
    assert phone.store.pending() == []
    assert phone.store.get("lead", view.id).version == 1  # type: ignore[union-attr]
    assert server.applied == ["phone:1"]


async def test_applied_result_rebases_later_edits_to_avoid_self_conflicts(
    devices: Devices, server: FakeServer
) -> None:
    server.policy = EntityPolicy(default="manual")
    ids = seed(server, 1)
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("account", ids[0], {"address1_city": "One"})
    phone.transport.pending_pushes = 1  # result comes later; meanwhile another edit
    phone.engine._registered = True
    await phone.engine._push()
    phone.store.upsert("account", ids[0], {"address1_city": "Two"})
    await phone.engine.sync()
    assert server.records[("account", ids[0])].fields["address1_city"] == "Two"
    assert not any(isinstance(e, ConflictResolved) for e in phone.events)


async def test_results_of_an_old_changeset_are_ignored(
    devices: Devices, server: FakeServer
) -> None:
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("lead", None, {"subject": "a", "territory": "IT-NW"})
    await phone.engine.sync()
    # The same stored result comes again with every pull until the checkpoint passes it.
    with phone.store.transaction() as conn:
        from client_sdk.sync import ChecksumDeltas

        events = phone.engine.writer.apply_results(
            conn, [server.results["phone:1"][1]], ChecksumDeltas()
        )
    assert events == []


async def test_background_sync_wakes_on_pokes_and_backs_off(
    devices: Devices, server: FakeServer, eventually: Any
) -> None:
    phone = devices.open(
        "phone", config=SyncConfig(poll_interval_s=3600, backoff_base_s=0.01, backoff_cap_s=0.05)
    )
    failures: list[SyncFailed] = []
    phone.engine.events.subscribe(
        lambda e: failures.append(e) if isinstance(e, SyncFailed) else None
    )
    task = phone.engine.start()
    try:
        await eventually(lambda: phone.engine.checkpoint is not None, within=5)
        server.write("account", rid(1), {"name": "Poked", "territory": "IT-NW"})
        await phone.transport.poke_queue.put(server.seq)
        await eventually(lambda: phone.store.get("account", rid(1)) is not None, within=5)
        # A network failure is retried by the loop on its own after a back-off.
        server.write("account", rid(2), {"name": "After", "territory": "IT-NW"})
        phone.transport.drop_pull = True
        phone.engine.request_sync()
        await eventually(lambda: failures, within=5)
        assert failures[0].code == "network_error" and failures[0].retryable
        await eventually(lambda: phone.store.get("account", rid(2)) is not None, within=5)
        # A local write wakes it too.
        view = phone.store.upsert("lead", None, {"subject": "bg", "territory": "IT-NW"})
        await eventually(lambda: ("lead", view.id) in server.records, within=5)
    finally:
        await phone.engine.stop()
    assert task.done()


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    assert backoff_delay(1, 1.0, 300.0, lambda: 0.0) == 0.5
    assert backoff_delay(1, 1.0, 300.0, lambda: 1.0) == 1.0
    assert backoff_delay(4, 1.0, 300.0, lambda: 1.0) == 8.0
    assert backoff_delay(40, 1.0, 300.0, lambda: 1.0) == 300.0
    assert backoff_delay(10_000, 1.0, 300.0, lambda: 0.5) == 225.0


async def test_checksum_book_matches_a_rebuild_after_mixed_traffic(
    devices: Devices, server: FakeServer
) -> None:
    ids = seed(server, 6)
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("account", ids[0], {"name": "local"})
    phone.store.delete("account", ids[1])
    server.write("account", ids[0], {"address1_city": "x"})
    server.write("account", ids[2], {}, delete=True)
    server.write("account", ids[3], {"territory": "ES-MD"})
    await phone.engine.sync()
    grants = ["territory:IT-NW"]
    before = phone.engine.checksums(grants)
    with phone.store.transaction() as conn:
        ChecksumBook.rebuild(conn)
    assert phone.engine.checksums(grants) == before == server.checksums(frozenset(grants))


async def test_a_request_the_server_refuses_fails_the_cycle_with_its_code(
    devices: Devices, server: FakeServer
) -> None:
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("lead", None, {"subject": "x", "territory": "IT-NW"})
    phone.transport.refuse = ChangesetRefusedError("403", status=403, server_code="forbidden")
    with pytest.raises(RequestRejectedError) as info:
        await phone.engine.sync()
    assert info.value.server_code == "forbidden"
    assert phone.store.pending()[0].status == "inflight"  # nothing dead-lettered
    await phone.engine.sync()
    assert phone.store.pending() == []


def test_uuid_helper_is_canonical() -> None:
    assert uuid.UUID(rid(5)).version == 4


async def test_a_changeset_refused_as_a_whole_dead_letters_all_of_it(
    devices: Devices, server: FakeServer
) -> None:
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("lead", None, {"subject": "a", "territory": "IT-NW"})
    phone.store.upsert("lead", None, {"subject": "b", "territory": "IT-NW"})
    phone.transport.refuse = ChangesetRefusedError(
        "413", status=413, server_code="payload_too_large"
    )
    await phone.engine.sync()
    assert [r.code for r in phone.store.rejections()] == ["payload_too_large"] * 2
    assert server.applied == []


async def test_an_unregistered_device_registers_again_and_resends(
    devices: Devices, server: FakeServer
) -> None:
    phone = devices.open("phone")
    await phone.engine.sync()
    phone.store.upsert("lead", None, {"subject": "a", "territory": "IT-NW"})
    phone.transport.refuse = ChangesetRefusedError(
        "403", status=403, server_code="device_not_registered"
    )
    await phone.engine.sync()
    assert phone.transport.registered == ["phone", "phone"]
    assert [p.changeset_id for p in phone.transport.pushes] == ["phone:1", "phone:1"]
    assert server.applied == ["phone:1"] and phone.store.pending() == []


async def test_a_snapshot_out_of_key_order_still_converges(
    devices: Devices, server: FakeServer
) -> None:
    seed(server, 10)
    phone = devices.open("phone")

    def reverse(batch: BootstrapBatch) -> BootstrapBatch:
        batch.records.reverse()
        return batch

    phone.transport.mangle_bootstrap = reverse
    done = await phone.engine.sync()
    assert visible(phone) == server_view(server)
    assert done.checksum_ok is True
    assert [h.title for h in phone.store.search("cliente 7")] == ["Cliente 7"]


async def test_a_malformed_snapshot_record_fails_its_batch_atomically(
    devices: Devices, server: FakeServer
) -> None:
    seed(server, 10)  # batches of 3
    phone = devices.open("phone")

    def spoil_second(batch: BootstrapBatch) -> BootstrapBatch:
        if batch.total == 6:
            batch.records[1].version = -1
        return batch

    phone.transport.mangle_bootstrap = spoil_second
    with pytest.raises(InvalidRecordError):
        await phone.engine.sync()
    # The first batch committed with its resume token; nothing of the second did.
    assert phone.db.count_records() == 3
    assert phone.db.get_state(BOOT_COUNT_KEY) == 3
    assert str(phone.db.get_state(BOOT_RESUME_KEY)).endswith(rid(3))
    assert [h.title for h in phone.store.search("cliente 4")] == []
    phone.transport.mangle_bootstrap = None
    done = await phone.engine.sync()
    assert visible(phone) == server_view(server)
    assert done.checksum_ok is True


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["account", "contact", "quote", "systemuser"]),
    st.text(min_size=1, max_size=40),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.dictionaries(st.text(max_size=8), _JSON, max_size=6),
)
def test_the_hash_of_stored_fields_is_the_protocol_record_hash(
    entity: str, id_: str, version: int, fields: dict[str, Any]
) -> None:
    record = RecordChange(entity=entity, id=id_, version=version, seq=1, fields=fields)
    try:
        (stored,) = prepare_records([record]).fields_json
    except InvalidRecordError:
        return  # not storable (e.g. a lone surrogate): nothing to hash
    assert encoded_record_hash(entity, id_, version, stored) == record_hash(
        entity, id_, version, fields
    )


def test_prepared_batch_deltas_are_the_records_checksums() -> None:
    changes = [
        RecordChange(entity="account", id=rid(i), version=i, seq=i, fields={"name": f"n{i}"})
        for i in range(1, 5)
    ]
    changes[1].channels = ("a", "b")
    changes[2].channels = ("b",)
    changes[3].deleted = True
    changes[3].channels = ("a",)
    prepared = prepare_snapshot_batch(BootstrapBatch(records=changes, resume="r"))
    expected = ChecksumDeltas()
    for c in changes[:3]:
        expected.add(c.channels, record_hash(c.entity, c.id, c.version, c.fields))
    assert prepared.live is not None and prepared.live.count == 3
    assert prepared.deltas.by_channel == expected.by_channel
    # Snapshot batches come in sequence order: key order does not matter.
    reversed_ = prepare_snapshot_batch(BootstrapBatch(records=changes[::-1], resume="r"))
    assert reversed_.live is not None and reversed_.deltas.by_channel == expected.by_channel


def test_checksum_book_wraps_digests_modulo_2_64(tmp_path: Path) -> None:
    db = open_replica(tmp_path / "book.db", KEK)
    try:
        hashes = [2**64 - 1, 2**63, 2**63 - 1, 1, 2**64 - 2]
        expected: dict[str, ChannelChecksum] = {}
        for step, h in enumerate(hashes * 3):
            deltas = ChecksumDeltas()
            channels = ["a", f"c{step % 4}"]
            if step % 3 == 2:
                deltas.remove(channels, h)
                for c in channels:
                    expected[c] = expected.get(c, ChannelChecksum()).remove(h)
            else:
                deltas.add(channels, h)
                for c in channels:
                    expected[c] = expected.get(c, ChannelChecksum()).add(h)
            with db.transaction() as conn:
                ChecksumBook.commit(conn, deltas)
                assert not deltas.by_channel
                assert ChecksumBook.read(conn, [*expected, "never"]) == {
                    **expected,
                    "never": ChannelChecksum(),
                }
    finally:
        db.close()


async def test_a_record_delivered_twice_in_a_first_bootstrap_is_stored_once(
    devices: Devices, server: FakeServer
) -> None:
    seed(server, 10)  # batches of 3
    phone = devices.open(
        "phone",
        config=SyncConfig(pull_limit=4, push_batch=3, pending_wait_s=0, verify_checksums=False),
    )
    first: list[RecordChange] = []

    def repeat(batch: BootstrapBatch) -> BootstrapBatch:
        # Snapshots are in sequence order: a record changed meanwhile comes again.
        if batch.total == 3:
            first.extend(batch.records)
        elif batch.total == 6:
            batch.records.append(first[0])
        return batch

    phone.transport.mangle_bootstrap = repeat
    await phone.engine.sync()
    assert visible(phone) == server_view(server)
    # No check afterwards (it would rebuild a wrong book): the record was counted once.
    with phone.db.transaction() as conn:
        booked = conn.execute("SELECT * FROM channel_checksums ORDER BY 1").fetchall()
        ChecksumBook.rebuild(conn)
        assert conn.execute("SELECT * FROM channel_checksums ORDER BY 1").fetchall() == booked
    assert phone.db.count_records() == 10
    assert [h.title for h in phone.store.search("cliente 1")] == ["Cliente 1"]


async def test_an_interrupted_resync_still_purges_its_ghosts(
    devices: Devices, server: FakeServer
) -> None:
    ids = seed(server, 10)
    phone = devices.open("phone")
    await phone.engine.sync()
    server.write("account", ids[1], {"territory": "FR-IDF"})  # leaves the scope
    server.oldest_seq = server.seq  # ... and the phone's checkpoint is too old
    phone.transport.drop_bootstrap_after = 1
    with pytest.raises(NetworkError):
        await phone.engine.sync()
    assert phone.db.get_state(BOOT_MODE_KEY) == "resync"
    done = await phone.engine.sync()
    assert ids[1] not in visible(phone)
    assert visible(phone) == server_view(server)
    assert done.checksum_ok is True
    assert phone.db.conn.execute("SELECT count(*) FROM snapshot_seen").fetchone() == (0,)
