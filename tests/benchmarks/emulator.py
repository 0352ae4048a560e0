"""Benchmark: records/s the Dynamics emulator serves, over real HTTP and without it.

Starts the emulator as a separate process (uvicorn + uvloop, like ``python -m
infra.dynamics_emulator``), gets a token from its OAuth endpoint and reads ``--records``
records of one entity set in pages of ``--page-size`` by following ``@odata.nextLink``, the way
the importer does (``Prefer: odata.maxpagesize``, ``$select``, msgspec decoding of each page).
Each run is repeated ``--runs`` times; the median is reported together with two baselines
measured in this process in the same invocation:

* ``service``: the same pages through ``WebApiService.handle`` (generation + projection + JSON
  encoding: the server's work without HTTP; pages are not decoded);
* ``generate``: bare record generation (the value tuples the service projects).

The ratios HTTP / service and HTTP / generate show what the HTTP stack (and the client's own
decoding on one sequential connection) cost. Prints a table and one JSON line::

    .venv/bin/python tests/benchmarks/emulator.py --records 200000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from infra.dynamics_emulator import EmulatorConfig, free_port  # noqa: E402
from infra.dynamics_emulator.emulator import Emulator  # noqa: E402
from infra.dynamics_emulator.service import ApiRequest  # noqa: E402

API = "/api/data/v9.2"
#: Columns an importer typically selects, per entity set.
SELECTS = {
    "accounts": "name,accountnumber,telephone1,emailaddress1,address1_line1,address1_city,"
    "address1_postalcode,address1_country,industrycode,revenue,numberofemployees,"
    "_primarycontactid_value,_ownerid_value,statecode,statuscode,modifiedon,versionnumber",
    "contacts": "firstname,lastname,fullname,jobtitle,emailaddress1,mobilephone,telephone1,"
    "address1_city,address1_country,_parentcustomerid_value,_ownerid_value,statecode,"
    "statuscode,modifiedon,versionnumber",
    "leads": "subject,firstname,lastname,companyname,emailaddress1,telephone1,leadsourcecode,"
    "_ownerid_value,statecode,statuscode,modifiedon,versionnumber",
    "opportunities": "name,_customerid_value,_parentaccountid_value,estimatedvalue,"
    "closeprobability,salesstage,stepname,estimatedclosedate,_ownerid_value,statecode,"
    "statuscode,modifiedon,versionnumber",
    "quotes": "name,quotenumber,totalamount,_opportunityid_value,_customerid_value,"
    "_ownerid_value,statecode,statuscode,modifiedon,versionnumber",
    "appointments": "subject,scheduledstart,scheduledend,location,isalldayevent,"
    "_regardingobjectid_value,_ownerid_value,statecode,statuscode,modifiedon,versionnumber",
}
_decoder = msgspec.json.Decoder()


def _start_server(port: int, entity_set: str, records: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "CRMSYNC_EMULATOR_PORT": str(port),
            "CRMSYNC_EMULATOR_COUNTS": f"{entity_set}={records},systemusers=2000",
            "PYTHONPATH": str(REPO),
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.dynamics_emulator"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"emulator exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("emulator did not start within 30 s")


def _token(base: str) -> str:
    response = httpx.post(
        f"{base}/bench/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "crmsync-importer",
            "client_secret": "emulator-secret",
            "scope": f"{base}/.default",
        },
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def _read_http(client: httpx.Client, first_url: str, page_size: int) -> tuple[int, float]:
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    url: str | None = first_url
    count = 0
    started = time.perf_counter()
    while url is not None:
        response = client.get(url, headers=headers)
        response.raise_for_status()
        page = _decoder.decode(response.content)
        count += len(page["value"])
        url = page.get("@odata.nextLink")
    return count, time.perf_counter() - started


def _read_service(
    emulator: Emulator, entity_set: str, query: str, page_size: int
) -> tuple[int, float]:
    headers = {"prefer": f"odata.maxpagesize={page_size}"}
    count = 0
    started = time.perf_counter()
    while True:
        response = emulator.service.handle(ApiRequest("GET", f"/{entity_set}", query, headers))
        # Server work only: count records and find the next link without decoding the page.
        body = response.body
        count += body.count(b'"@odata.etag"')
        marker = body.rfind(b'"@odata.nextLink":"')
        if marker < 0:
            break
        link = body[marker + 19 : body.index(b'"', marker + 19)].decode()
        query = link.split("?", 1)[1]
    return count, time.perf_counter() - started


def _generate(emulator: Emulator, entity_set: str, records: int) -> tuple[int, float]:
    build = emulator.generator.values(entity_set)
    started = time.perf_counter()
    for start in range(0, records, 5_000):
        [build(i) for i in range(start, min(records, start + 5_000))]
    return records, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the results.

    Returns:
        Process exit code.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--entity-set", default="contacts", choices=sorted(SELECTS))
    parser.add_argument("--page-size", type=int, default=5_000)
    parser.add_argument("--all-columns", action="store_true", help="no $select")
    args = parser.parse_args(argv)
    entity_set, records = args.entity_set, args.records
    query = "" if args.all_columns else f"$select={SELECTS[entity_set]}"

    port = free_port()
    server = _start_server(port, entity_set, records)
    base = f"http://127.0.0.1:{port}"
    http_rates: list[float] = []
    try:
        headers = {"Authorization": f"Bearer {_token(base)}"}
        with httpx.Client(headers=headers, timeout=120) as client:
            for _ in range(args.runs):
                count, seconds = _read_http(
                    client, f"{base}{API}/{entity_set}?{query}", args.page_size
                )
                assert count == records, (count, records)
                http_rates.append(count / seconds)
    finally:
        server.terminate()
        server.wait(10)

    config = EmulatorConfig(counts={entity_set: records, "systemusers": 2_000})
    emulator = Emulator(config)
    service_rates = []
    generate_rates = []
    for _ in range(args.runs):
        count, seconds = _read_service(emulator, entity_set, query, args.page_size)
        service_rates.append(count / seconds)
        count, seconds = _generate(emulator, entity_set, records)
        generate_rates.append(count / seconds)

    http = statistics.median(http_rates)
    service = statistics.median(service_rates)
    generate = statistics.median(generate_rates)
    print(
        f"emulator benchmark: {entity_set}, {records:,} records x {args.runs} runs, "
        f"pages of {args.page_size:,}"
    )
    print(f"{'path':<36}{'records/s (median)':>20}{'/service':>10}{'/generate':>10}")
    for label, rate in (
        ("HTTP (uvicorn+uvloop, msgspec)", http),
        ("service, no HTTP (baseline)", service),
        ("generation only", generate),
    ):
        print(f"{label:<36}{rate:>20,.0f}{rate / service:>10.2f}{rate / generate:>10.2f}")
    print(
        json.dumps(
            {
                "benchmark": "dynamics_emulator",
                "entity_set": entity_set,
                "records": records,
                "runs": args.runs,
                "page_size": args.page_size,
                "select": not args.all_columns,
                "http_records_per_s": round(http),
                "service_records_per_s": round(service),
                "generate_records_per_s": round(generate),
                "http_to_service_ratio": round(http / service, 3),
                "http_to_generate_ratio": round(http / generate, 3),
                "http_runs": [round(r) for r in http_rates],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
