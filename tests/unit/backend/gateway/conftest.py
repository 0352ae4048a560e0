"""Fixtures of the gateway unit tests: the real SQLite store, the session's NATS server,
an in-memory dev signer, and the app under Litestar's async test client.

No applier runs here: pushes answer 202 unless a test plays the applier's part. The
end-to-end flows with a real applier live in ``tests/integration/gateway``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar

from backend.auth.dev_signer import DEMO_USERS, DevSigner
from backend.config import GatewayConfig
from backend.gateway.app import create_app
from backend.gateway.runtime import GatewayRuntime
from backend.messaging import NatsBroker
from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from backend.store.types import RecordWrite, WriteBatch
from sync_protocol.default_rules import default_rules
from sync_protocol.hlc import HLC
from sync_protocol.records import Record

ROSSI = DEMO_USERS["marco.rossi"]  # sales rep, IT-NW
KOWALSKA = DEMO_USERS["anna.kowalska"]  # sales rep, PL-MZ
WEBER = DEMO_USERS["jonas.weber"]  # service technician, DE-BY
MARTIN = DEMO_USERS["claire.martin"]  # dealer manager, FR-IDF + FR-ARA
GARCIA = DEMO_USERS["lucia.garcia"]  # admin, five countries


@pytest.fixture(scope="session")
def signer() -> DevSigner:
    return DevSigner.generate()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    s = create_store(StoreConfig(sqlite_path=str(tmp_path / "crmsync.db")))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return GatewayConfig.for_tests(push_wait_ms=200, bootstrap_batch=3)


@pytest.fixture
def app(
    gateway_config: GatewayConfig, store: RecordStore, broker: NatsBroker, signer: DevSigner
) -> Litestar:
    return create_app(gateway_config, store, broker, dev_signer=signer, own_resources=False)


@pytest.fixture
def runtime(app: Litestar) -> GatewayRuntime:
    rt: GatewayRuntime = app.state.runtime
    return rt


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in this event loop (the broker's loop).

    The runtime is started and closed directly: the app's lifespan does exactly that, and
    Litestar's lifespan context cannot be entered and exited in different fixture tasks.
    """
    runtime: GatewayRuntime = app.state.runtime
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c
    finally:
        await runtime.close()


AuthHeaders = Callable[..., dict[str, str]]


@pytest.fixture
def auth(signer: DevSigner) -> AuthHeaders:
    """``auth("marco.rossi", **claims)``: Authorization headers for a demo user."""

    def headers(login: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + signer.issue(login, **claims)}

    return headers


Seed = Callable[..., Awaitable[Record]]


@pytest.fixture
def seed(store: RecordStore) -> Seed:
    """``await seed("account", name=..., ownerid=..., territory=..., country=...)``: a record
    written straight into the store (version 1, or the next version with ``record=``)."""
    rules = default_rules()

    async def write(
        entity: str, *, id: str | None = None, previous: Record | None = None, **fields: Any
    ) -> Record:
        values = {**(previous.fields if previous else {}), **fields}
        version = previous.version + 1 if previous else 1
        record = Record(
            entity=entity,
            id=id or (previous.id if previous else str(uuid.uuid4())),
            version=version,
            fields=values,
            clocks={k: HLC(1_700_000_000_000 + version, 0, "seed") for k in values},
            channels=rules.channels_for(entity, values),
            origin="upstream:test",
        )
        await store.apply(
            WriteBatch(
                writes=[RecordWrite(record=record, expected_version=version - 1)],
            )
        )
        return record

    return write


def owned_by(user: Any, **fields: Any) -> dict[str, Any]:
    """Fields of a record owned by a demo user, in their first territory and country."""
    return {
        "ownerid": user.sub,
        "territory": user.territories[0] if user.territories else None,
        "country": user.countries[0] if user.countries else None,
        **fields,
    }


@pytest.fixture
def owned() -> Callable[..., dict[str, Any]]:
    return owned_by


class _QuietServer(uvicorn.Server):
    """uvicorn without signal handling (pytest owns the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def live_url(app: Litestar) -> AsyncIterator[str]:
    """The app served by uvicorn on a free port in this event loop: ``http://127.0.0.1:N``."""
    runtime: GatewayRuntime = app.state.runtime
    await runtime.start()
    server = _QuietServer(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await runtime.close()
