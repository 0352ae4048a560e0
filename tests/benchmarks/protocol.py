"""Protocol speed: decode of 10,000 account records (msgpack, JSON), merges per second.

Run: ``./dev bench protocol`` (or ``.venv/bin/python tests/benchmarks/protocol.py``).
Baselines measured in the same run: the stdlib ``json.loads`` of the same JSON bytes
(untyped, unvalidated), and a plain dict update of the same fields for merges.
Goals on one core: decode >= 500,000 records/s, merge >= 200,000 mutations/s.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

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
        "industrycode": rnd.randint(1, 7),
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
            channels=["country:IT", "territory:IT-NW"],
        )
        for i in range(N_RECORDS)
    ]
    page = PullResponse(protocol=1, checkpoint="x", has_more=False, changes=changes)
    as_json = encode(page, "json")
    as_msgpack = encode(page, "msgpack")

    def dec(fmt: str, raw: bytes) -> int:
        return len(decode(raw, PullResponse, fmt, max_bytes=1 << 30).changes)  # type: ignore[arg-type]

    msgpack_rate, _ = median_rate(lambda: dec("msgpack", as_msgpack))
    json_rate, _ = median_rate(lambda: dec("json", as_json))
    stdlib_rate, _ = median_rate(lambda: len(json.loads(as_json)["changes"]))

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
