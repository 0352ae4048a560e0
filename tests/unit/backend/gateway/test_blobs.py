"""Attachments: content-addressed, size-limited, visible only with their record."""

from __future__ import annotations

import hashlib

import httpx
import msgspec
import pytest

from backend.config import GatewayConfig
from backend.store.base import RecordStore
from backend.store.types import RecordWrite, WriteBatch

from .conftest import KOWALSKA, ROSSI, AuthHeaders, Seed, owned_by

Client = httpx.AsyncClient
MISSING_ID = "00000000-0000-4000-8000-00000000abcd"


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return GatewayConfig.for_tests(push_wait_ms=200, blob_max_bytes=1024)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def put(
    client: Client, headers: dict[str, str], data: bytes, entity: str, id: str, digest: str = ""
) -> httpx.Response:
    return await client.put(
        f"/v1/blobs/{digest or sha(data)}",
        params={"entity": entity, "id": id, "device_id": "dev-a"},
        content=data,
        headers={**headers, "Content-Type": "image/png"},
    )


async def test_upload_and_download_for_a_visible_record(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    rec = await seed("account", **owned_by(ROSSI, name="A"))
    data = b"\x89PNG fake image"
    r = await put(client, auth("marco.rossi"), data, "account", rec.id)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == len(data)
    assert (await put(client, auth("marco.rossi"), data, "account", rec.id)).status_code == 200
    got = await client.get(
        f"/v1/blobs/{sha(data)}", params={"device_id": "dev-a"}, headers=auth("marco.rossi")
    )
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "image/png"
    assert got.headers["etag"] == f'"{sha(data)}"'


async def test_out_of_scope_looks_exactly_like_missing(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    theirs = await seed("account", **owned_by(KOWALSKA, name="K"))
    data = b"secret contract"
    r = await put(client, auth("anna.kowalska"), data, "account", theirs.id)
    assert r.status_code == 201
    hidden = await client.get(
        f"/v1/blobs/{sha(data)}", params={"device_id": "dev-r"}, headers=auth("marco.rossi")
    )
    missing = await client.get(
        f"/v1/blobs/{sha(b'nothing')}", params={"device_id": "dev-r"}, headers=auth("marco.rossi")
    )
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    # Nor can Rossi attach to her record, or to a record that does not exist.
    up_hidden = await client.put(
        f"/v1/blobs/{sha(b'x')}",
        params={"entity": "account", "id": theirs.id, "device_id": "dev-r"},
        content=b"x",
        headers=auth("marco.rossi"),
    )
    up_missing = await client.put(
        f"/v1/blobs/{sha(b'x')}",
        params={
            "entity": "account",
            "id": "00000000-0000-4000-8000-00000000abcd",
            "device_id": "dev-r",
        },
        content=b"x",
        headers=auth("marco.rossi"),
    )
    assert up_hidden.status_code == up_missing.status_code == 404
    assert up_hidden.json() == up_missing.json()


async def test_hash_size_and_permission_checks(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    rec = await seed("account", **owned_by(ROSSI, name="A"))
    r = await put(client, auth("marco.rossi"), b"abc", "account", rec.id, digest=sha(b"abd"))
    assert (r.status_code, r.json()["code"]) == (422, "blob_hash_mismatch")
    big = b"x" * 2000
    r = await put(client, auth("marco.rossi"), big, "account", rec.id)
    assert (r.status_code, r.json()["code"]) == (413, "payload_too_large")
    r = await put(client, auth("marco.rossi"), b"abc", "invoice", rec.id)
    assert (r.status_code, r.json()["code"]) == (422, "unknown_entity")
    r = await put(client, auth("marco.rossi"), b"abc", "account", "nope")
    assert (r.status_code, r.json()["code"]) == (422, "invalid_record_id")
    tech_rec = await seed("account", ownerid=ROSSI.sub, territory="DE-BY", country="DE", name="B")
    r = await client.put(
        f"/v1/blobs/{sha(b'abc')}",
        params={"entity": "account", "id": tech_rec.id, "device_id": "dev-t"},
        content=b"abc",
        headers=auth("jonas.weber"),
    )
    assert (r.status_code, r.json()["code"]) == (403, "operation_not_allowed")
    r = await client.get(
        "/v1/blobs/NOTAHASH", params={"device_id": "dev-a"}, headers=auth("marco.rossi")
    )
    assert r.status_code == 404


async def test_the_same_bytes_on_another_record_conflict(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    a = await seed("account", **owned_by(ROSSI, name="A"))
    b = await seed("account", **owned_by(ROSSI, name="B"))
    assert (await put(client, auth("marco.rossi"), b"same", "account", a.id)).status_code == 201
    r = await put(client, auth("marco.rossi"), b"same", "account", b.id)
    assert (r.status_code, r.json()["code"]) == (409, "blob_exists")


async def test_a_deleted_record_hides_its_attachments(
    client: Client, auth: AuthHeaders, seed: Seed, store: RecordStore
) -> None:
    rec = await seed("account", **owned_by(ROSSI, name="A"))
    assert (await put(client, auth("marco.rossi"), b"doc", "account", rec.id)).status_code == 201
    gone = msgspec.structs.replace(rec, version=2, deleted=True)
    await store.apply(WriteBatch(writes=[RecordWrite(record=gone, expected_version=1)]))
    r = await client.get(
        f"/v1/blobs/{sha(b'doc')}", params={"device_id": "dev-a"}, headers=auth("marco.rossi")
    )
    assert r.status_code == 404
