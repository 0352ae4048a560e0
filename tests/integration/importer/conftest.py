"""Fixtures of the importer integration tests: emulator, real NATS, real SQLite, real applier.

* ``emulator_app``: the Dynamics emulator (Litestar app) with a small dataset; the importer
  reaches it in-process through ``httpx.ASGITransport`` (``runtime``) or over real HTTP
  (``emulator_server``, for subprocesses).
* ``store`` / ``broker`` / ``applier``: the SQLite store in the test's tmp dir, the session
  nats-server with fresh streams (``tests/conftest.py``), and an applier consuming upstream
  batches into the store, in this process.
* ``runtime``: an :class:`~importer.runtime.ImporterRuntime` wired to all of them, with
  OAuth client credentials against the emulator's token endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from backend.applier.config import ApplierConfig
from backend.applier.messages import Actor, ChangesetEnvelope
from backend.applier.messages import encode as encode_message
from backend.applier.metrics import ApplierMetrics
from backend.applier.service import Applier
from backend.applier.worker import ApplierWorker
from backend.messaging.broker import NatsBroker
from backend.messaging.config import NatsConfig
from backend.messaging.subjects import changeset_subject
from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from importer.config import ImporterConfig
from importer.publisher import wait_applied
from importer.runtime import ImporterRuntime, ImporterSettings
from infra.dynamics_emulator import Clock, EmulatorConfig, EmulatorServer, create_app
from infra.dynamics_emulator.config import AuthConfig, LimitsConfig
from infra.dynamics_emulator.emulator import Emulator
from sync_protocol.changesets import ChangesetResult, Mutation, PushRequest
from sync_protocol.default_rules import default_rules
from sync_protocol.hlc import HLC
from sync_protocol.version import PROTOCOL_VERSION

SMALL_COUNTS = {
    "accounts": 400,
    "contacts": 500,
    "leads": 200,
    "opportunities": 250,
    "quotes": 150,
    "appointments": 300,
    "systemusers": 40,
}
"""A few thousand records over the six entities: several pages each at page size 100."""

EMULATOR_HOST = "http://emulator.test"
CLIENT_ID = "crmsync-importer"
CLIENT_SECRET = "emulator-secret"


def emulator_config(**overrides: Any) -> EmulatorConfig:
    """The test dataset: seed 11, small counts, generous limits."""
    values: dict[str, Any] = {
        "seed": 11,
        "counts": dict(SMALL_COUNTS),
        "port": 0,
        "auth": AuthConfig(clients={CLIENT_ID: CLIENT_SECRET}),
        "limits": LimitsConfig(max_requests=100_000, max_concurrent=52),
    }
    values.update(overrides)
    return EmulatorConfig(**values)


def importer_config(base: str, **overrides: Any) -> ImporterConfig:
    """Importer settings for tests: small pages, fast back-off, OAuth against the emulator."""
    values: dict[str, Any] = {
        "base_url": f"{base}/api/data/v9.2/",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token_url": f"{base}/contoso.onmicrosoft.com/oauth2/v2.0/token",
        "page_size": 100,
        "batch_mutations": 50,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.2,
        "delta_interval_s": 0.2,
        "writeback_fetch": 20,
        "writeback_batch": 20,
    }
    values.update(overrides)
    return ImporterConfig(**values)


@pytest.fixture
def emulator_clock() -> Clock | None:
    """The emulator's clock (``None``: the system clock); override it in a test module."""
    return None


@pytest.fixture
def emulator_app(emulator_clock: Clock | None) -> Litestar:
    return create_app(emulator_config(), clock=emulator_clock)


@pytest.fixture
def emulator(emulator_app: Litestar) -> Emulator:
    em: Emulator = emulator_app.state.emulator
    return em


@pytest.fixture
def emulator_server() -> Iterator[EmulatorServer]:
    """The emulator on a real HTTP port (for importer subprocesses)."""
    server = EmulatorServer(emulator_config())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store_config(tmp_path: Path) -> StoreConfig:
    return StoreConfig(sqlite_path=str(tmp_path / "crmsync.db"))


@pytest.fixture
async def store(store_config: StoreConfig) -> AsyncIterator[RecordStore]:
    s = create_store(store_config)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def fast_nats_config(nats_config: NatsConfig) -> NatsConfig:
    return nats_config.with_overrides(ack_wait=2.0, nak_delay=0.1)


@dataclass
class RunningApplier:
    """An applier consuming in this process, with its own NATS connection."""

    applier: Applier
    worker: ApplierWorker
    broker: NatsBroker
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 15)
        await self.broker.close()


@pytest.fixture
async def applier(
    store: RecordStore, fast_nats_config: NatsConfig, broker: NatsBroker
) -> AsyncIterator[RunningApplier]:
    """An applier consuming changesets and upstream batches into ``store``."""
    own = NatsBroker(fast_nats_config.with_overrides(connection_name="applier-under-test"))
    await own.connect()
    config = ApplierConfig(fetch_wait_s=0.1, compact_interval_s=0, upstream_batch=8)
    service = Applier(store, own, default_rules(), config=config, metrics=ApplierMetrics())
    worker = ApplierWorker(service, own)
    stop = asyncio.Event()
    handle = RunningApplier(service, worker, own, stop, asyncio.create_task(worker.run(stop)))
    try:
        yield handle
    finally:
        await handle.stop()


MakeRuntime = Callable[..., ImporterRuntime]


@pytest.fixture
async def make_runtime(
    emulator_app: Litestar,
    store: RecordStore,
    broker: NatsBroker,
    nats_config: NatsConfig,
    store_config: StoreConfig,
) -> AsyncIterator[MakeRuntime]:
    """``make_runtime(base=None, **importer_overrides)``: an importer wired to the test's
    store and streams, and to the emulator (in-process, or over HTTP at ``base``)."""
    made: list[ImporterRuntime] = []

    def make(*, base: str | None = None, **overrides: Any) -> ImporterRuntime:
        """``base``: reach an emulator over real HTTP at this root instead of in-process."""
        settings = ImporterSettings(
            importer=importer_config(base or EMULATOR_HOST, **overrides),
            nats=nats_config,
            store=store_config,
            rules=default_rules(),
            log_json=False,
        )
        runtime = ImporterRuntime(
            settings,
            store=store,
            broker=broker,
            transport=None if base else httpx.ASGITransport(app=emulator_app),  # type: ignore[arg-type]
        )
        made.append(runtime)
        return runtime

    try:
        yield make
    finally:
        for runtime in made:
            await runtime.close()


@pytest.fixture
async def runtime(make_runtime: MakeRuntime, applier: RunningApplier) -> ImporterRuntime:
    """A started importer (directory loaded), with an applier consuming behind it."""
    rt = make_runtime()
    await rt.start()
    return rt


AwaitApplied = Callable[..., Any]


@pytest.fixture
def await_applied(store: RecordStore) -> AwaitApplied:
    """``await await_applied(batch_ids)``: fail unless the applier applied them all in time."""

    async def wait(batch_ids: list[str], timeout_s: float = 90.0) -> None:
        ok = await wait_applied(store, batch_ids, timeout_s=timeout_s)
        assert ok, "upstream batches not applied in time"

    return wait


# ---------------------------------------------------------------------------- device pushes

Push = Callable[..., Any]


@pytest.fixture
def push(broker: NatsBroker, store: RecordStore) -> Push:
    """``await push(user, mutations, profile=..., channels=...)``: a device changeset through
    the applier, like the gateway publishes it; returns the stored result."""
    counter = {"n": 0}

    async def send(
        user: str,
        mutations: list[Mutation],
        *,
        profile: str = "sales_rep",
        channels: list[str] | None = None,
        device: str = "dev1",
    ) -> ChangesetResult:
        counter["n"] += 1
        changeset_id = f"{device}:{counter['n']}"
        envelope = ChangesetEnvelope(
            push=PushRequest(
                protocol=PROTOCOL_VERSION,
                changeset_id=changeset_id,
                device_id=device,
                mutations=mutations,
            ),
            actor=Actor(
                user=user,
                profile=profile,
                channels=channels or [f"owner:{user}"],
                device_id=device,
            ),
            received_ms=int(time.time() * 1000),
        )
        await broker.publish(
            changeset_subject(device), encode_message(envelope), msg_id=changeset_id
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = await store.changeset_result(changeset_id)
            if result is not None:
                return result
            await asyncio.sleep(0.02)
        raise AssertionError(f"changeset {changeset_id} was not applied")

    return send


def device_clock(device: str = "dev1") -> HLC:
    """A device clock reading now."""
    return HLC(int(time.time() * 1000), 0, device)


@pytest.fixture
def now_clock() -> Callable[[str], HLC]:
    """``now_clock(device)``: an HLC of that device reading now."""
    return device_clock
