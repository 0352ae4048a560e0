"""Injected faults: 503/500, latency, dropped connections; switched at runtime."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.dynamics_emulator.config import FaultConfig
from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.faults import FaultInjector, FaultKind

API = "/api/data/v9.2"


async def test_a_storm_can_be_scripted_through_the_control_endpoint(
    app: Litestar, emulator: Emulator
) -> None:
    async with AsyncTestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {emulator.issue_token()}"
        storm = await client.put("/_emulator/faults", json={"error_503_rate": 1.0, "seed": 3})
        assert storm.status_code == 200 and storm.json()["error_503_rate"] == 1.0
        unavailable = await client.get(f"{API}/accounts")
        assert unavailable.status_code == 503
        assert unavailable.json()["error"]["code"] == "0x8004A001"
        await client.put("/_emulator/faults", json={"error_503_rate": 0.0, "error_500_rate": 1.0})
        failed = await client.get(f"{API}/accounts")
        assert failed.status_code == 500
        assert failed.json()["error"] == {
            "code": "0x80040216",
            "message": "An unexpected error occurred.",
        }
        calm = await client.put("/_emulator/faults", json={"error_500_rate": 0.0})
        assert calm.json()["error_500_rate"] == 0.0
        assert (await client.get(f"{API}/accounts")).status_code == 200
        health: dict[str, Any] = (await client.get("/_emulator/health")).json()
        assert health["faults_injected"]["503"] == 1 and health["faults_injected"]["500"] == 1
        invalid = await client.put("/_emulator/faults", json={"drop_rate": 2})
        assert invalid.status_code == 400


def test_fault_dice_are_seeded_and_follow_the_rates() -> None:
    config = FaultConfig(seed=42, error_503_rate=0.2, error_500_rate=0.1, drop_rate=0.1)
    first = [FaultInjector(config).roll() for _ in range(1)]
    injector_a, injector_b = FaultInjector(config), FaultInjector(config)
    rolls_a = [injector_a.roll().kind for _ in range(5_000)]
    rolls_b = [injector_b.roll().kind for _ in range(5_000)]
    assert rolls_a == rolls_b and first
    share = {kind: rolls_a.count(kind) / 5_000 for kind in FaultKind}
    assert 0.17 < share[FaultKind.UNAVAILABLE] < 0.23
    assert 0.07 < share[FaultKind.SERVER_ERROR] < 0.13
    assert 0.07 < share[FaultKind.DROP] < 0.13
    latency = FaultInjector(FaultConfig(latency_rate=1.0, latency_ms=15)).roll()
    assert latency.latency_ms == 15 and latency.kind is FaultKind.NONE
