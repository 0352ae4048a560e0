"""Fixtures of the sync integration tests: real nats-server, real SQLite store, real applier.

The session's nats-server comes from ``tests/conftest.py`` (``nats_server``); every test
that takes ``broker`` starts from freshly created streams. Appliers run in this process
(``start_applier``) or as a ``crmsync applier`` subprocess (``applier_process``), each with
its own NATS connection, sharing the durable consumers exactly as separate processes do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from backend.applier.config import ApplierConfig
from backend.applier.metrics import ApplierMetrics
from backend.applier.service import Applier
from backend.applier.worker import ApplierWorker
from backend.messaging.broker import NatsBroker
from backend.messaging.config import NatsConfig
from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from infra.nats.server import NatsServer
from sync_protocol.changesets import Mutation, PushRequest
from sync_protocol.default_rules import default_rules
from sync_protocol.hlc import HLC

ACK_WAIT_S = 1.0
"""Short redelivery deadline, so a killed applier's messages come back within the test."""


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
    return nats_config.with_overrides(ack_wait=ACK_WAIT_S, nak_delay=0.1)


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


StartApplier = Callable[..., Awaitable[RunningApplier]]


@pytest.fixture
async def start_applier(
    store: RecordStore, fast_nats_config: NatsConfig, broker: NatsBroker
) -> AsyncIterator[StartApplier]:
    """``await start_applier()``: a consuming applier on the test's store and streams."""
    running: list[RunningApplier] = []

    async def start(**config: object) -> RunningApplier:
        own = NatsBroker(fast_nats_config.with_overrides(connection_name="applier-under-test"))
        await own.connect()
        settings = ApplierConfig(fetch_wait_s=0.1, compact_interval_s=0).with_overrides(**config)
        applier = Applier(store, own, default_rules(), config=settings, metrics=ApplierMetrics())
        worker = ApplierWorker(applier, own)
        stop = asyncio.Event()
        handle = RunningApplier(applier, worker, own, stop, asyncio.create_task(worker.run(stop)))
        running.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in running:
            await handle.stop()


@dataclass
class ApplierProcess:
    """A ``crmsync applier`` child process."""

    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL: no graceful stop, nothing acked that was not acked already."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def applier_env(
    nats_server: NatsServer, store_config: StoreConfig, tmp_path: Path
) -> dict[str, str]:
    """The environment a ``crmsync applier`` child needs for the test's NATS and store."""
    env = dict(os.environ)
    env.pop("CRMSYNC_CONFIG", None)
    env.update(
        {
            "CRMSYNC_NATS_URL": nats_server.url,
            "CRMSYNC_NATS_ACK_WAIT": str(ACK_WAIT_S),
            "CRMSYNC_STORE_SQLITE_PATH": store_config.sqlite_path,
            "CRMSYNC_GATEWAY_DEV_AUTH": "true",
            "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(tmp_path / "dev-keys"),
            "CRMSYNC_GATEWAY_LOG_JSON": "false",
            "CRMSYNC_APPLIER_FETCH_WAIT_S": "0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def applier_process(
    nats_server: NatsServer, store_config: StoreConfig, tmp_path: Path
) -> Iterator[Callable[[], ApplierProcess]]:
    """``applier_process()``: start a ``crmsync applier`` subprocess (stopped at teardown)."""
    started: list[ApplierProcess] = []

    def start() -> ApplierProcess:
        log = tmp_path / f"applier-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "backend.cli", "applier"],
                env=applier_env(nats_server, store_config, tmp_path),
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        handle = ApplierProcess(proc, log)
        started.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in started:
            if handle.proc.poll() is None:
                handle.proc.terminate()
                try:
                    handle.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    handle.kill()


# ============================================================================ full stack
# A nats-server of its own, an applier and a gateway as subprocesses on one SQLite file:
# the deployment shape, talked to over real HTTP and WebSocket.


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SyncStack:
    """nats-server + ``crmsync applier`` + ``crmsync gateway`` subprocesses.

    Args:
        root: Directory for the store, dev keys and logs.
    """

    def __init__(self, root: Path) -> None:
        from backend.auth.dev_signer import DevSigner
        from backend.config import dev_checkpoint_key

        self.root = root
        self.key_dir = root / "dev-keys"
        self.signer = DevSigner.load_or_create(self.key_dir)
        dev_checkpoint_key(self.key_dir)
        self.nats = NatsServer(store_dir=root / "nats")
        self.port = _free_port()
        self.admin_port = _free_port()
        self.gateway: subprocess.Popen[bytes] | None = None
        self.applier: subprocess.Popen[bytes] | None = None
        self.store_config = StoreConfig(sqlite_path=str(root / "crmsync.db"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/sync/events"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CRMSYNC_CONFIG", None)
        env.update(
            {
                "CRMSYNC_NATS_URL": self.nats.url,
                "CRMSYNC_NATS_ACK_WAIT": "2",
                "CRMSYNC_STORE_SQLITE_PATH": self.store_config.sqlite_path,
                "CRMSYNC_GATEWAY_PORT": str(self.port),
                "CRMSYNC_GATEWAY_ADMIN_PORT": str(self.admin_port),
                "CRMSYNC_GATEWAY_DEV_AUTH": "true",
                "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(self.key_dir),
                "CRMSYNC_GATEWAY_LOG_JSON": "false",
                "CRMSYNC_GATEWAY_PUSH_WAIT_MS": "5000",
                "CRMSYNC_APPLIER_FETCH_WAIT_S": "0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _spawn(self, command: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{command}.log").open("ab")
        with log:
            return subprocess.Popen(
                [sys.executable, "-m", "backend.cli", command],
                env=self.env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self) -> None:
        self.nats.start()
        asyncio.run(self._ensure_streams())
        self.start_applier()
        self.start_gateway()

    async def _ensure_streams(self) -> None:
        async with NatsBroker(NatsConfig(servers=(self.nats.url,))) as broker:
            await broker.ensure_streams()

    def start_applier(self) -> None:
        self.applier = self._spawn("applier")

    def stop_applier(self) -> None:
        _stop(self.applier)
        self.applier = None

    def start_gateway(self, timeout: float = 30.0) -> None:
        import time
        import urllib.request

        self.gateway = self._spawn("gateway")
        deadline = time.monotonic() + timeout
        while True:
            if self.gateway.poll() is not None:
                raise RuntimeError(f"gateway exited:\n{self.log_tail('gateway')}")
            try:
                with urllib.request.urlopen(f"{self.admin_url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready:\n{self.log_tail('gateway')}")
            time.sleep(0.05)

    def kill_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.kill()
        self.gateway.wait(timeout=10)
        self.gateway = None

    def log_tail(self, command: str) -> str:
        path = self.root / f"{command}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def token(self, login: str, **claims: object) -> str:
        from backend.auth.dev_signer import DEMO_USERS

        return self.signer.issue(DEMO_USERS[login], **claims)

    def stop(self) -> None:
        for proc in (self.gateway, self.applier):
            _stop(proc)
        self.nats.stop()


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def sync_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncStack]:
    """One running stack per test module (tests use distinct devices and records)."""
    stack = SyncStack(tmp_path_factory.mktemp("stack"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


class Device:
    """A minimal SDK stand-in over HTTP: an in-memory replica, an HLC, a checkpoint.

    Args:
        client: HTTP client on the gateway's sync API.
        token: The user's bearer token.
        device_id: The device id.
    """

    def __init__(self, client: Any, token: str, device_id: str) -> None:
        import time

        from sync_protocol.hlc import Clock

        self.client = client
        self.token = token
        self.device_id = device_id
        self.clock = Clock(device_id, lambda: time.time_ns() // 1_000_000)
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.checkpoint: str | None = None
        self.counter = 0
        self.results: list[dict[str, Any]] = []
        self.removed: list[tuple[str, str]] = []
        self.last_pull: dict[str, Any] = {}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def upsert(self, entity: str, id: str, **fields: Any) -> Mutation:
        """A local edit based on the replica's version of the record."""
        return Mutation(
            entity=entity,
            id=id,
            clock=self.clock.now(),
            base_version=self.versions.get((entity, id), 0),
            fields=fields,
        )

    def changeset(self, mutations: list[Mutation]) -> bytes:
        """The next changeset's body (JSON); the counter only grows."""
        self.counter += 1
        push = PushRequest(
            protocol=1,
            changeset_id=f"{self.device_id}:{self.counter}",
            device_id=self.device_id,
            mutations=mutations,
        )
        return msgspec.json.encode(push)

    async def push_body(self, body: bytes) -> Any:
        return await self.client.post(
            "/v1/sync/push",
            content=body,
            headers={**self.headers, "Content-Type": "application/json"},
        )

    async def push(self, mutations: list[Mutation]) -> Any:
        """Push one changeset; returns the HTTP response."""
        return await self.push_body(self.changeset(mutations))

    async def pull(self) -> dict[str, Any]:
        """Pull every page up to the head, applying changes and removals to the replica."""
        while True:
            params = {"device_id": self.device_id}
            if self.checkpoint:
                params["checkpoint"] = self.checkpoint
            resp = await self.client.get("/v1/sync/pull", params=params, headers=self.headers)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            self.last_pull = page
            if page.get("action", "none") != "none":
                return page
            for change in page.get("changes", []):
                key = (change["entity"], change["id"])
                if change.get("clock"):
                    self.clock.observe(HLC(*change["clock"]))
                if change.get("deleted"):
                    self.records.pop(key, None)
                else:
                    self.records[key] = change.get("fields", {})
                self.versions[key] = change["version"]
            for removal in page.get("removals", []):
                key = (removal["entity"], removal["id"])
                self.records.pop(key, None)
                self.versions.pop(key, None)
                self.removed.append(key)
            self.results.extend(page.get("results", []))
            self.checkpoint = page["checkpoint"]
            if not page["has_more"]:
                return page


@pytest.fixture
async def http(sync_stack: SyncStack) -> AsyncIterator[Any]:
    """An HTTP client on the stack's sync API."""
    import httpx

    async with httpx.AsyncClient(base_url=sync_stack.base_url, timeout=20) as client:
        yield client


@pytest.fixture
def new_device(http: Any, sync_stack: SyncStack) -> Callable[..., Device]:
    """``new_device(login, device_id, **claims)``: a device of a demo user."""

    def make(login: str, device_id: str, **claims: object) -> Device:
        return Device(http, sync_stack.token(login, **claims), device_id)

    return make


@pytest.fixture
def load_upstream(sync_stack: SyncStack) -> Callable[..., Awaitable[None]]:
    """``await load_upstream(batch)``: publish an upstream batch and wait for its result."""
    from infra.devstack.demo_loader import load_batches

    async def load(*batches: Any) -> None:
        async with NatsBroker(NatsConfig(servers=(sync_stack.nats.url,))) as broker:
            await load_batches(broker, list(batches), timeout_s=20)

    return load
