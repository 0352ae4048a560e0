"""Couchbase adapter pieces that need no cluster: keys, encoding, provisioning statements."""

from __future__ import annotations

import pytest

from backend.store.config import StoreConfig
from backend.store.couchbase import COLLECTIONS, CouchbaseRecordStore, _pack, _record, record_key
from backend.store.errors import InvalidRequestError, StoreUnavailableError
from backend.store.types import RecordWrite, WriteBatch
from infra.couchbase.provision import INDEXES, index_statements
from sync_protocol.hlc import HLC
from sync_protocol.records import Record

CONFIG = StoreConfig(
    backend="couchbase",
    couchbase_url="couchbase://127.0.0.1",
    couchbase_username="u",
    couchbase_password="p",
    couchbase_bucket="crm",
    couchbase_scope="sync",
    seq_block_size=2,
)


def test_record_documents_round_trip_big_integers_exactly() -> None:
    rec = Record(
        entity="account",
        id="a1",
        version=3,
        fields={"big": 2**63 + 1, "name": "Łódź"},
        clocks={"big": HLC(1_800_000_000_000, 7, "dev-1")},
        channels=["owner:u1"],
    )
    doc = {"seq": 42, "data": _pack(rec)}
    back = _record(doc)
    assert back.fields == rec.fields and back.clocks == rec.clocks
    assert back.seq == 42
    assert record_key("account", "a1") == "account::a1"


def test_index_statements_are_idempotent_and_scoped() -> None:
    statements = dict(index_statements(CONFIG))
    assert set(statements) == {ix.name for ix in INDEXES}
    for sql in statements.values():
        assert "IF NOT EXISTS" in sql and "`crm`.`sync`." in sql
    assert "DISTINCT ARRAY c FOR c IN feed END, seq" in statements["crmsync_feed"]
    with_primary = dict(index_statements(CONFIG, primary_indexes=True))
    assert len(with_primary) == len(INDEXES) + len(COLLECTIONS)


async def test_batches_over_the_block_size_are_refused_before_connecting() -> None:
    store = CouchbaseRecordStore(CONFIG, clock=lambda: 0)
    writes = [
        RecordWrite(record=Record(entity="account", id=f"r{i}", version=1), expected_version=0)
        for i in range(3)
    ]
    with pytest.raises(InvalidRequestError):
        await store.apply(WriteBatch(writes=writes))


async def test_calls_before_start_are_store_unavailable() -> None:
    store = CouchbaseRecordStore(CONFIG, clock=lambda: 0)
    with pytest.raises(StoreUnavailableError):
        await store.get_state("x")
