"""Client bootstrap: a 100,000-record snapshot streamed into the encrypted replica.

Run: ``.venv/bin/python tests/benchmarks/client_bootstrap.py [--records 100000 --runs 3]``.

What is timed (``ours``): one ``SyncEngine.sync()`` of a fresh device through the real
``HttpTransport``: the gateway's own frame encoder (``backend.gateway.bootstrap``)
produced the gzip'd, length-prefixed msgpack stream beforehand, and an ``httpx``
mock transport serves it from a file in 64 KiB chunks, so the SDK does all its real work:
gzip inflate, frame split, msgpack decode, rebase checks, records + JSONB + FTS5 search
documents + per-entity field indexes, checksum bookkeeping, resume token per batch in the
same transaction, the final pull and the checksum verification. The network and the
server are not in the measurement.

Baseline (same run, same rows, same SQLCipher pragmas: WAL, synchronous NORMAL, 8 MiB
page cache): raw ``executemany`` of the decoded rows into a bare ``records`` table (no
search, no index), one commit per batch.

Memory: every run is a fresh child process; the report gives its peak RSS, plus the RSS
after the first batch and after the last (flat memory: the difference stays small
whatever the snapshot size); ``--records`` 4x smaller is also run to show the peak does
not grow with the scope.

Goal: >= 30,000 records/s, ratio >= 0.5, memory flat. Rates are wall-clock; the
records per CPU-second row (the process's CPU, worker threads included) is the one to
compare when other work shares the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import msgspec
import psutil
import sqlcipher3

from backend.gateway.bootstrap import encode_frame
from client_sdk.client import CrmClient
from client_sdk.events import SyncProgress
from client_sdk.keys import KeystoreKey
from client_sdk.sync import SyncConfig
from client_sdk.transport import HttpTransport
from sync_protocol.checksum import ChannelChecksum, record_hash
from sync_protocol.hlc import HLC
from sync_protocol.pull import BootstrapBatch, PullResponse
from sync_protocol.records import RecordChange
from tests.benchmarks._report import report

KEK = KeystoreKey(b"\x42" * 32)
CHUNK = 64 * 1024
NOW = 1_790_000_000_000

PEOPLE = {
    "IT": (
        "Marco Giulia Luca Francesca Niccolò Chiara Matteo Sara",
        "Rossi Bianchi Esposito Colombo Ricci Marino Greco Bruno Gallo Conti",
        "Milano Torino Città_di_Castello Forlì Cantù Napoli Bologna Genova",
        "+39 02",
    ),
    "DE": (
        "Jürgen Günter Björn Sören Anna Lena Jörg Uwe",
        "Müller Schröder Weiß Groß Köhler Schäfer Krüger Wagner Becker Hoffmann",
        "München Köln Düsseldorf Nürnberg Würzburg Straßburg Lübeck Göttingen",
        "+49 89",
    ),
    "FR": (
        "François Hélène Chloé Jérôme Zoé Anaïs Noël Gaëlle",
        "Lefèvre Bézier Garçon Dupré Mercier Faure André Rousseau Girard Blanc",
        "Besançon Orléans Nîmes Périgueux Angoulême Béziers Évry Saint-Étienne",
        "+33 1",
    ),
    "ES": (
        "José María Íñigo Begoña Ramón Lucía Ángel Nuria",
        "García Martínez Núñez Peña Muñoz Ibáñez Gómez Sánchez Pérez Díaz",
        "Málaga Córdoba León Cádiz Ávila Logroño Sevilla A_Coruña",
        "+34 91",
    ),
    "PL": (
        "Łukasz Paweł Michał Małgorzata Zofia Wojciech Józef Agnieszka",
        "Kowalski Wiśniewski Wójcik Kamiński Lewandowski Zieliński Szymański Dąbrowski",
        "Łódź Kraków Gdańsk Wrocław Poznań Białystok Częstochowa Toruń",
        "+48 22",
    ),
}
"""Per country: first names, surnames, cities (``_`` joins words), phone prefix."""
COMPANY = ["S.p.A.", "GmbH", "SARL", "S.L.", "Sp. z o.o.", "& Figli", "AG", "Group"]


def make_changes(n: int, seed: int = 11) -> Iterator[RecordChange]:
    """Accounts, contacts, leads, opportunities and appointments (2:5:1:1:1), with the
    channels a dealer network's sync rules give them."""
    rnd = random.Random(seed)
    owners = [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(40)]
    accounts: list[str] = []
    kinds = ["account"] * 2 + ["contact"] * 5 + ["lead", "opportunity", "appointment"]
    for i in range(n):
        cc = rnd.choice(list(PEOPLE))
        first_text, last_text, city_text, prefix = PEOPLE[cc]
        first, last, cities = first_text.split(), last_text.split(), city_text.split()
        entity = kinds[i % len(kinds)] if accounts else "account"
        id_ = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        owner = rnd.choice(owners)
        city = rnd.choice(cities).replace("_", " ")
        surname = rnd.choice(last)
        phone = f"{prefix} {rnd.randrange(10**7):07d}"
        if entity == "account":
            accounts.append(id_)
            fields: dict[str, Any] = {
                "name": f"{surname} {city} {rnd.choice(COMPANY)}",
                "accountnumber": f"{cc}-{i:08d}",
                "telephone1": phone,
                "emailaddress1": f"info{i}@example.{cc.lower()}",
                "address1_line1": f"Via {rnd.choice(last)} {rnd.randrange(1, 200)}",
                "address1_city": city,
                "address1_postalcode": f"{rnd.randrange(10**5):05d}",
                "industrycode": rnd.randrange(1, 8),
                "revenue": round(rnd.random() * 1e7, 2),
                "numberofemployees": rnd.randrange(1, 5000),
                "statecode": 0,
            }
        elif entity == "contact":
            given = rnd.choice(first)
            fields = {
                "firstname": given,
                "lastname": surname,
                "fullname": f"{given} {surname}",
                "jobtitle": rnd.choice(["CEO", "Buyer", "Técnico", "Einkauf", "Acheteur"]),
                "emailaddress1": f"{given[:1].lower()}{i}@example.{cc.lower()}",
                "mobilephone": phone,
                "address1_city": city,
                "parentcustomerid": rnd.choice(accounts),
                "statecode": 0,
            }
        elif entity == "lead":
            fields = {
                "subject": f"Fiera {city} {2026 - i % 3}",
                "lastname": surname,
                "companyname": f"{surname} {rnd.choice(COMPANY)}",
                "telephone1": phone,
                "leadsourcecode": rnd.randrange(1, 6),
                "statecode": 0,
            }
        elif entity == "opportunity":
            fields = {
                "name": f"Rinnovo flotta {surname}",
                "parentaccountid": rnd.choice(accounts),
                "estimatedvalue": round(rnd.random() * 1e6, 2),
                "closeprobability": rnd.randrange(0, 100),
                "salesstage": rnd.randrange(0, 4),
                "statecode": 0,
            }
        else:
            fields = {
                "subject": f"Visita {surname}",
                "location": city,
                "scheduledstart": "2026-03-02T09:00:00Z",
                "scheduledend": "2026-03-02T10:00:00Z",
                "regardingobjectid": rnd.choice(accounts),
                "statecode": 3,
            }
        fields.update({"ownerid": owner, "territory": f"{cc}-01", "country": cc})
        yield RecordChange(
            entity=entity,
            id=id_,
            version=rnd.randrange(1, 6),
            seq=i + 1,
            fields=fields,
            clock=HLC(NOW + i, 0, "upstream:dynamics"),
            channels=[f"owner:{owner}", f"territory:{cc}-01", f"country:{cc}"],
        )


def write_stream(path: Path, n: int, batch: int) -> dict[str, ChannelChecksum]:
    """The bootstrap response body, as the gateway streams it (sorted by key, gzip'd).

    Returns:
        The per-channel checksums the final pull will report.
    """
    changes = sorted(make_changes(n), key=lambda c: (c.entity, c.id))
    sums: dict[str, ChannelChecksum] = {}
    with gzip.open(path, "wb", compresslevel=6) as out:
        for start in range(0, len(changes), batch):
            records = changes[start : start + batch]
            done = start + batch >= len(changes)
            frame = BootstrapBatch(
                records=records,
                resume=f"r{start + len(records)}",
                done=done,
                checkpoint="cp-head" if done else "",
                total=start + len(records),
            )
            out.write(encode_frame(frame, "msgpack"))
            for c in records:
                h = record_hash(c.entity, c.id, c.version, c.fields)
                for ch in c.channels:
                    sums[ch] = sums.get(ch, ChannelChecksum()).add(h)
    return sums


# --- child: ours ---------------------------------------------------------------------


def rss_mib() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def peak_rss_mib() -> float:
    """This process's RSS high-water mark (``VmHWM``: unlike ``ru_maxrss`` it is not
    inherited from the parent across fork and exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_ours(stream: Path, sums_json: bytes, db_path: Path, n: int) -> dict[str, Any]:
    sums = msgspec.json.decode(sums_json, type=dict[str, ChannelChecksum])
    final_pull = msgspec.msgpack.encode(
        PullResponse(protocol=1, checkpoint="cp-head", has_more=False, checksums=sums)
    )

    async def body() -> AsyncIterator[bytes]:
        with stream.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/devices/":
            return httpx.Response(201, json={"device_id": "bench"})
        if path == "/v1/sync/bootstrap":
            return httpx.Response(
                200,
                headers={
                    "Content-Type": "application/vnd.crmsync.bootstrap+msgpack",
                    "Content-Encoding": "gzip",
                },
                content=body(),
            )
        if path == "/v1/sync/pull":
            return httpx.Response(
                200, headers={"Content-Type": "application/msgpack"}, content=final_pull
            )
        return httpx.Response(404)

    transport = HttpTransport(
        "http://bench.invalid",
        lambda: "token",
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    client = CrmClient.open(
        db_path,
        keystore_key=KEK.key,
        device_id="bench",
        transport=transport,
        config=SyncConfig(verify_checksums=True),
    )
    samples: list[float] = []

    def on_event(event: object) -> None:
        if isinstance(event, SyncProgress) and event.phase == "bootstrap":
            samples.append(rss_mib())

    client.subscribe(on_event)
    started, cpu_started = time.perf_counter(), time.process_time()
    done = await client.sync()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = client.db.count_records()
    hits = len(client.search("müller", limit=10))
    await client.aclose()
    if count != n or done.checksum_ok is not True or hits == 0:
        raise SystemExit(f"bootstrap incomplete: {count}/{n}, checksums {done.checksum_ok}")
    return {
        "rate": n / elapsed,
        "cpu_rate": n / cpu,
        "seconds": elapsed,
        "rss_first_batch_mib": samples[0],
        "rss_last_batch_mib": samples[-1],
        "peak_rss_mib": peak_rss_mib(),
    }


# --- child: raw baseline -------------------------------------------------------------


def run_raw(stream: Path, db_path: Path, n: int) -> dict[str, Any]:
    decoder = msgspec.msgpack.Decoder(BootstrapBatch)
    data = gzip.decompress(stream.read_bytes())
    encode = msgspec.json.encode
    batches: list[list[tuple[Any, ...]]] = []
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        batch = decoder.decode(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
        batches.append(
            [
                (r.entity, r.id, r.version, r.seq, encode(r.fields), 0, encode(r.channels))
                for r in batch.records
            ]
        )
    del data
    conn = sqlcipher3.connect(str(db_path))
    conn.execute(f"PRAGMA key = \"x'{'42' * 32}'\"")
    conn.execute("PRAGMA journal_mode = WAL")
    for pragma in ("synchronous = NORMAL", "cache_size = -8192", "temp_store = MEMORY"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(
        "CREATE TABLE records(entity TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,"
        " seq INTEGER NOT NULL, fields BLOB NOT NULL, deleted INTEGER NOT NULL,"
        " channels TEXT NOT NULL, PRIMARY KEY (entity, id)) WITHOUT ROWID"
    )
    conn.commit()
    started, cpu_started = time.perf_counter(), time.process_time()
    for rows in batches:
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.commit()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    conn.close()
    return {"rate": n / elapsed, "cpu_rate": n / cpu, "seconds": elapsed}


# --- driver --------------------------------------------------------------------------


def child(role: str, work: Path, n: int, run: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (clean caches, clean peak RSS)."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            role,
            "--dir",
            str(work),
            "--records",
            str(n),
            "--run",
            str(run),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def prepare(work: Path, n: int, batch: int) -> None:
    stream = work / f"stream-{n}.bin"
    if not stream.exists():
        sums = write_stream(stream, n, batch)
        (work / f"sums-{n}.json").write_bytes(msgspec.json.encode(sums))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2000, help="records per frame")
    parser.add_argument("--dir", type=Path, default=None, help="work dir (default: temp)")
    parser.add_argument("--child", choices=["ours", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.records

    if args.child:
        work: Path = args.dir
        db_path = work / f"{args.child}-{n}-{args.run}.db"
        stream = work / f"stream-{n}.bin"
        if args.child == "ours":
            sums_json = (work / f"sums-{n}.json").read_bytes()
            result = asyncio.run(run_ours(stream, sums_json, db_path, n))
        else:
            result = run_raw(stream, db_path, n)
        for p in work.glob(db_path.name + "*"):
            p.unlink()
        print(json.dumps(result))
        return

    work = Path(tempfile.mkdtemp(prefix="crmsync-boot-", dir=args.dir))
    try:
        small = max(1000, n // 4)
        for size in (n, small):
            prepare(work, size, args.batch)
        ours, raw = [], []
        for run in range(args.runs):
            ours.append(child("ours", work, n, run))
            raw.append(child("raw", work, n, run))
        small_ours = child("ours", work, small, 0)
        rate = statistics.median(r["rate"] for r in ours)
        base = statistics.median(r["rate"] for r in raw)
        cpu_rate = statistics.median(r["cpu_rate"] for r in ours)
        cpu_base = statistics.median(r["cpu_rate"] for r in raw)
        peak = statistics.median(r["peak_rss_mib"] for r in ours)
        first = statistics.median(r["rss_first_batch_mib"] for r in ours)
        last = statistics.median(r["rss_last_batch_mib"] for r in ours)
        report(
            f"client bootstrap ({n:,} records, {args.batch} per frame, median of {args.runs})",
            [
                {
                    "metric": "bootstrap rec/s",
                    "value": rate,
                    "baseline": base,
                    "ratio": rate / base,
                    "goal": ">= 30,000; ratio >= 0.5",
                },
                {
                    "metric": "bootstrap rec per CPU-second",
                    "value": cpu_rate,
                    "baseline": cpu_base,
                    "ratio": cpu_rate / cpu_base,
                    "goal": "(robust to a loaded machine)",
                },
                {
                    "metric": "RSS after first batch MiB",
                    "value": first,
                    "baseline": "",
                    "ratio": "",
                    "goal": "",
                },
                {
                    "metric": "RSS after last batch MiB",
                    "value": last,
                    "baseline": "",
                    "ratio": last / first,
                    "goal": "flat",
                },
                {
                    "metric": f"peak RSS MiB ({n:,})",
                    "value": peak,
                    "baseline": small_ours["peak_rss_mib"],
                    "ratio": peak / small_ours["peak_rss_mib"],
                    "goal": f"~ peak at {small:,}",
                },
                {
                    "metric": "stream size MiB (gzip)",
                    "value": (work / f"stream-{n}.bin").stat().st_size / 2**20,
                    "baseline": "",
                    "ratio": "",
                    "goal": "",
                },
            ],
        )
        print(
            "runs ours:", [round(r["rate"]) for r in ours], "raw:", [round(r["rate"]) for r in raw]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
