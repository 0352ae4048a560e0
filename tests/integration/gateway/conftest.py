"""Fixtures of the gateway integration tests: everything real.

The session's nats-server (``tests/conftest.py``), the SQLite store on a temp dir, an
applier consuming in this process with its own NATS connection, and the gateway served
by uvicorn on a free port; clients talk HTTP and WebSocket over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar

from backend.admin.app import create_admin_app
from backend.applier.config import ApplierConfig
from backend.applier.metrics import ApplierMetrics
from backend.applier.service import Applier
from backend.applier.worker import ApplierWorker
from backend.auth.dev_signer import DEMO_USERS, DevSigner
from backend.config import GatewayConfig
from backend.gateway.app import create_app
from backend.gateway.runtime import GatewayRuntime
from backend.messaging import NatsBroker, NatsConfig
from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from sync_protocol.default_rules import default_rules

ROSSI = DEMO_USERS["marco.rossi"]
KOWALSKA = DEMO_USERS["anna.kowalska"]


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
async def applier(
    store: RecordStore, nats_config: NatsConfig, broker: NatsBroker
) -> AsyncIterator[Applier]:
    """A real applier consuming the changesets stream, with its own connection."""
    own = NatsBroker(nats_config.with_overrides(connection_name="applier-under-test"))
    await own.connect()
    settings = ApplierConfig(fetch_wait_s=0.1, compact_interval_s=0)
    service = Applier(store, own, default_rules(), config=settings, metrics=ApplierMetrics())
    stop = asyncio.Event()
    task = asyncio.create_task(ApplierWorker(service, own).run(stop))
    try:
        yield service
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        await own.close()


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(app: Litestar) -> tuple[_QuietServer, asyncio.Task[None], str]:
    server = _QuietServer(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


@dataclass
class Gateway:
    """The running gateway: sync URL, admin URL and its runtime."""

    url: str
    admin_url: str
    runtime: GatewayRuntime

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")


@pytest.fixture
async def gateway(
    store: RecordStore, broker: NatsBroker, signer: DevSigner, applier: Applier
) -> AsyncIterator[Gateway]:
    """The sync and admin apps served on free ports, with a real applier behind them."""
    config = GatewayConfig.for_tests(push_wait_ms=5000, bootstrap_batch=50)
    app = create_app(config, store, broker, dev_signer=signer, own_resources=False)
    runtime: GatewayRuntime = app.state.runtime
    admin = create_admin_app(runtime)
    await runtime.start()
    served = [await _serve(app), await _serve(admin)]
    try:
        yield Gateway(served[0][2], served[1][2], runtime)
    finally:
        for server, task, _ in served:
            server.should_exit = True
            await task
        await runtime.close()


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        yield client


AuthHeaders = Callable[..., dict[str, str]]


@pytest.fixture
def auth(signer: DevSigner) -> AuthHeaders:
    def headers(login: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + signer.issue(login, **claims)}

    return headers


Push = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def push(http: httpx.AsyncClient, auth: AuthHeaders) -> Push:
    """``await push(login, device, n, *mutations)``: one changeset through the gateway."""

    async def send(login: str, device: str, n: int, *mutations: dict[str, Any]) -> httpx.Response:
        body = {
            "protocol": 1,
            "changeset_id": f"{device}:{n}",
            "device_id": device,
            "mutations": list(mutations),
        }
        return await http.post("/v1/sync/push", json=body, headers=auth(login))

    return send


def upsert(entity: str, id: str | None = None, base: int = 0, **fields: Any) -> dict[str, Any]:
    """A device upsert mutation."""
    return {
        "entity": entity,
        "id": id or str(uuid.uuid4()),
        "clock": [1_700_000_000_000 + base, 0, "test-device"],
        "base_version": base,
        "fields": fields,
    }
