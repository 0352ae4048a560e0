"""Metadata: schemas, labels in six languages, the caller's permissions, ETag caching."""

from __future__ import annotations

import httpx
import msgspec

from backend.gateway.metadata import Metadata
from sync_protocol.entities import LANGUAGES, SCHEMAS

from .conftest import AuthHeaders


async def test_schemas_labels_and_permissions(client: httpx.AsyncClient, auth: AuthHeaders) -> None:
    r = await client.get("/v1/metadata", headers=auth("marco.rossi"))
    assert r.status_code == 200
    doc = msgspec.json.decode(r.content, type=Metadata)
    assert set(doc.entities) == set(SCHEMAS)
    assert doc.languages == list(LANGUAGES)
    industry = doc.entities["account"].fields["industrycode"]
    assert industry.kind == "choice"
    assert set(industry.options["1"]) == set(LANGUAGES)
    assert industry.options["1"]["de"] == "Buchhaltung"
    assert doc.entities["account"].labels["pl"] == "Konto"
    perm = doc.entities["account"].permission
    assert perm.create and perm.update and not perm.delete
    assert "name" in perm.fields and "ownerid" not in perm.fields
    assert doc.entities["quote"].permission.fields == ["description"]
    tech = msgspec.json.decode(
        (await client.get("/v1/metadata", headers=auth("jonas.weber"))).content, type=Metadata
    )
    assert tech.entities["account"].permission.fields == []


async def test_etag_revalidation(client: httpx.AsyncClient, auth: AuthHeaders) -> None:
    first = await client.get("/v1/metadata", headers=auth("marco.rossi"))
    etag = first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    again = await client.get("/v1/metadata", headers={**auth("marco.rossi"), "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = await client.get("/v1/metadata", headers=auth("claire.martin"))
    assert other.headers["etag"] != etag  # permissions differ per profile


async def test_msgspec_format(client: httpx.AsyncClient, auth: AuthHeaders) -> None:
    r = await client.get("/v1/metadata", headers={**auth("admin"), "Accept": "application/msgpack"})
    doc = msgspec.msgpack.decode(r.content, type=Metadata)
    assert doc.profile == "admin" and doc.entities["lead"].permission.delete


async def test_metadata_needs_a_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/metadata")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
