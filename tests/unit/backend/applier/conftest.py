"""Fixtures of the applier unit tests: builders, an in-memory store and a recording broker.

The in-memory store implements only what the applier uses (records, results, compaction)
with the port's compare-and-swap semantics; the real adapters are exercised by the
integration tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from backend.applier.config import ApplierConfig
from backend.applier.messages import Actor, ChangesetEnvelope
from backend.applier.service import Applier
from backend.messaging.messages import CoreMessage, PublishAck
from backend.store.base import RecordStore
from backend.store.errors import VersionConflictError
from backend.store.types import (
    AuditEntry,
    BlobMeta,
    ChangePage,
    CommitResult,
    ConflictRecord,
    WriteBatch,
)
from sync_protocol.changesets import ChangesetResult, Mutation, PushRequest
from sync_protocol.checksum import ChannelChecksum
from sync_protocol.default_rules import default_rules
from sync_protocol.hlc import HLC
from sync_protocol.records import Record
from sync_protocol.rules import SyncRules

NOW = 1_800_000_000_000
REP = "00000000-0000-4000-8000-000000000001"  # marco.rossi, sales_rep, IT-NW
OTHER_REP = "00000000-0000-4000-8000-0000000000aa"
MANAGER = "00000000-0000-4000-8000-000000000004"  # claire.martin, dealer_manager, FR


def _copy(record: Record) -> Record:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(record), type=Record)


class MemoryStore(RecordStore):
    """Just enough of the store port for the applier, with real CAS and sequences."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], Record] = {}
        self.results: dict[str, ChangesetResult] = {}
        self.conflict_rows: list[ConflictRecord] = []
        self.audit: list[AuditEntry] = []
        self.state: dict[str, bytes] = {}
        self.seq = 0
        self.applies = 0
        self.compactions: list[int] = []
        # Hook run inside apply before the CAS check (lets a test slip in a rival write).
        self.before_apply: Callable[[], None] | None = None

    async def get(self, entity: str, id: str) -> Record | None:
        r = self.records.get((entity, id))
        return _copy(r) if r is not None else None

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        return {k: _copy(self.records[k]) for k in keys if k in self.records}

    async def apply(self, batch: WriteBatch) -> CommitResult:
        await asyncio.sleep(0)
        if self.before_apply is not None:
            hook, self.before_apply = self.before_apply, None
            hook()
        stale = [
            (w.record.entity, w.record.id)
            for w in batch.writes
            if (
                self.records.get((w.record.entity, w.record.id)) or Record(entity="", id="")
            ).version
            != w.expected_version
        ]
        if stale:
            raise VersionConflictError(stale)
        if batch.changeset is not None and batch.changeset.changeset_id in self.results:
            raise VersionConflictError([])
        self.applies += 1
        first = self.seq + 1
        out = []
        for w in batch.writes:
            self.seq += 1
            rec = _copy(w.record)
            rec.seq = self.seq
            self.records[(rec.entity, rec.id)] = rec
            out.append(_copy(rec))
        if not batch.writes:
            self.seq += 1
        if batch.changeset is not None:
            stored = msgspec.structs.replace(batch.changeset, seq=self.seq)
            self.results[stored.changeset_id] = _roundtrip(stored)
        self.conflict_rows.extend(batch.conflicts)
        self.audit.extend(batch.audit)
        self.state.update(batch.state)
        return CommitResult(records=out, first_seq=first, last_seq=self.seq)

    async def changeset_result(self, changeset_id: str) -> ChangesetResult | None:
        r = self.results.get(changeset_id)
        return _roundtrip(r) if r is not None else None

    async def compact(self, older_than_ms: int) -> int:
        self.compactions.append(older_than_ms)
        return 3

    async def changes(
        self,
        channels: Collection[str],
        after_seq: int,
        limit: int = 1000,
        with_checksums: bool = False,
    ) -> ChangePage:
        raise NotImplementedError

    async def scan(
        self, channels: Collection[str], after_seq: int = 0, limit: int = 1000
    ) -> list[Record]:
        raise NotImplementedError

    async def head_seq(self) -> int:
        return self.seq

    async def oldest_seq(self) -> int:
        return 0

    async def checksums(self, channels: Collection[str]) -> dict[str, ChannelChecksum]:
        raise NotImplementedError

    async def device_results(self, device_id: str, after_seq: int) -> list[ChangesetResult]:
        raise NotImplementedError

    async def conflicts(
        self, status: str | None = None, owner: str | None = None, limit: int = 100
    ) -> list[ConflictRecord]:
        return list(self.conflict_rows)

    async def resolve_conflict(self, conflict_id: str, resolution: str, by: str) -> ConflictRecord:
        raise NotImplementedError

    async def audit_trail(
        self, entity: str | None = None, record_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        return list(self.audit)

    async def get_state(self, key: str) -> bytes | None:
        return self.state.get(key)

    async def put_state(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.state.pop(key, None)
        else:
            self.state[key] = value

    async def list_state(self, prefix: str) -> dict[str, bytes]:
        return {k: v for k, v in self.state.items() if k.startswith(prefix)}

    async def put_blob(self, meta: BlobMeta, data: bytes) -> None:
        raise NotImplementedError

    async def get_blob(self, sha256: str) -> tuple[BlobMeta, bytes] | None:
        raise NotImplementedError


def _roundtrip(result: ChangesetResult) -> ChangesetResult:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(result), type=ChangesetResult)


@dataclass
class Published:
    """One message the recording broker saw."""

    subject: str
    data: bytes
    msg_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    jetstream: bool = False


class RecordingBroker:
    """A broker double that records publishes and de-duplicates JetStream ones by msg id."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.seen_ids: set[str] = set()
        self.fail_jetstream = False

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> PublishAck:
        if self.fail_jetstream:
            from backend.messaging.errors import BrokerTimeoutError

            raise BrokerTimeoutError("no ack")
        duplicate = msg_id is not None and msg_id in self.seen_ids
        if msg_id is not None:
            self.seen_ids.add(msg_id)
        if not duplicate:
            self.published.append(Published(subject, data, msg_id, dict(headers or {}), True))
        return PublishAck(stream="S", seq=len(self.published), duplicate=duplicate)

    async def publish_core(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        # A plain publish on a stream's subject is stored too, de-duplicated by its header.
        msg_id = (headers or {}).get("Nats-Msg-Id")
        if subject.startswith("sync.") and msg_id is not None:
            if msg_id in self.seen_ids:
                return
            self.seen_ids.add(msg_id)
            self.published.append(Published(subject, data, msg_id, dict(headers or {}), True))
            return
        self.published.append(Published(subject, data, None, dict(headers or {})))

    def on(self, prefix: str) -> list[Published]:
        """Messages whose subject starts with ``prefix``."""
        return [p for p in self.published if p.subject.startswith(prefix)]

    async def request(self, *args: Any, **kwargs: Any) -> CoreMessage:
        raise NotImplementedError

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ensure_streams(self) -> None:
        return None


@pytest.fixture
def rules() -> SyncRules:
    return default_rules()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


@pytest.fixture
def applier(store: MemoryStore, broker: RecordingBroker, rules: SyncRules) -> Applier:
    return Applier(
        store,
        broker,  # type: ignore[arg-type]
        rules,
        now=lambda: NOW,
        config=ApplierConfig(max_retries=3),
    )


def clock(ms: int, node: str = "dev-a", counter: int = 0) -> HLC:
    return HLC(NOW + ms, counter, node)


@pytest.fixture
def ts() -> Callable[..., HLC]:
    """``ts(ms, node="dev-a")``: an HLC ``ms`` after NOW."""
    return clock


@pytest.fixture
def envelope() -> Callable[..., ChangesetEnvelope]:
    """``envelope(mutations, counter=1, user=REP, profile="sales_rep", channels=None)``."""

    def build(
        mutations: list[Mutation],
        counter: int = 1,
        user: str = REP,
        profile: str = "sales_rep",
        channels: list[str] | None = None,
        device: str = "dev-a",
    ) -> ChangesetEnvelope:
        return ChangesetEnvelope(
            push=PushRequest(
                protocol=1,
                changeset_id=f"{device}:{counter}",
                device_id=device,
                mutations=mutations,
            ),
            actor=Actor(
                user=user,
                profile=profile,
                channels=channels if channels is not None else [f"owner:{user}"],
                device_id=device,
            ),
            received_ms=NOW,
        )

    return build


@pytest.fixture
def stored_account() -> Callable[..., Record]:
    """``stored_account(id, owner=REP, territory="IT-NW", version=1, **fields)``."""

    def build(
        id: str, owner: str = REP, territory: str = "IT-NW", version: int = 1, **fields: Any
    ) -> Record:
        values = {
            "name": "Rossi S.p.A.",
            "description": "Cliente storico",
            "ownerid": owner,
            "territory": territory,
            "country": territory[:2],
            **fields,
        }
        up = HLC(NOW - 10_000, 0, "upstream:dynamics")
        return Record(
            entity="account",
            id=id,
            version=version,
            seq=version,
            fields=values,
            clocks={k: up for k in values},
            field_versions={k: 1 for k in values},
            channels=default_rules().channels_for("account", values),
            upstream_etag='W/"100"',
        )

    return build
