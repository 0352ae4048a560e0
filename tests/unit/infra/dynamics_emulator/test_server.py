"""The emulator on a real uvicorn server: concurrency limit, dropped connections, runner."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from infra.dynamics_emulator import EmulatorConfig, EmulatorServer, FaultConfig, LimitsConfig

API = "/api/data/v9.2"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        seed=5,
        counts={"accounts": 50, "contacts": 50},
        port=0,
        limits=LimitsConfig(max_concurrent=2),
    )
    with EmulatorServer(config) as running:
        yield running


async def test_concurrent_requests_beyond_the_limit_fail_immediately(
    server: EmulatorServer,
) -> None:
    emulator = server.emulator
    emulator.faults.configure(FaultConfig(latency_rate=1.0, latency_ms=400))
    headers = {"Authorization": f"Bearer {emulator.issue_token()}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        responses = await asyncio.gather(*(client.get(f"{API}/accounts?$top=1") for _ in range(3)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429]
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["error"]["code"] == "0x80072326"
    assert limited.headers["Retry-After"] == "1"


def test_dropped_connection_is_seen_by_the_client(server: EmulatorServer) -> None:
    emulator = server.emulator
    headers = {"Authorization": f"Bearer {emulator.issue_token()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        emulator.faults.configure(FaultConfig(drop_rate=1.0))
        with pytest.raises(httpx.TransportError):
            client.get(f"{API}/accounts")
        emulator.faults.configure(FaultConfig())
        response = client.get(
            f"{API}/accounts?$select=name", headers={"Prefer": "odata.maxpagesize=20"}
        )
        assert response.status_code == 200
        next_link = response.json()["@odata.nextLink"]
        assert next_link.startswith(f"{server.url}{API}/accounts?")
        assert client.get(next_link).status_code == 200


def test_token_endpoint_and_health_over_http(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        health = client.get("/_emulator/health").json()
        assert health["status"] == "ok" and health["seed"] == 5
        token = client.post(
            "/t/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "crmsync-importer",
                "client_secret": "emulator-secret",
                "scope": f"{server.url}/.default",
            },
        ).json()["access_token"]
        who = client.get(f"{API}/WhoAmI", headers={"Authorization": f"Bearer {token}"})
        assert who.status_code == 200 and who.json()["UserId"]
