"""Capacity (slow, ``CRMSYNC_SLOW=1``): one gateway process holds 10,000 idle event sockets
and pokes them all; a bootstrap's server memory does not grow with the scope.

The gateway runs as its own process (``python -m backend.gateway``) so its memory can be
measured alone; figures are printed (run with ``-s``) as a table and a JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import websockets

from backend.applier.messages import ChangeEvent, encode
from backend.auth.dev_signer import DevSigner
from backend.messaging import NatsBroker
from backend.messaging.subjects import event_subject
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from backend.store.types import RecordWrite, WriteBatch
from infra.nats.server import NatsServer
from sync_protocol.default_rules import default_rules
from sync_protocol.hlc import HLC
from sync_protocol.records import Record

from .conftest import ROSSI

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CRMSYNC_SLOW") != "1", reason="slow: set CRMSYNC_SLOW=1"),
]

SOCKETS = 10_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class GatewayProcess:
    url: str
    admin_url: str
    proc: subprocess.Popen[bytes]
    signer: DevSigner
    db: Path

    @property
    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    @property
    def anon_mb(self) -> float:
        """Anonymous resident memory (heap), without the store's memory-mapped file."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
        return self.rss_mb


@pytest.fixture
def gateway_process(tmp_path: Path, nats_server: NatsServer) -> Iterator[GatewayProcess]:
    keys = tmp_path / "keys"
    signer = DevSigner.load_or_create(keys)
    port, admin_port = _free_port(), _free_port()
    db = tmp_path / "crmsync.db"
    env = {
        **os.environ,
        "CRMSYNC_NATS_URL": nats_server.url,
        "CRMSYNC_STORE_SQLITE_PATH": str(db),
        "CRMSYNC_GATEWAY_PORT": str(port),
        "CRMSYNC_GATEWAY_ADMIN_PORT": str(admin_port),
        "CRMSYNC_GATEWAY_DEV_AUTH": "true",
        "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(keys),
        "CRMSYNC_GATEWAY_LOG_JSON": "false",
        "CRMSYNC_GATEWAY_LOG_LEVEL": "WARNING",
        "CRMSYNC_GATEWAY_BOOTSTRAP_BATCH": "500",
    }
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.gateway"], env=env, stdout=log, stderr=log, cwd=tmp_path
    )
    admin_url = f"http://127.0.0.1:{admin_port}"
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{admin_url}/readyz", timeout=1).status_code == 200:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail((tmp_path / "gateway.log").read_text()[-3000:])
        time.sleep(0.1)
    try:
        yield GatewayProcess(f"http://127.0.0.1:{port}", admin_url, proc, signer, db)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def report(title: str, rows: list[tuple[str, str]], figures: dict[str, float]) -> None:
    print(f"\n{title}")
    for name, value in rows:
        print(f"  {name:<34} {value:>14}")
    print(json.dumps({"benchmark": title, **figures}))


async def test_ten_thousand_idle_sockets_in_one_process(
    gateway_process: GatewayProcess, broker: NatsBroker
) -> None:
    token = gateway_process.signer.issue("marco.rossi", ttl_s=3600)
    url = gateway_process.url.replace("http", "ws") + (
        f"/v1/sync/events?device_id=bench-dev&access_token={token}"
    )
    base_rss = gateway_process.rss_mb
    sockets: list[websockets.ClientConnection] = []
    started = time.monotonic()
    try:
        for _ in range(SOCKETS // 250):
            batch = await asyncio.gather(
                *(websockets.connect(url, ping_interval=None) for _ in range(250))
            )
            sockets.extend(batch)
            ready = await asyncio.gather(*(ws.recv() for ws in batch))
            assert all(json.loads(r)["type"] == "ready" for r in ready)
        connect_s = time.monotonic() - started
        await asyncio.sleep(1)  # let the server settle before measuring
        held_rss = gateway_process.rss_mb
        async with httpx.AsyncClient() as http:
            health = (
                await http.get(
                    f"{gateway_process.admin_url}/admin/health",
                    headers={"Authorization": "Bearer " + gateway_process.signer.issue("admin")},
                )
            ).json()
        assert health["ws_connections"] == SOCKETS
        assert health["ws_channel_subscriptions"] == 1  # one NATS subscription, fanned out
        poke_started = time.monotonic()
        channel = f"owner:{ROSSI.sub}"
        await broker.publish_core(
            event_subject(channel), encode(ChangeEvent(channel=channel, seq=10**9))
        )
        pokes = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 60) for ws in sockets))
        fan_out_s = time.monotonic() - poke_started
        assert all(json.loads(p) == {"type": "changes", "seq": 10**9} for p in pokes)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    per_socket_kb = (held_rss - base_rss) * 1024 / SOCKETS
    report(
        "gateway: 10,000 idle WebSocket connections",
        [
            ("sockets", f"{SOCKETS}"),
            ("connect all (s)", f"{connect_s:.1f}"),
            ("server RSS before (MB)", f"{base_rss:.0f}"),
            ("server RSS holding them (MB)", f"{held_rss:.0f}"),
            ("per socket (KB)", f"{per_socket_kb:.1f}"),
            ("poke fan-out to all (s)", f"{fan_out_s:.2f}"),
        ],
        {
            "sockets": SOCKETS,
            "connect_s": connect_s,
            "rss_before_mb": base_rss,
            "rss_held_mb": held_rss,
            "per_socket_kb": per_socket_kb,
            "fanout_s": fan_out_s,
        },
    )


async def _seed(db: Path, count: int) -> None:
    store = create_store(StoreConfig(sqlite_path=str(db)))
    await store.start()
    rules = default_rules()
    try:
        for start in range(0, count, 1000):
            writes = []
            for i in range(start, min(start + 1000, count)):
                fields = {
                    "ownerid": ROSSI.sub,
                    "territory": "IT-NW",
                    "country": "IT",
                    "name": f"Cliente {i:06d} S.r.l.",
                    "address1_city": "Milano",
                    "description": "Rivenditore storico. " * 8,
                }
                record = Record(
                    entity="account",
                    id=str(uuid.uuid4()),
                    version=1,
                    fields=fields,
                    clocks={k: HLC(1_700_000_000_000, 0, "bench") for k in fields},
                    channels=rules.channels_for("account", fields),
                )
                writes.append(RecordWrite(record=record, expected_version=0))
            await store.apply(WriteBatch(writes=writes))
    finally:
        await store.close()


async def _bootstrap(gw: GatewayProcess, samples: list[float]) -> int:
    headers = {
        "Authorization": "Bearer " + gw.signer.issue("marco.rossi"),
        "Accept": "application/x-ndjson",
        "Accept-Encoding": "gzip",
    }
    lines = 0
    async with (
        httpx.AsyncClient(timeout=120) as http,
        http.stream(
            "GET", f"{gw.url}/v1/sync/bootstrap", params={"device_id": "bench"}, headers=headers
        ) as r,
    ):
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line:
                lines += 1
                if lines % 5 == 0:
                    samples.append(gw.anon_mb)
    return lines


async def test_bootstrap_memory_is_flat(gateway_process: GatewayProcess) -> None:
    """Memory a bootstrap request adds must not depend on the scope's size.

    Each scope is streamed twice: the first run warms the store's bounded caches (SQLite
    page cache, memory map), the second is measured. Anonymous memory (heap) is sampled
    while the stream is consumed.
    """
    rows: list[tuple[str, str]] = []
    figures: dict[str, float] = {}
    total = 0
    growth: dict[int, float] = {}
    for target in (5_000, 50_000):
        await _seed(gateway_process.db, target - total)
        total = target
        await _bootstrap(gateway_process, [])
        before = gateway_process.anon_mb
        samples: list[float] = []
        started = time.monotonic()
        frames = await _bootstrap(gateway_process, samples)
        took = time.monotonic() - started
        assert frames == total // 500 + 1
        growth[total] = max(samples, default=before) - before
        rows += [
            (f"{total} records: time (s)", f"{took:.1f}"),
            (f"{total} records: records/s", f"{total / took:.0f}"),
            (f"{total} records: peak heap growth (MB)", f"{growth[total]:.1f}"),
        ]
        figures[f"records_{total}_s"] = took
        figures[f"records_{total}_heap_growth_mb"] = growth[total]
    figures["rss_mb_after"] = gateway_process.rss_mb
    report("gateway: bootstrap server memory vs scope size", rows, figures)
    # Ten times the records must not mean more memory per request.
    assert growth[50_000] < growth[5_000] + 10
