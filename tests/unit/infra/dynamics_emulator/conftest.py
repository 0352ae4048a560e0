"""Shared fixtures of the emulator tests: a small dataset, a manual clock, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.dynamics_emulator import EmulatorConfig, ManualClock, create_app
from infra.dynamics_emulator.emulator import Emulator

SMALL_COUNTS = {
    "accounts": 40,
    "contacts": 90,
    "leads": 30,
    "opportunities": 25,
    "quotes": 20,
    "appointments": 30,
    "systemusers": 12,
}


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when a test says so."""
    return ManualClock()


@pytest.fixture
def config() -> EmulatorConfig:
    """A small dataset; override in a test module to change limits or faults."""
    return EmulatorConfig(seed=7, counts=dict(SMALL_COUNTS))


@pytest.fixture
def app(config: EmulatorConfig, clock: ManualClock) -> Litestar:
    """The emulator app on the manual clock."""
    return create_app(config, clock=clock)


@pytest.fixture
def emulator(app: Litestar) -> Emulator:
    """The live state behind ``app``."""
    state: Emulator = app.state.emulator
    return state


@pytest.fixture
async def api(app: Litestar, emulator: Emulator) -> AsyncIterator[AsyncTestClient[Any]]:
    """An authenticated client of the app."""
    async with AsyncTestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {emulator.issue_token()}"
        client.headers["OData-Version"] = "4.0"
        client.headers["Accept"] = "application/json"
        yield client
