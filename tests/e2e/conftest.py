"""The client SDK against the real services: ``crmsync up``'s own supervisor on free ports.

One stack per session (:class:`infra.devstack.stack.DevStack`: nats-server, an applier and
the gateway as child processes, SQLite store, dev identity provider), no demo data; every
test uses its own devices and records. Tombstones are compacted almost at once
(``CRMSYNC_APPLIER_TOMBSTONE_RETENTION_MS=1``) so "checkpoint too old" can be produced
without waiting for days; a device that misses a delete then resyncs, which the tests
treat as the normal path it is.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.auth.dev_signer import DEMO_USERS
from client_sdk.client import CrmClient
from client_sdk.events import Event
from client_sdk.sync import SyncConfig
from client_sdk.transport import HttpTransport
from infra.devstack.stack import DevStack, StackOptions

STACK_ENV = {
    "CRMSYNC_APPLIER_FETCH_WAIT_S": "0.1",
    "CRMSYNC_APPLIER_TOMBSTONE_RETENTION_MS": "1",
    "CRMSYNC_APPLIER_COMPACT_INTERVAL_S": "0.2",
    "CRMSYNC_GATEWAY_PUSH_WAIT_MS": "5000",
}
ADMIN = "lucia.garcia"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The whole backend, started like ``crmsync up --no-demo`` on free ports."""
    devstack = DevStack(
        StackOptions(
            port=0,
            admin_port=0,
            nats_port=0,
            data_dir=tmp_path_factory.mktemp("stack"),
            demo=False,
            out=io.StringIO(),
        )
    )
    # The children copy the supervisor's environment when they are spawned; the settings
    # are put back at once so that no other test of the session sees them.
    saved = {k: os.environ.get(k) for k in STACK_ENV}
    os.environ.update(STACK_ENV)
    try:
        asyncio.run(devstack.start())
    except BaseException:
        asyncio.run(devstack.stop())
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield devstack
    finally:
        asyncio.run(devstack.stop())


def issue(stack: DevStack, login: str) -> str:
    """A dev-signed token for a demo user."""
    assert stack.signer is not None
    return stack.signer.issue(DEMO_USERS[login])


class Client:
    """A :class:`CrmClient` under test, with the events it emitted."""

    def __init__(self, client: CrmClient, device_id: str, token: str, path: Path) -> None:
        self.sdk = client
        self.device_id = device_id
        self.token = token
        self.path = path
        self.events: list[Event] = []
        client.subscribe(self.events.append)

    def of(self, kind: type[Any]) -> list[Any]:
        """Events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]


NewClient = Callable[..., Client]


@pytest.fixture
async def new_client(stack: DevStack, tmp_path: Path) -> AsyncIterator[NewClient]:
    """``new_client("phone")``: an SDK client of a demo user with its own replica."""
    made: list[Client] = []

    def make(
        name: str,
        login: str = "marco.rossi",
        *,
        http: httpx.AsyncBaseTransport | None = None,
        config: SyncConfig | None = None,
        bootstrap_batch: int = 2000,
    ) -> Client:
        device_id = f"{name}-{uuid.uuid4().hex[:8]}"
        token = issue(stack, login)
        transport = HttpTransport(
            stack.base_url,
            lambda: token,
            client=httpx.AsyncClient(transport=http, timeout=30) if http else None,
            bootstrap_batch=bootstrap_batch,
        )
        path = tmp_path / f"{device_id}.db"
        sdk = CrmClient.open(
            path,
            keystore_key=uuid.uuid4().bytes * 2,
            device_id=device_id,
            transport=transport,
            config=config or SyncConfig(pending_wait_s=0.2),
        )
        client = Client(sdk, device_id, token, path)
        made.append(client)
        return client

    yield make
    for c in made:
        if not c.sdk.db.closed:
            await c.sdk.aclose()
        else:
            await c.sdk.engine.stop()
            await c.sdk.engine.transport.aclose()


@pytest.fixture
async def admin_http(stack: DevStack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the admin API with an admin token."""
    async with httpx.AsyncClient(
        base_url=stack.admin_url,
        headers={"Authorization": f"Bearer {issue(stack, ADMIN)}"},
        timeout=10,
    ) as client:
        yield client
