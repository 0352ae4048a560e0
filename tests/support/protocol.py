"""Builders for protocol tests: records, mutations and merge contexts."""

from __future__ import annotations

from typing import Any

import pytest

from sync_protocol.changesets import Mutation
from sync_protocol.hlc import HLC
from sync_protocol.merge import MergeContext
from sync_protocol.policy import EntityPolicy, WritePermission
from sync_protocol.records import Record

ACCOUNT_ID = "3f1c2a9e-8b7d-4c6e-9a5b-1d2e3f4a5b6c"
NOW = 1_800_000_000_000


def ts(ms: int, node: str = "dev-a", counter: int = 0) -> HLC:
    return HLC(NOW + ms, counter, node)


def up(ms: int) -> HLC:
    return HLC(NOW + ms, 0, "upstream:dynamics")


def mut(
    fields: dict[str, Any] | None = None,
    base: int = 1,
    clock: HLC | None = None,
    op: str = "upsert",
    entity: str = "account",
    id: str = ACCOUNT_ID,
) -> Mutation:
    return Mutation(
        entity=entity,
        id=id,
        op=op,  # type: ignore[arg-type]
        base_version=base,
        fields=fields or {},
        clock=clock or ts(10),
    )


def ctx(
    policy: EntityPolicy | None = None,
    permission: WritePermission | None = None,
    source: str = "device",
    now_ms: int = NOW + 1_000,
) -> MergeContext:
    return MergeContext(
        source=source,  # type: ignore[arg-type]
        origin="device:dev-a" if source == "device" else "upstream:dynamics",
        policy=policy or EntityPolicy(),
        permission=permission,
        now_ms=now_ms,
        max_skew_ms=60_000,
    )


@pytest.fixture
def base_record() -> Record:
    """An account at version 1, written by Dynamics at NOW."""
    fields = {
        "name": "Rossi S.p.A.",
        "telephone1": "+39 02 1234",
        "address1_city": "Milano",
        "accountnumber": "IT-001",
        "description": "Cliente storico",
    }
    return Record(
        entity="account",
        id=ACCOUNT_ID,
        version=1,
        seq=1,
        fields=fields,
        clocks={k: up(0) for k in fields},
        field_versions={k: 1 for k in fields},
    )


__all__ = ["ACCOUNT_ID", "NOW", "base_record", "ctx", "mut", "ts", "up"]
