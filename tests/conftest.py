"""Shared pytest fixtures for the whole suite.

One section per concern, each with its owner's fixtures only; add a new section rather than
mixing fixtures into another one. Fixtures here must stay cheap until requested: nothing is
started at import time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

from backend.messaging import NatsBroker, NatsConfig
from infra.nats.server import NatsServer

# ============================================================================ hypothesis
# Property tests judge results, not the speed of input generation: on a fresh machine the
# first text strategy builds Hypothesis' Unicode tables (over a second), and a loaded CI box
# can stall any example, so neither generation time nor per-example deadlines fail a test.

settings.register_profile("crmsync", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("crmsync")

# ============================================================================ polling helper

Eventually = Callable[..., Awaitable[None]]


@pytest.fixture
def eventually() -> Eventually:
    """Poll an (async or sync) zero-argument predicate until it is true, or fail at a deadline.

    Use it instead of sleeping: ``await eventually(lambda: len(seen) == 3, within=5)``.
    """

    async def wait(
        predicate: Callable[[], object],
        *,
        within: float = 10.0,
        interval: float = 0.02,
        message: str = "condition not met",
    ) -> None:
        deadline = time.monotonic() + within
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if time.monotonic() >= deadline:
                pytest.fail(f"{message} within {within}s")
            await asyncio.sleep(interval)

    return wait


# ============================================================================ NATS (messaging)
# One real nats-server (JetStream, temp store dir, free port) per test session; each test
# that takes `broker` starts from freshly created, empty streams with no consumers.


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A real JetStream nats-server for the session (monitoring on a free port)."""
    server = NatsServer(http_port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_config(nats_server: NatsServer) -> NatsConfig:
    """A :class:`NatsConfig` pointing at the session server, with test-friendly timeouts."""
    return NatsConfig(
        servers=(nats_server.url,),
        connection_name="crmsync-tests",
        initial_connect_timeout=5.0,
        reconnect_time_wait=0.2,
        request_timeout=5.0,
    )


async def reset_nats_state(broker: NatsBroker) -> None:
    """Recreate every project stream: no messages, no consumers, sequences from 1, and no
    remembered ``Nats-Msg-Id`` (a purge would keep those). About 10 ms."""
    for spec in broker.streams:
        await broker.delete_stream(spec.name)
    await broker.ensure_streams()


@pytest.fixture
async def broker(nats_config: NatsConfig) -> AsyncIterator[NatsBroker]:
    """A connected :class:`NatsBroker` with the project streams freshly created (isolated)."""
    nats_broker = NatsBroker(nats_config)
    await nats_broker.connect()
    await reset_nats_state(nats_broker)
    try:
        yield nats_broker
    finally:
        await nats_broker.close()
