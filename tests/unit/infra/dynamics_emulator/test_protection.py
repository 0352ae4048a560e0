"""Service protection limits (429 + Retry-After) and response headers."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.dynamics_emulator import EmulatorConfig, LimitsConfig, ManualClock, create_app
from infra.dynamics_emulator.config import FaultConfig
from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.errors import ServiceProtectionError
from infra.dynamics_emulator.protection import ServiceProtection

API = "/api/data/v9.2"


async def test_request_count_limit_gives_429_with_retry_after(clock: ManualClock) -> None:
    config = EmulatorConfig(
        counts={"accounts": 3}, limits=LimitsConfig(max_requests=3, window_s=300, dop_hint=7)
    )
    app = create_app(config, clock=clock)
    emulator = app.state.emulator
    async with AsyncTestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {emulator.issue_token(lifetime_s=10_000)}"
        remaining = []
        for _ in range(3):
            response = await client.get(f"{API}/accounts")
            assert response.status_code == 200
            assert response.headers["x-ms-dop-hint"] == "7"
            remaining.append(int(response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]))
        assert remaining == [2, 1, 0]
        clock.advance(100)
        limited = await client.get(f"{API}/accounts")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "200"
        assert limited.headers["x-ms-dop-hint"] == "7"
        assert limited.json()["error"] == {
            "code": "0x80072322",
            "message": (
                "Number of requests exceeded the limit of 3 over time window of 300 seconds."
            ),
        }
        other_user = f"Bearer {emulator.issue_token('another-app', lifetime_s=10_000)}"
        assert (
            await client.get(f"{API}/accounts", headers={"Authorization": other_user})
        ).status_code == 200
        clock.advance(200)
        assert (await client.get(f"{API}/accounts")).status_code == 200


async def test_execution_time_limit(clock: ManualClock) -> None:
    config = EmulatorConfig(
        counts={"accounts": 3},
        limits=LimitsConfig(max_execution_ms=30),
        faults=FaultConfig(latency_rate=1.0, latency_ms=20),
    )
    app = create_app(config, clock=clock)
    async with AsyncTestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {app.state.emulator.issue_token()}"
        statuses = [(await client.get(f"{API}/accounts")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = await client.get(f"{API}/accounts")
        assert limited.json()["error"]["code"] == "0x80072321"
        assert limited.json()["error"]["message"].startswith(
            "Combined execution time of incoming requests exceeded limit of 30 milliseconds"
        )
        assert int(limited.headers["Retry-After"]) == 300


def test_concurrency_limit_fails_immediately(clock: ManualClock) -> None:
    protection = ServiceProtection(LimitsConfig(max_concurrent=2), clock)
    first, second = protection.admit("u"), protection.admit("u")
    with pytest.raises(ServiceProtectionError) as info:
        protection.admit("u")
    assert info.value.status == 429 and info.value.hex_code == "0x80072326"
    assert info.value.message == "Number of concurrent requests exceeded the limit of 2."
    assert info.value.headers["Retry-After"] == "1"
    protection.release(first, 1.0)
    third = protection.admit("u")
    protection.release(second, 1.0)
    protection.release(third, 1.0)


async def test_limits_can_be_changed_at_runtime(app: Litestar, emulator: Emulator) -> None:
    async with AsyncTestClient(app) as client:
        response = await client.put("/_emulator/limits", json={"max_requests": 1})
        assert response.status_code == 200 and response.json()["max_requests"] == 1
        client.headers["Authorization"] = f"Bearer {emulator.issue_token()}"
        assert (await client.get(f"{API}/accounts")).status_code == 200
        assert (await client.get(f"{API}/accounts")).status_code == 429
        assert (await client.get("/_emulator/health")).status_code == 200  # never limited
        bad = await client.put("/_emulator/limits", json={"max_concurrent": 0})
        assert bad.status_code == 400
