"""Durable service state and content-addressed blobs."""

from __future__ import annotations

import hashlib

import pytest

from backend.store.base import RecordStore
from backend.store.errors import InvalidRequestError
from backend.store.types import BlobMeta, RecordWrite, WriteBatch


async def test_state_values_can_be_set_listed_and_deleted(store: RecordStore) -> None:
    assert await store.get_state("importer/account/delta") is None
    await store.put_state("importer/account/delta", b"token-1")
    await store.put_state("importer/contact/delta", b"token-2")
    await store.put_state("devices/dev-1", b"\x00\x01")
    await store.put_state("importer/account/delta", b"token-3")
    assert await store.get_state("importer/account/delta") == b"token-3"
    assert await store.list_state("importer/") == {
        "importer/account/delta": b"token-3",
        "importer/contact/delta": b"token-2",
    }
    assert await store.list_state("devices/") == {"devices/dev-1": b"\x00\x01"}
    assert await store.list_state("nothing/") == {}
    await store.put_state("devices/dev-1", None)
    assert await store.get_state("devices/dev-1") is None
    await store.put_state("devices/dev-1", None)  # deleting twice is fine


async def test_several_state_values_come_in_one_read(store: RecordStore) -> None:
    await store.put_state("device:a", b"A")
    await store.put_state("revoked:a", b"R")
    await store.put_state("device:b", b"B")

    got = await store.get_states(["device:a", "revoked:a", "device:zz", "device:a"])

    assert got == {"device:a": b"A", "revoked:a": b"R"}
    assert await store.get_states([]) == {}
    many = [f"k{i}" for i in range(1200)]  # more keys than one query takes
    for k in many[::100]:
        await store.put_state(k, k.encode())
    assert await store.get_states(many) == {k: k.encode() for k in many[::100]}


async def test_list_state_treats_the_prefix_literally(store: RecordStore) -> None:
    await store.put_state("a_b/1", b"x")
    await store.put_state("aXb/1", b"y")
    await store.put_state("a%/1", b"z")
    assert await store.list_state("a_b/") == {"a_b/1": b"x"}
    assert await store.list_state("a%") == {"a%/1": b"z"}


async def test_state_in_a_batch_commits_with_its_records(store: RecordStore, rec) -> None:
    await store.apply(
        WriteBatch(
            writes=[RecordWrite(record=rec("r1"), expected_version=0)],
            state={"importer/account/checkpoint": b"page-9"},
        )
    )
    assert await store.get_state("importer/account/checkpoint") == b"page-9"
    assert await store.get("account", "r1") is not None


async def test_blobs_are_stored_once_by_content_hash(store: RecordStore, clock) -> None:
    data = b"%PDF-1.7 quote attachment"
    digest = hashlib.sha256(data).hexdigest()
    meta = BlobMeta(
        sha256=digest,
        size=len(data),
        content_type="application/pdf",
        entity="quote",
        record_id="q1",
    )
    assert await store.get_blob(digest) is None
    await store.put_blob(meta, data)
    await store.put_blob(meta, data)
    found = await store.get_blob(digest)
    assert found is not None
    stored_meta, stored = found
    assert stored == data
    assert (stored_meta.sha256, stored_meta.size, stored_meta.content_type) == (
        digest,
        len(data),
        "application/pdf",
    )
    assert stored_meta.created_ms == clock.now


async def test_a_blob_whose_size_does_not_match_is_refused(store: RecordStore) -> None:
    meta = BlobMeta(
        sha256="0" * 64, size=3, content_type="text/plain", entity="quote", record_id="q1"
    )
    with pytest.raises(InvalidRequestError):
        await store.put_blob(meta, b"four")
    assert await store.get_blob("0" * 64) is None
