"""SIGKILL in the middle of a full load, then resume: no duplicate, no gap."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from importer.runtime import ImporterRuntime
from importer.state import SYNC_PREFIX, EntitySync, decode
from infra.dynamics_emulator import EmulatorServer
from infra.dynamics_emulator.config import FaultConfig
from infra.nats.server import NatsServer


@pytest.fixture
def slow_emulator_server(emulator_server: EmulatorServer) -> Iterator[EmulatorServer]:
    """The HTTP emulator answering every request 40 ms late: a load long enough to kill."""
    emulator_server.emulator.faults.configure(FaultConfig(latency_rate=1.0, latency_ms=40))
    yield emulator_server


def importer_env(
    server: EmulatorServer, nats_server: NatsServer, store_config: StoreConfig, tmp_path: Path
) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CRMSYNC_CONFIG", None)
    env.update(
        {
            "CRMSYNC_NATS_URL": nats_server.url,
            "CRMSYNC_STORE_SQLITE_PATH": store_config.sqlite_path,
            "CRMSYNC_GATEWAY_DEV_AUTH": "true",
            "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(tmp_path / "dev-keys"),
            "CRMSYNC_GATEWAY_LOG_JSON": "false",
            "CRMSYNC_DYNAMICS_BASE_URL": f"{server.url}/api/data/v9.2/",
            "CRMSYNC_DYNAMICS_CLIENT_ID": "crmsync-importer",
            "CRMSYNC_DYNAMICS_CLIENT_SECRET": "emulator-secret",
            "CRMSYNC_DYNAMICS_TOKEN_URL": f"{server.url}/contoso/oauth2/v2.0/token",
            "CRMSYNC_DYNAMICS_PAGE_SIZE": "40",
            "CRMSYNC_DYNAMICS_BATCH_MUTATIONS": "20",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_importer_load(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m importer importer load`` as a child process, output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "importer", "importer", "load"],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def checkpointed_pages(store: RecordStore) -> int:
    pages = 0
    for key, raw in (await store.list_state(SYNC_PREFIX)).items():
        st = decode(raw, EntitySync, key)
        if st.phase == "full":
            pages += st.pages
    return pages


async def test_sigkill_mid_load_then_resume_has_no_duplicate_and_no_gap(
    slow_emulator_server: EmulatorServer,
    nats_server: NatsServer,
    store_config: StoreConfig,
    store: RecordStore,
    applier: Any,
    make_runtime: Any,
    await_applied: Any,
    tmp_path: Path,
) -> None:
    log = tmp_path / "importer.log"
    env = importer_env(slow_emulator_server, nats_server, store_config, tmp_path)
    proc = start_importer_load(env, tmp_path, log)
    try:
        deadline = time.monotonic() + 60
        while await checkpointed_pages(store) < 8:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the load made no progress"
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    interrupted = {
        key: decode(raw, EntitySync, key)
        for key, raw in (await store.list_state(SYNC_PREFIX)).items()
    }
    assert any(st.phase == "full" and st.next_url for st in interrupted.values())

    # Resume in this process, against the same emulator over HTTP.
    slow_emulator_server.emulator.faults.configure(FaultConfig())
    runtime: ImporterRuntime = make_runtime(base=slow_emulator_server.url, page_size=40)
    await runtime.start()
    stats = await runtime.full_load()
    assert any(s.resumed for s in stats.values())
    for s in stats.values():
        await await_applied(s.batch_ids)

    # No gap: the store equals Dynamics. No duplicate: every record was written once.
    reports = await runtime.reconciler.reconcile_all(list(stats))
    for report in reports.values():
        assert report.differences == 0, report.summary()
    for entity in stats:
        emap = runtime.maps[entity]
        gen = slow_emulator_server.emulator.generator
        ids = [gen.row(emap.entity_set, i)[emap.key] for i in range(gen.count(emap.entity_set))]
        records = await store.get_many([(entity, i) for i in ids])
        assert len(records) == len(ids)
        assert {r.version for r in records.values()} == {1}, entity
