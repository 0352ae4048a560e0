"""The admin app: admin-only API, metrics, health; revocation reaches the sync app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from backend.admin.app import create_admin_app
from backend.gateway.runtime import GatewayRuntime
from backend.store.base import RecordStore
from backend.store.types import AuditEntry, ConflictRecord, WriteBatch

from .conftest import GARCIA, AuthHeaders

Client = httpx.AsyncClient


@pytest.fixture
async def admin(runtime: GatewayRuntime, client: Client) -> AsyncIterator[Client]:
    """The admin app over the sync app's runtime (``client`` keeps the runtime started)."""
    app = create_admin_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
        yield c


@pytest.mark.parametrize(
    "path", ["/admin/devices", "/admin/conflicts", "/admin/audit", "/admin/health"]
)
async def test_admin_endpoints_need_the_admin_profile(
    admin: Client, auth: AuthHeaders, path: str
) -> None:
    assert (await admin.get(path)).status_code == 401
    r = await admin.get(path, headers=auth("claire.martin"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert (await admin.get(path, headers=auth("lucia.garcia"))).status_code == 200


async def test_revoking_from_the_admin_port_wipes_the_device(
    admin: Client, client: Client, auth: AuthHeaders
) -> None:
    await client.get("/v1/sync/pull", params={"device_id": "phone-9"}, headers=auth("marco.rossi"))
    listed = (await admin.get("/admin/devices", headers=auth("lucia.garcia"))).json()
    assert [d["device_id"] for d in listed] == ["phone-9"]
    r = await admin.post(
        "/admin/devices/phone-9/revoke", json={"reason": "stolen"}, headers=auth("lucia.garcia")
    )
    assert r.status_code == 200 and r.json()["revoked"] is True
    pulled = await client.get(
        "/v1/sync/pull", params={"device_id": "phone-9"}, headers=auth("marco.rossi")
    )
    assert pulled.json()["action"] == "wipe"
    missing = await admin.post("/admin/devices/nope/revoke", headers=auth("lucia.garcia"))
    assert missing.status_code == 403


async def test_conflicts_audit_and_keep_server_resolution(
    admin: Client, auth: AuthHeaders, store: RecordStore
) -> None:
    conflict = ConflictRecord(
        id="c1", entity="account", record_id="r1", field="description", owner="u1"
    )
    audit = AuditEntry(entity="account", record_id="r1", user="u1", outcome="conflict")
    await store.apply(WriteBatch(conflicts=[conflict], audit=[audit]))
    headers = auth("lucia.garcia")
    listed = (
        await admin.get("/admin/conflicts", params={"status": "open"}, headers=headers)
    ).json()
    assert [c["id"] for c in listed] == ["c1"]
    r = await admin.post(
        "/admin/conflicts/resolve",
        json={"conflict_id": "c1", "resolution": "keep_server"},
        headers=headers,
    )
    assert r.status_code == 200 and r.json()["conflict"]["status"] == "resolved"
    assert r.json()["conflict"]["resolved_by"] == GARCIA.sub
    query = {"entity": "account", "record_id": "r1"}
    trail = (await admin.get("/admin/audit", params=query, headers=headers)).json()
    assert [a["outcome"] for a in trail] == ["conflict"]
    unknown = await admin.post(
        "/admin/conflicts/resolve",
        json={"conflict_id": "zzz", "resolution": "keep_server"},
        headers=headers,
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    bad = await admin.post(
        "/admin/conflicts/resolve", json={"conflict_id": "c1", "resolution": "x"}, headers=headers
    )
    assert bad.status_code == 400
    half = await admin.get("/admin/audit", params={"record_id": "r1"}, headers=headers)
    assert (half.status_code, half.json()["code"]) == (400, "invalid_payload")


async def test_metrics_and_health(admin: Client, client: Client, auth: AuthHeaders) -> None:
    await client.get("/v1/sync/pull", params={"device_id": "d1"}, headers=auth("marco.rossi"))
    await client.get("/v1/sync/pull", params={"device_id": "d1"})
    text = (await admin.get("/metrics")).text
    assert 'crmsync_http_requests_total{method="GET",route="/v1/sync/pull",status="200"}' in text
    assert 'crmsync_auth_failures_total{code="unauthorized"}' in text
    assert "crmsync_pull_changes_bucket" in text
    health = (await admin.get("/admin/health", headers=auth("lucia.garcia"))).json()
    assert health["head_seq"] >= 0 and "SYNC_CHANGESETS" in health["streams"]
    assert (await admin.get("/readyz")).json()["ready"] is True
