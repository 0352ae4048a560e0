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
from sync_protocol.default_rules import default_rules

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
