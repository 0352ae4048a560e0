"""Protocol speed: decode of 10,000 account records (msgpack, JSON), merges per second.

Run: ``./dev bench protocol`` (or ``.venv/bin/python tests/benchmarks/protocol.py``).

Decode: one ``PullResponse`` page of 10,000 ``RecordChange`` of 18 account fields each,
through ``sync_protocol.codec.decode``; median of 5 timed runs after one untimed warm-up.
The clock covers the decode call; the page is dropped after the clock stops (freeing is not
decoding: a device frees a page after applying it). ``decode+free`` rows time both, as
this benchmark did before, so older figures stay comparable. Collections the decode
triggers are inside the clock: nothing here pauses the garbage collector (a pause only
moves the work after the clock; see docs/protocol.md). The set-up objects are collected
once before timing, so that their own first collections are not charged to the decode.

Baselines measured in the same run: the stdlib ``json.loads`` of the same JSON bytes
(untyped, unvalidated); the floor, untyped msgspec decode of the same bytes (the same
parser building dicts and lists instead of structs; its ratio is typed rate / floor rate,
above 1 when the typed decode is faster); and a plain dict update of the same fields
for merges. Goals on one core: decode >= 500,000 records/s, merge >= 200,000 mutations/s.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import msgspec

from sync_protocol.changesets import Mutation
from sync_protocol.codec import decode, encode
from sync_protocol.hlc import HLC
from sync_protocol.merge import MergeContext, merge
from sync_protocol.pull import PullResponse
from sync_protocol.records import Record, RecordChange
from tests.benchmarks._report import median_rate, report

N_RECORDS = 10_000
N_MUTATIONS = 100_000
CITIES = ["Milano", "Città di Castello", "München", "Łódź", "Sevilla", "Besançon", "Kraków"]
NOW = 1_800_000_000_000
RUNS = 5


def decode_rate(
    decode_page: Callable[[], Any], count: Callable[[Any], int], free_in_clock: bool = False
) -> float:
    """Median records/s of ``RUNS`` timed decodes after one warm-up.

    The page is dropped after the clock stops unless ``free_in_clock``.
    """
    count(decode_page())
    rates = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        page = decode_page()
        if free_in_clock:
            n = count(page)
            del page
            t1 = time.perf_counter()
        else:
            t1 = time.perf_counter()
            n = count(page)
            del page
        rates.append(n / (t1 - t0))
    return statistics.median(rates)


def account(i: int, rnd: random.Random) -> dict[str, object]:
    return {
        "name": f"Azienda {i} S.r.l.",
        "accountnumber": f"IT-{i:07d}",
        "telephone1": f"+39 02 {rnd.randrange(10**7):07d}",
        "emailaddress1": f"info{i}@example.it",
        "address1_line1": f"Via Roma {i % 300}",
        "address1_city": rnd.choice(CITIES),
        "address1_postalcode": f"{rnd.randrange(10**5):05d}",
        "address1_country": "Italia",
        "industrycode": rnd.choice((1, 6, 7, 10, 12, 16, 17, 30, 31, 33)),
        "revenue": rnd.random() * 1e7,
        "numberofemployees": rnd.randrange(5000),
        "ownerid": str(uuid.UUID(int=rnd.getrandbits(128))),
        "territory": "IT-NW",
        "country": "IT",
        "statecode": 0,
        "statuscode": 1,
        "createdon": "2025-01-02T10:00:00Z",
        "modifiedon": "2026-03-04T11:22:33Z",
    }


def main() -> None:
    rnd = random.Random(7)
    changes = [
        RecordChange(
            entity="account",
            id=str(uuid.UUID(int=rnd.getrandbits(128))),
            version=3,
            seq=i + 1,
            fields=account(i, rnd),
            clock=HLC(NOW, 0, "upstream:dynamics"),
            channels=("country:IT", "territory:IT-NW"),
        )
        for i in range(N_RECORDS)
    ]
    page = PullResponse(protocol=1, checkpoint="x", has_more=False, changes=changes)
    as_json = encode(page, "json")
    as_msgpack = encode(page, "msgpack")
    gc.collect()  # settle the set-up objects, so their first collections are not timed

    def typed(fmt: str, raw: bytes) -> Callable[[], PullResponse]:
        return lambda: decode(raw, PullResponse, fmt, max_bytes=1 << 30)  # type: ignore[arg-type]

    def count_changes(page: PullResponse) -> int:
        assert len(page.changes) == N_RECORDS
        return len(page.changes)

    def untyped_records(page: Any) -> int:
        return len(page["changes"])

    msgpack_rate = decode_rate(typed("msgpack", as_msgpack), count_changes)
    json_rate = decode_rate(typed("json", as_json), count_changes)
    stdlib_rate = decode_rate(lambda: json.loads(as_json), untyped_records)
    msgpack_floor = decode_rate(lambda: msgspec.msgpack.decode(as_msgpack), untyped_records)
    json_floor = decode_rate(lambda: msgspec.json.decode(as_json), untyped_records)
    msgpack_free_rate = decode_rate(typed("msgpack", as_msgpack), count_changes, free_in_clock=True)
    json_free_rate = decode_rate(typed("json", as_json), count_changes, free_in_clock=True)
    stdlib_free_rate = decode_rate(lambda: json.loads(as_json), untyped_records, True)

    # Merges: 100,000 device mutations over 10,000 records, a mix of fast-forwards and
    # concurrent edits (half of them based on an older version).
    records = {
        c.id: Record(
            entity="account",
            id=c.id,
            version=3,
            fields=dict(c.fields),
            clocks={k: HLC(NOW, 0, "upstream:dynamics") for k in c.fields},
            field_versions=dict.fromkeys(c.fields, 3),
        )
        for c in changes
    }
    ids = list(records)
    muts = [
        Mutation(
            entity="account",
            id=ids[i % N_RECORDS],
            base_version=3 if i % 2 else 1,
            fields={"telephone1": f"+39 {i}", "address1_city": rnd.choice(CITIES)},
            clock=HLC(NOW + 1 + i, 0, f"dev-{i % 50}"),
        )
        for i in range(N_MUTATIONS)
    ]
    ctx = MergeContext(now_ms=NOW + 10**7)
    gc.collect()

    def run_merges() -> int:
        for m in muts:
            merge(records[m.id], m, ctx)
        return len(muts)

    def run_baseline() -> int:
        for m in muts:
            d = dict(records[m.id].fields)
            d.update(m.fields)
        return len(muts)

    merge_rate, _ = median_rate(run_merges)
    base_rate, _ = median_rate(run_baseline)
    report(
        "protocol (median of 5 runs, one core)",
        [
            {
                "measure": "decode msgpack records/s",
                "rate": msgpack_rate,
                "baseline": "stdlib json.loads",
                "ratio": msgpack_rate / stdlib_rate,
                "goal": 500_000,
            },
            {
                "measure": "decode JSON records/s",
                "rate": json_rate,
                "baseline": "stdlib json.loads",
                "ratio": json_rate / stdlib_rate,
                "goal": 500_000,
            },
            {
                "measure": "floor: untyped msgspec decode of the same bytes (msgpack)",
                "rate": msgpack_floor,
                "baseline": "typed msgpack / floor",
                "ratio": msgpack_rate / msgpack_floor,
                "goal": "",
            },
            {
                "measure": "floor: untyped msgspec decode of the same bytes (JSON)",
                "rate": json_floor,
                "baseline": "typed JSON / floor",
                "ratio": json_rate / json_floor,
                "goal": "",
            },
            {
                "measure": "decode+free msgpack records/s",
                "rate": msgpack_free_rate,
                "baseline": "stdlib json.loads+free",
                "ratio": msgpack_free_rate / stdlib_free_rate,
                "goal": "",
            },
            {
                "measure": "decode+free JSON records/s",
                "rate": json_free_rate,
                "baseline": "stdlib json.loads+free",
                "ratio": json_free_rate / stdlib_free_rate,
                "goal": "",
            },
            {
                "measure": "merge mutations/s",
                "rate": merge_rate,
                "baseline": "dict copy+update",
                "ratio": merge_rate / base_rate,
                "goal": 200_000,
            },
        ],
    )


if __name__ == "__main__":
    main()
