"""Record store speed: bulk apply and full change-feed reads on the SQLite adapter.

Run: ``.venv/bin/python tests/benchmarks/store.py`` (``--records 200000`` for a quick look).

Each run writes ``--records`` account records (about 1.3 KB each as stored: 18 fields with
per-field clocks) in batches of ``--batch`` to a fresh store, each record in one of
``--channels`` owner channels (``--channels-per-record 3`` adds a territory and a country
channel, as the default sync rules do). Then it reads the whole change feed, once channel
by channel (as devices pull) and once for all channels at once (one K-way merge).

Baseline, measured in the same run and interleaved batch by batch so both see the same
machine load: raw ``sqlite3`` ``executemany`` of the same rows (entity, id, version, seq and
the same msgpack bytes) into a ``(rid, entity, id, version, seq, data)`` table with a unique
``(entity, id)`` key, one transaction per batch, with the store's pragmas (WAL,
``synchronous=NORMAL``, 64 MiB cache, ``wal_autocheckpoint=10000``). Row encoding for the
baseline and batch construction for the store are outside the timed sections.

Rates are reported per wall-clock second and per CPU second of this process (all its
threads): on a shared machine the CPU figures are the steadier ones.

Goals: apply >= 50,000 records/s with ratio to the baseline >= 0.5; feed reads >= 200,000
records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import msgspec

from backend.store.config import StoreConfig
from backend.store.sqlite import SqliteRecordStore, remove_database
from backend.store.types import RecordWrite, WriteBatch
from sync_protocol.hlc import HLC
from sync_protocol.records import Record
from tests.benchmarks._report import report

CITIES = ["Milano", "Città di Castello", "München", "Łódź", "Sevilla", "Besançon", "Kraków"]
COUNTRIES = ["IT", "DE", "FR", "ES", "PL"]
NOW = 1_800_000_000_000
_encode = msgspec.msgpack.Encoder().encode


class Accounts:
    """Deterministic account records, generated batch by batch (the same for both sides)."""

    def __init__(self, channels: int, per_record: int) -> None:
        rnd = random.Random(42)
        self.owners = [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(channels)]
        self.per_record = per_record

    def batch(self, start: int, size: int) -> list[Record]:
        rnd = random.Random(start)
        return [self.account(i, rnd) for i in range(start, start + size)]

    def account(self, i: int, rnd: random.Random) -> Record:
        owner = self.owners[i % len(self.owners)]
        country = COUNTRIES[i % len(COUNTRIES)]
        territory = f"{country}-{i % 4}"
        fields = {
            "name": f"Azienda {i} S.r.l.",
            "accountnumber": f"{country}-{i:08d}",
            "telephone1": f"+39 02 {rnd.randrange(10**7):07d}",
            "emailaddress1": f"info{i}@example.it",
            "address1_line1": f"Via Roma {i % 300}",
            "address1_city": rnd.choice(CITIES),
            "address1_postalcode": f"{rnd.randrange(10**5):05d}",
            "address1_country": "Italia",
            "industrycode": rnd.randint(1, 7),
            "revenue": round(rnd.random() * 1e7, 2),
            "numberofemployees": rnd.randrange(5000),
            "ownerid": owner,
            "territory": territory,
            "country": country,
            "statecode": 0,
            "statuscode": 1,
            "createdon": "2025-01-02T10:00:00Z",
            "modifiedon": "2026-03-04T11:22:33Z",
        }
        clock = HLC(NOW + i, 0, "upstream:dynamics")
        channels = [f"owner:{owner}", f"territory:{territory}", f"country:{country}"]
        return Record(
            entity="account",
            id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            version=1,
            fields=fields,
            clocks=dict.fromkeys(fields, clock),
            field_versions=dict.fromkeys(fields, 1),
            channels=channels[: self.per_record],
            origin="upstream:dynamics",
            upstream_etag=f'W/"{i}"',
            updated_ms=NOW,
        )


def open_baseline(path: Path) -> sqlite3.Connection:
    remove_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA wal_autocheckpoint = 10000")
    conn.execute(
        "CREATE TABLE records (rid INTEGER PRIMARY KEY, entity TEXT NOT NULL, id TEXT NOT NULL,"
        " version INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
        " UNIQUE (entity, id))"
    )
    return conn


async def one_run(directory: Path, args: argparse.Namespace) -> dict[str, float]:
    accounts = Accounts(args.channels, args.channels_per_record)
    base = open_baseline(directory / "baseline.db")
    store_path = directory / "store.db"
    remove_database(store_path)
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(store_path)))
    await store.start()
    t_base = t_store = c_base = c_store = 0.0
    seq = 0
    try:
        for start in range(0, args.records, args.batch):
            size = min(args.batch, args.records - start)
            rows = []
            for r in accounts.batch(start, size):
                seq += 1
                rows.append((r.entity, r.id, r.version, seq, _encode(r)))
            t0, c0 = time.perf_counter(), time.process_time()
            base.execute("BEGIN")
            base.executemany(
                "INSERT INTO records (entity, id, version, seq, data) VALUES (?, ?, ?, ?, ?)", rows
            )
            base.execute("COMMIT")
            t_base += time.perf_counter() - t0
            c_base += time.process_time() - c0

            batch = WriteBatch(
                writes=[
                    RecordWrite(record=r, expected_version=0) for r in accounts.batch(start, size)
                ]
            )
            t0, c0 = time.perf_counter(), time.process_time()
            await store.apply(batch)
            t_store += time.perf_counter() - t0
            c_store += time.process_time() - c0
        base.close()

        owner_channels = [f"owner:{o}" for o in accounts.owners]
        t0, c0 = time.perf_counter(), time.process_time()
        per_channel = 0
        for channel in owner_channels:
            after = 0
            while True:
                page = await store.changes([channel], after, limit=1000)
                per_channel += len(page.entries)
                after = page.last_seq
                if not page.has_more:
                    break
        t_feed, c_feed = time.perf_counter() - t0, time.process_time() - c0
        assert per_channel == args.records, per_channel

        t0, c0 = time.perf_counter(), time.process_time()
        union = 0
        after = 0
        while True:
            page = await store.changes(owner_channels, after, limit=1000)
            union += len(page.entries)
            after = page.last_seq
            if not page.has_more:
                break
        t_union, c_union = time.perf_counter() - t0, time.process_time() - c0
        assert union == args.records, union
    finally:
        await store.close()
        remove_database(store_path)
        remove_database(directory / "baseline.db")
    return {
        "apply": args.records / t_store,
        "baseline": args.records / t_base,
        "feed_per_channel": args.records / t_feed,
        "feed_union": args.records / t_union,
        "apply_cpu": args.records / c_store,
        "baseline_cpu": args.records / c_base,
        "feed_per_channel_cpu": args.records / c_feed,
        "feed_union_cpu": args.records / c_union,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--channels-per-record", type=int, default=1, choices=[1, 2, 3])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args()

    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="crmsync-store-bench-") as tmp:
        for n in range(args.runs):
            result = asyncio.run(one_run(Path(tmp), args))
            runs.append(result)
            print(
                f"run {n + 1}: apply {result['apply']:,.0f}/s,"
                f" baseline {result['baseline']:,.0f}/s,"
                f" feed {result['feed_per_channel']:,.0f}/s, union {result['feed_union']:,.0f}/s",
                flush=True,
            )
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    ratio = statistics.median(r["apply"] / r["baseline"] for r in runs)
    label = f"{args.records:,} accounts, batches of {args.batch:,}, {args.channels} channels"
    label += f", {args.channels_per_record} channel(s) per record, median of {args.runs}"
    cpu_ratio = statistics.median(r["apply_cpu"] / r["baseline_cpu"] for r in runs)
    report(
        f"store (sqlite): {label}",
        [
            {
                "phase": "apply",
                "records_per_s": med["apply"],
                "baseline_per_s": med["baseline"],
                "ratio": ratio,
                "per_cpu_s": med["apply_cpu"],
                "baseline_per_cpu_s": med["baseline_cpu"],
                "cpu_ratio": cpu_ratio,
                "goal": ">= 50,000/s, ratio >= 0.5",
            },
            {
                "phase": "feed, channel by channel",
                "records_per_s": med["feed_per_channel"],
                "baseline_per_s": "",
                "ratio": "",
                "per_cpu_s": med["feed_per_channel_cpu"],
                "baseline_per_cpu_s": "",
                "cpu_ratio": "",
                "goal": ">= 200,000/s",
            },
            {
                "phase": "feed, all channels merged",
                "records_per_s": med["feed_union"],
                "baseline_per_s": "",
                "ratio": "",
                "per_cpu_s": med["feed_union_cpu"],
                "baseline_per_cpu_s": "",
                "cpu_ratio": "",
                "goal": ">= 200,000/s",
            },
        ],
    )


if __name__ == "__main__":
    main()
