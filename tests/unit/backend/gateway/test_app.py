"""The app as a whole: problem+json for every failure, health, OpenAPI, devices, dev tokens."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from backend.gateway.runtime import GatewayRuntime
from backend.messaging.errors import BrokerTimeoutError
from backend.store.errors import StoreUnavailableError

from .conftest import ROSSI, AuthHeaders

Client = httpx.AsyncClient


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"] == f"urn:crmsync:problem:{code}"
    assert "Traceback" not in r.text
    return body


@pytest.mark.parametrize(
    ("language", "detail"),
    [
        ("de-DE,de;q=0.9", "Nicht gefunden."),
        ("fr", "Introuvable."),
        ("es;q=0.5, pl;q=0.8", "Nie znaleziono."),
        ("ja", "Not found."),
        ("it", "Non trovato."),
    ],
)
async def test_unknown_routes_are_localized_404_problems(
    client: Client, language: str, detail: str
) -> None:
    r = await client.get("/v1/nothing-here", headers={"Accept-Language": language})
    body = assert_problem(r, 404, "not_found")
    assert body["detail"] == detail
    assert body["title"] == "Not found."


async def test_wrong_method_is_405(client: Client, auth: AuthHeaders) -> None:
    r = await client.delete("/v1/sync/pull", headers=auth("marco.rossi"))
    assert_problem(r, 405, "method_not_allowed")


async def test_missing_and_expired_tokens(client: Client, auth: AuthHeaders) -> None:
    r = await client.get("/v1/sync/pull", params={"device_id": "d"})
    assert_problem(r, 401, "unauthorized")
    expired = auth("marco.rossi", exp=1_000_000_000)
    body = assert_problem(
        await client.get("/v1/sync/pull", params={"device_id": "d"}, headers=expired),
        401,
        "token_expired",
    )
    assert body["detail"] == "Session expired: sign in again."


async def test_an_unexpected_failure_is_a_bare_500_problem(
    client: Client, auth: AuthHeaders, runtime: GatewayRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("secret internals: /etc/passwd")

    monkeypatch.setattr(runtime.metadata, "get", boom)
    r = await client.get("/v1/metadata", headers=auth("marco.rossi"))
    body = assert_problem(r, 500, "internal_error")
    assert "secret" not in r.text and "reason" not in body


async def test_store_and_nats_outages_are_503(
    client: Client, auth: AuthHeaders, runtime: GatewayRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def store_down(*_: object, **__: object) -> None:
        raise StoreUnavailableError("db gone")

    async def nats_down(*_: object, **__: object) -> None:
        raise BrokerTimeoutError("timed out")

    monkeypatch.setattr(runtime.store, "device_results", store_down)
    r = await client.get("/v1/sync/pull", params={"device_id": "d"}, headers=auth("marco.rossi"))
    assert_problem(r, 503, "service_unavailable")
    assert r.headers["retry-after"] == "5"
    monkeypatch.setattr(runtime.broker, "publish", nats_down)
    body = {
        "protocol": 1,
        "changeset_id": "d:1",
        "device_id": "d",
        "mutations": [
            {
                "entity": "lead",
                "id": "00000000-0000-4000-8000-00000000000a",
                "clock": [1, 0, "d"],
                "fields": {"subject": "s"},
            }
        ],
    }
    r = await client.post("/v1/sync/push", json=body, headers=auth("marco.rossi"))
    assert_problem(r, 503, "service_unavailable")


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_openapi_documents_every_route_with_problems(client: Client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/v1/sync/push",
        "/v1/sync/pull",
        "/v1/sync/bootstrap",
        "/v1/sync/changesets/{changeset_id}",
        "/v1/metadata",
        "/v1/blobs/{sha256}",
        "/v1/devices",
        "/v1/devices/{device_id}",
    ):
        assert path in paths, path
    push = paths["/v1/sync/push"]["post"]
    assert set(push["requestBody"]["content"]) == {"application/json", "application/msgpack"}
    assert "PushRequest" in doc["components"]["schemas"]
    assert "default" in push["responses"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_device_self_service(client: Client, auth: AuthHeaders) -> None:
    me = auth("marco.rossi")
    r = await client.post(
        "/v1/devices/",
        json={"device_id": "phone-1", "name": "Pixel", "platform": "android"},
        headers=me,
    )
    assert r.status_code == 201 and r.json()["user"] == ROSSI.sub
    listed = (await client.get("/v1/devices/", headers=me)).json()
    assert [d["device_id"] for d in listed] == ["phone-1"]
    assert (await client.get("/v1/devices/", headers=auth("anna.kowalska"))).json() == []
    taken = await client.post(
        "/v1/devices/", json={"device_id": "phone-1"}, headers=auth("anna.kowalska")
    )
    assert_problem(taken, 403, "device_not_registered")
    not_hers = await client.delete("/v1/devices/phone-1", headers=auth("anna.kowalska"))
    assert_problem(not_hers, 403, "device_not_registered")
    revoked = await client.delete("/v1/devices/phone-1", headers=me)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    pulled = await client.get("/v1/sync/pull", params={"device_id": "phone-1"}, headers=me)
    assert pulled.json()["action"] == "wipe"
    bad = await client.post("/v1/devices/", json={"device_id": "no spaces"}, headers=me)
    assert_problem(bad, 400, "invalid_payload")


async def test_dev_tokens_are_accepted_by_the_gateway(client: Client) -> None:
    r = await client.post("/dev/token", json={"profile": "dealer_manager"})
    assert r.status_code == 200
    token = r.json()["access_token"]
    meta = await client.get("/v1/metadata", headers={"Authorization": f"Bearer {token}"})
    assert meta.json()["profile"] == "dealer_manager"
    assert (await client.post("/dev/token", json={"user": "nobody"})).status_code == 404
    assert (await client.get("/dev/jwks.json")).json()["keys"][0]["kty"] == "RSA"
