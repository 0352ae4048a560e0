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

Baselines, each measured in the same run (fresh processes, interleaved with ours):

- ``same`` (the goal's baseline): raw ``executemany`` of exactly the rows our bootstrap
  writes, into the same schema (created by ``LocalDatabase.create`` with the SDK's
  migrations: the same tables, FTS5 table with ``unicode61 remove_diacritics 2``,
  prefix indexes and ``detail=column``, the same per-entity field indexes and unique
  key), through the same SQLCipher connection settings (raw-key ``PRAGMA key``, WAL,
  synchronous NORMAL, 8 MiB page cache, ...), one transaction per batch. Per batch:
  the ``records`` rows (same ``doc`` numbers, the same JSONB bytes), their FTS5 search
  documents (the same text), the ``doc_counter`` rows, the ``channel_checksums`` rows
  and the ``sync_state`` rows (resume token, count, device clock). Everything
  is computed before the clock starts: JSONB (by SQLite), search documents (by
  ``client_sdk.search.document_for``), checksums, docs. So the ratio is the SDK's whole
  overhead (network stack, inflate, decode, validation, encoding, search documents,
  hashing, the reads it needs, threads) over the raw database doing the same writes.
- ``bare``: raw ``executemany`` of the decoded rows into a bare ``records`` table (no
  search, no index, no bookkeeping), one commit per batch. Kept for reference: it does
  far less than the SDK must (offline search needs the FTS5 rows and the field index
  entries), so its ratio is not the goal's.

Memory: every run is a fresh child process; the report gives its peak RSS, plus the RSS
after the first batch and after the last (flat memory: the difference stays small
whatever the snapshot size); ``--records`` 4x smaller is also run to show the peak does
not grow with the scope.

Goal: >= 30,000 records/s, ratio >= 0.5 against ``same``, memory flat. Rates are
wall-clock; the records per CPU-second rows (the process's CPU, worker threads
included) are the ones to compare when other work shares the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
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
from client_sdk import search
from client_sdk.client import CrmClient
from client_sdk.database import (
    DEFAULT_FIELD_INDEXES,
    LocalDatabase,
    field_expression,
    field_index_name,
)
from client_sdk.events import SyncProgress
from client_sdk.keys import KeystoreKey
from client_sdk.local import HLC_KEY
from client_sdk.sync import (
    BOOT_ACTIVE_KEY,
    BOOT_COUNT_KEY,
    BOOT_MODE_KEY,
    BOOT_RESUME_KEY,
    CHECKPOINT_KEY,
    REPLICA_MIGRATIONS,
    SyncConfig,
)
from client_sdk.transport import HttpTransport
from sync_protocol.checksum import ChannelChecksum, record_hash
from sync_protocol.entities import SCHEMAS
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
# Option values from the schema (they follow Dynamics' standard sets).
INDUSTRY_CODES = sorted(SCHEMAS["account"].fields["industrycode"].options)
LEAD_SOURCES = sorted(SCHEMAS["lead"].fields["leadsourcecode"].options)
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
                "industrycode": rnd.choice(INDUSTRY_CODES),
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
                "leadsourcecode": rnd.choice(LEAD_SOURCES),
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
            channels=(f"owner:{owner}", f"territory:{cc}-01", f"country:{cc}"),
        )


def write_stream(path: Path, n: int, batch: int) -> dict[str, ChannelChecksum]:
    """The bootstrap response body, as the gateway streams it (gzip'd, in sequence order:
    the order records were written in, so ids and entities come mixed).

    Returns:
        The per-channel checksums the final pull will report.
    """
    changes = list(make_changes(n))
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


_PROCESS = psutil.Process()


def rss_mib() -> float:
    return float(_PROCESS.memory_info().rss) / 2**20


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
    digests = content_digests(client.db.conn)
    index_keys = field_index_keys(client.db.conn)
    await client.aclose()
    if count != n or done.checksum_ok is not True or hits == 0:
        raise SystemExit(f"bootstrap incomplete: {count}/{n}, checksums {done.checksum_ok}")
    if not index_keys.get(field_index_name("contact", "parentcustomerid")):
        raise SystemExit(f"field index entries have no keys: {index_keys}")
    return {
        "rate": n / elapsed,
        "cpu_rate": n / cpu,
        "seconds": elapsed,
        "rss_first_batch_mib": samples[0],
        "rss_last_batch_mib": samples[-1],
        "peak_rss_mib": peak_rss_mib(),
        "digests": digests,
        "field_index_keys": index_keys,
    }


# --- children: raw baselines ---------------------------------------------------------


DIGESTED = {
    "records": "SELECT doc, entity, id, version, seq, fields, deleted, channels FROM records"
    " ORDER BY doc",
    "search_index": "SELECT id, block FROM search_index_data ORDER BY id",
    "doc_counter": "SELECT * FROM doc_counter ORDER BY entity_code",
    "channel_checksums": "SELECT * FROM channel_checksums ORDER BY channel",
    # Per field index, its entries that have a key, read through the index itself.
    "field_index_keys": " UNION ALL ".join(
        f"SELECT '{field_index_name(e, f)}', count(*) FROM records"
        f' INDEXED BY "{field_index_name(e, f)}"'
        f" WHERE entity = '{e}' AND {field_expression(f)} IS NOT NULL"
        for e, f in DEFAULT_FIELD_INDEXES
    ),
}
"""What ``ours`` and ``same`` must have written identically (FTS5's own b-tree included)."""


def field_index_keys(conn: Any) -> dict[str, int]:
    """Keyed entries per field index (the lookups are filled: synced field names)."""
    return dict(conn.execute(DIGESTED["field_index_keys"]).fetchall())


def content_digests(conn: Any) -> dict[str, str]:
    """A digest of each table in :data:`DIGESTED` (after the clock stopped)."""
    out = {}
    for table, sql in DIGESTED.items():
        h = hashlib.blake2b(digest_size=16)
        for row in conn.execute(sql):
            h.update(repr(row).encode())
        out[table] = h.hexdigest()
    return out


def decode_batches(stream: Path) -> list[BootstrapBatch]:
    """Every batch of the stream, decoded (before any clock starts)."""
    decoder = msgspec.msgpack.Decoder(BootstrapBatch)
    data = gzip.decompress(stream.read_bytes())
    batches = []
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        batches.append(decoder.decode(data[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return batches


def run_bare(stream: Path, db_path: Path, n: int) -> dict[str, Any]:
    encode = msgspec.json.encode
    batches = [
        [
            (r.entity, r.id, r.version, r.seq, encode(r.fields), 0, encode(r.channels))
            for r in batch.records
        ]
        for batch in decode_batches(stream)
    ]
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


_MASK = (1 << 64) - 1
SAME_ROWS_SQL = (
    "INSERT INTO records(doc, entity, id, version, seq, fields, deleted, channels)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    search.INSERT_DOCUMENT_SQL,
    "INSERT INTO doc_counter(entity_code, last_doc) VALUES (?, ?)"
    " ON CONFLICT(entity_code) DO UPDATE SET last_doc = excluded.last_doc",
    "INSERT INTO channel_checksums(channel, count, digest) VALUES (?, ?, ?)"
    " ON CONFLICT(channel) DO UPDATE SET count = excluded.count, digest = excluded.digest",
    "INSERT INTO sync_state(key, value) VALUES (?, ?)"
    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    "DELETE FROM sync_state WHERE key = ?",
)
"""Per batch, one ``executemany`` each: records, search documents, doc counters,
checksums, sync state (set, then cleared after the last batch)."""


def same_rows(conn: Any, batches: list[BootstrapBatch]) -> list[tuple[list[Any], ...]]:
    """The rows our bootstrap writes for each batch, in the form it writes them."""
    encode = msgspec.json.Encoder(order="sorted").encode  # the SDK stores sorted keys
    jsonb = "SELECT jsonb(?)"
    next_doc: dict[str, int] = {}
    sums: dict[str, tuple[int, int]] = {}
    count = 0
    plan: list[tuple[list[Any], ...]] = []
    for batch in batches:
        records: list[tuple[Any, ...]] = []
        documents: list[tuple[Any, ...]] = []
        touched: dict[str, None] = {}
        for r in batch.records:
            code = search.entity_code(r.entity)
            doc = next_doc.get(r.entity, search.doc_range(code)[0]) + 1
            next_doc[r.entity] = doc
            fields = conn.execute(jsonb, (encode(r.fields).decode(),)).fetchone()[0]
            channels = msgspec.json.encode(tuple(r.channels)).decode()
            records.append((doc, r.entity, r.id, r.version, r.seq, fields, 0, channels))
            document = search.document_for(r.entity, r.fields)
            if document is not None:
                documents.append((doc, *document))
            h = record_hash(r.entity, r.id, r.version, r.fields)
            for c in r.channels:
                k, d = sums.get(c, (0, 0))
                sums[c] = (k + 1, (d + h) & _MASK)
                touched[c] = None
        documents.sort()  # rowid order, as the SDK writes them (FTS5 appends)
        count += len(batch.records)
        entities = dict.fromkeys(r.entity for r in batch.records)
        counters = [(search.entity_code(e), next_doc[e]) for e in entities]
        book = [(c, sums[c][0], sums[c][1] - (1 << 64) * (sums[c][1] >> 63)) for c in touched]
        clock = str(max(r.clock for r in batch.records if r.clock is not None))
        if batch.done:
            state: list[tuple[str, str | int]] = [
                (CHECKPOINT_KEY, batch.checkpoint),
                (HLC_KEY, clock),
            ]
            cleared = [
                (k,) for k in (BOOT_ACTIVE_KEY, BOOT_RESUME_KEY, BOOT_MODE_KEY, BOOT_COUNT_KEY)
            ]
        else:
            state = [
                (BOOT_RESUME_KEY, batch.resume),
                (BOOT_COUNT_KEY, count),
                (HLC_KEY, clock),
            ]
            cleared = []
        plan.append((records, documents, counters, book, state, cleared))
    return plan


def run_same(stream: Path, db_path: Path, n: int) -> dict[str, Any]:
    """Raw ``executemany`` of the rows our bootstrap writes, into the SDK's own schema."""
    db = LocalDatabase.create(db_path, KEK, migrations=REPLICA_MIGRATIONS)
    conn = db.conn
    plan = same_rows(conn, decode_batches(stream))
    started, cpu_started = time.perf_counter(), time.process_time()
    for rows in plan:
        conn.execute("BEGIN IMMEDIATE")
        for sql, params in zip(SAME_ROWS_SQL, rows, strict=True):
            conn.executemany(sql, params)
        conn.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = db.count_records()
    hits = len(db.search("müller", limit=10))
    digests = content_digests(conn)
    db.close()
    if count != n or hits == 0:
        raise SystemExit(f"same-rows baseline incomplete: {count}/{n}, {hits} hits")
    return {"rate": n / elapsed, "cpu_rate": n / cpu, "seconds": elapsed, "digests": digests}


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
    parser.add_argument("--child", choices=["ours", "same", "bare"], help=argparse.SUPPRESS)
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
        elif args.child == "same":
            result = run_same(stream, db_path, n)
        else:
            result = run_bare(stream, db_path, n)
        for p in work.glob(db_path.name + "*"):
            p.unlink()
        print(json.dumps(result))
        return

    work = Path(tempfile.mkdtemp(prefix="crmsync-boot-", dir=args.dir))
    try:
        small = max(1000, n // 4)
        for size in (n, small):
            prepare(work, size, args.batch)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "same": [], "bare": []}
        for run in range(args.runs):
            for role, results in runs.items():
                results.append(child(role, work, n, run))
        small_ours = child("ours", work, small, 0)
        differ = sorted(
            {
                table
                for ours, same in zip(runs["ours"], runs["same"], strict=True)
                for table, digest in ours["digests"].items()
                if same["digests"][table] != digest
            }
        )

        def med(role: str, key: str) -> float:
            return float(statistics.median(r[key] for r in runs[role]))

        rate, cpu_rate = med("ours", "rate"), med("ours", "cpu_rate")
        same, cpu_same = med("same", "rate"), med("same", "cpu_rate")
        bare, cpu_bare = med("bare", "rate"), med("bare", "cpu_rate")
        peak = med("ours", "peak_rss_mib")
        first = med("ours", "rss_first_batch_mib")
        last = med("ours", "rss_last_batch_mib")
        blank = {"baseline": "", "ratio": "", "goal": ""}
        report(
            f"client bootstrap ({n:,} records, {args.batch} per frame, median of {args.runs})",
            [
                {
                    "metric": "bootstrap rec/s vs same rows",
                    "value": rate,
                    "baseline": same,
                    "ratio": rate / same,
                    "goal": ">= 30,000; ratio >= 0.5",
                },
                {
                    "metric": "rec per CPU-second vs same rows",
                    "value": cpu_rate,
                    "baseline": cpu_same,
                    "ratio": cpu_rate / cpu_same,
                    "goal": "(robust to a loaded machine)",
                },
                {
                    "metric": "bootstrap rec/s vs bare table",
                    "value": rate,
                    "baseline": bare,
                    "ratio": rate / bare,
                    "goal": "(reference: no search, no index)",
                },
                {
                    "metric": "rec per CPU-second vs bare table",
                    "value": cpu_rate,
                    "baseline": cpu_bare,
                    "ratio": cpu_rate / cpu_bare,
                    "goal": "(reference)",
                },
                {"metric": "RSS after first batch MiB", "value": first, **blank},
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
                    **blank,
                },
            ],
        )
        print(
            "ours and same wrote identical",
            ", ".join(DIGESTED),
            "tables" if not differ else f"tables, EXCEPT {', '.join(differ)}",
        )
        print(
            "field index entries with a key (ours):",
            ", ".join(f"{k} {v:,}" for k, v in runs["ours"][0]["field_index_keys"].items()),
        )
        for role, results in runs.items():
            print(
                f"runs {role}: rec/s",
                [round(r["rate"]) for r in results],
                "per CPU-s",
                [round(r["cpu_rate"]) for r in results],
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
