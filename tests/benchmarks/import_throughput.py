"""Importer throughput: full load from the emulator through NATS and the applier into SQLite.

The pipeline under test is the production one, in separate processes like a deployment:

    emulator (process)  --HTTP/JSON-->  importer (this process)  --JetStream-->
    applier(s) (``crmsync applier`` processes)  -->  SQLite store

A run starts a fresh store and fresh streams, runs the full load of every entity and stops
the clock when the applier has acknowledged the last upstream batch and the store holds
every record. Reported per run: records/s and MB/s (JSON bytes received from the Web API),
and the ratio to the store's *raw* apply rate measured in the same run (the same records
written with ``store.apply`` in batches, no merge, no NATS, no HTTP): the share of the
store's own speed the whole pipeline keeps.

    python tests/benchmarks/import_throughput.py                 # 2,000,000 records, 3 runs
    python tests/benchmarks/import_throughput.py --records 200000 --runs 1
    python tests/benchmarks/import_throughput.py --profile       # pyinstrument, importer side

Goal: >= 25,000 records/s end to end on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from backend.messaging.broker import NatsBroker
from backend.messaging.config import NatsConfig
from backend.messaging.subjects import UPSTREAM_STREAM
from backend.store.config import StoreConfig
from backend.store.sqlite import SqliteRecordStore
from backend.store.types import RecordWrite, WriteBatch
from importer.config import ImporterConfig
from importer.runtime import ImporterRuntime, ImporterSettings
from infra.dynamics_emulator.runner import free_port
from infra.nats.server import NatsServer
from sync_protocol.default_rules import default_rules
from sync_protocol.records import Record
from tests.benchmarks._report import report

SHARES = {
    "accounts": 0.20,
    "contacts": 0.30,
    "leads": 0.125,
    "opportunities": 0.15,
    "quotes": 0.075,
    "appointments": 0.15,
}
CLIENT_ID = "crmsync-importer"
CLIENT_SECRET = "emulator-secret"
APPLIER_DURABLE = "applier-upstream"


def counts_for(total: int) -> dict[str, int]:
    """Records per entity set summing to ``total`` (2,000 system users own them)."""
    counts = {name: int(total * share) for name, share in SHARES.items()}
    counts["contacts"] += total - sum(counts.values())
    counts["systemusers"] = 2000
    return counts


def start_emulator(counts: dict[str, int], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "CRMSYNC_EMULATOR_COUNTS": ",".join(f"{k}={v}" for k, v in counts.items()),
            "CRMSYNC_EMULATOR_LIMITS_ENABLED": "false",
            "CRMSYNC_EMULATOR_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET}",
        }
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "infra.dynamics_emulator", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_applier(nats_url: str, db: Path, workdir: Path, n: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("CRMSYNC_CONFIG", None)
    env.update(
        {
            "CRMSYNC_NATS_URL": nats_url,
            "CRMSYNC_STORE_SQLITE_PATH": str(db),
            "CRMSYNC_GATEWAY_DEV_AUTH": "true",
            "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(workdir / "dev-keys"),
            "CRMSYNC_GATEWAY_LOG_LEVEL": "WARNING",
            "CRMSYNC_APPLIER_FETCH_WAIT_S": "0.2",
            "CRMSYNC_APPLIER_UPSTREAM_BATCH": "4",
            "CRMSYNC_APPLIER_CHANGESET_WORKERS": "1",
            "CRMSYNC_APPLIER_COMPACT_INTERVAL_S": "0",
        }
    )
    with (workdir / f"applier-{n}.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "applier"],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_http(url: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient() as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def raw_apply_rate(db: Path, runtime: ImporterRuntime, sample: int) -> float:
    """records/s of ``store.apply`` alone, on records shaped like the loaded ones."""
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(db)))
    await store.start()
    try:
        emap = runtime.maps["account"]
        rows: list[Record] = []
        url: str | None = runtime.client.query_url(emap.entity_set, emap.select)
        while url is not None and len(rows) < sample:
            page = emap.decode_page(await runtime.client.get_page_bytes(url))
            rules = runtime.settings.rules
            for m in page.mutations:
                rows.append(
                    Record(
                        entity=m.entity,
                        id=m.id,
                        version=1,
                        fields=m.fields,
                        clocks={k: m.clock for k in m.fields},
                        field_versions={k: 1 for k in m.fields},
                        channels=rules.channels_for(m.entity, m.fields),
                        origin="upstream:dynamics",
                        upstream_etag=m.etag,
                    )
                )
            url = page.next_link
        rows = rows[:sample]
        t0 = time.perf_counter()
        step = 1000
        for i in range(0, len(rows), step):
            writes = [RecordWrite(record=r, expected_version=0) for r in rows[i : i + step]]
            await store.apply(WriteBatch(writes=writes))
        return len(rows) / (time.perf_counter() - t0)
    finally:
        await store.close()


def write_profile(path: Path, profiler: Any) -> None:
    """Save a pyinstrument profile as HTML."""
    path.write_text(profiler.output_html())
    print(f"profile written to {path}")


async def wait_drained(broker: NatsBroker, within_s: float) -> None:
    """Until the applier has acked every upstream message."""
    deadline = time.monotonic() + within_s
    while True:
        with contextlib.suppress(Exception):
            state = await broker.consumer_state(UPSTREAM_STREAM, APPLIER_DURABLE)
            stream = await broker.stream_state(UPSTREAM_STREAM)
            if state.ack_floor_stream_seq >= stream.last_seq and state.num_ack_pending == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the applier did not drain in time")
        await asyncio.sleep(0.05)


async def one_run(
    args: argparse.Namespace, emulator_url: str, counts: dict[str, int], n: int
) -> dict[str, Any]:
    total = sum(v for k, v in counts.items() if k != "systemusers")
    with tempfile.TemporaryDirectory(prefix="crmsync-import-bench-") as tmp:
        work = Path(tmp)
        db = work / "store.db"
        nats = NatsServer(store_dir=work / "nats")
        nats.start()
        appliers: list[subprocess.Popen[bytes]] = []
        try:
            nats_config = NatsConfig(servers=(nats.url,), request_timeout=30.0)
            broker = NatsBroker(nats_config)
            await broker.connect()
            await broker.ensure_streams()
            store = SqliteRecordStore(StoreConfig(sqlite_path=str(db)))
            await store.start()
            appliers = [start_applier(nats.url, db, work, i) for i in range(args.appliers)]
            settings = ImporterSettings(
                importer=ImporterConfig(
                    base_url=f"{emulator_url}/api/data/v9.2/",
                    client_id=CLIENT_ID,
                    client_secret=CLIENT_SECRET,
                    token_url=f"{emulator_url}/bench/oauth2/v2.0/token",
                    page_size=5000,
                    batch_mutations=args.batch,
                    parallel_entities=args.parallel,
                    max_parallel=4,
                ),
                nats=nats_config,
                store=StoreConfig(sqlite_path=str(db)),
                rules=default_rules(),
            )
            runtime = ImporterRuntime(settings, store=store, broker=broker)
            await runtime.start()
            profiler: Any = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="enabled")
                profiler.start()
            t0 = time.perf_counter()
            stats = await runtime.full_load()
            t_published = time.perf_counter() - t0
            await wait_drained(broker, within_s=3600)
            elapsed = time.perf_counter() - t0
            if profiler is not None:
                profiler.stop()
                write_profile(Path(args.profile_out or "import_profile.html"), profiler)
            loaded = sum(s.records for s in stats.values())
            assert loaded == total, f"loaded {loaded} of {total}"
            # Every record was written exactly once: one sequence number each.
            head = await store.head_seq()
            assert head == total, f"store holds {head} writes for {total} records"
            mbytes = runtime.client.stats.bytes_received / 1e6
            raw = await raw_apply_rate(work / "raw.db", runtime, args.raw_records)
            await runtime.close()
            await store.close()
            await broker.close()
            rate = total / elapsed
            print(
                f"run {n}: {total:,} records in {elapsed:,.1f}s = {rate:,.0f} records/s, "
                f"{mbytes / elapsed:,.1f} MB/s (published in {t_published:,.1f}s); "
                f"raw store apply {raw:,.0f} records/s; ratio {rate / raw:.3f}",
                flush=True,
            )
            return {
                "records": total,
                "seconds": elapsed,
                "records_per_s": rate,
                "mb_per_s": mbytes / elapsed,
                "publish_s": t_published,
                "raw_apply_per_s": raw,
                "ratio": rate / raw,
            }
        finally:
            for proc in appliers:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in appliers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                if proc.poll() is None:
                    proc.kill()
            nats.stop()


async def main_async(args: argparse.Namespace) -> None:
    counts = counts_for(args.records)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="crmsync-emulator-") as tmp:
        emulator = start_emulator(counts, port, Path(tmp) / "emulator.log")
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_http(f"{url}/_emulator/health")
            runs = [await one_run(args, url, counts, n + 1) for n in range(args.runs)]
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    report(
        "import_throughput",
        [
            {
                "records": int(median["records"]),
                "runs": len(runs),
                "seconds": median["seconds"],
                "records_per_s": median["records_per_s"],
                "mb_per_s": median["mb_per_s"],
                "raw_apply_per_s": median["raw_apply_per_s"],
                "ratio_to_raw_apply": median["ratio"],
                "goal_records_per_s": 25_000,
            }
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2_000_000, help="records over 6 entities")
    parser.add_argument("--runs", type=int, default=3, help="runs (the median is reported)")
    parser.add_argument("--appliers", type=int, default=2, help="applier processes (one per core)")
    parser.add_argument("--batch", type=int, default=1000, help="records per upstream message")
    parser.add_argument("--parallel", type=int, default=2, help="entities loaded at once")
    parser.add_argument("--raw-records", type=int, default=100_000, help="raw apply sample")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the importer")
    parser.add_argument("--profile-out", default=None, help="profile HTML path")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
