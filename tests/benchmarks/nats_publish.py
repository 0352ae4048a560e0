"""JetStream publish and consume rates against a real local nats-server.

Measures, each as the median of ``--runs`` runs with ~2 KB messages:

* core NATS publish (fire-and-forget, flushed at the end): the baseline;
* JetStream publish awaited one by one, without and with ``Nats-Msg-Id`` (de-dup on);
* JetStream publish with ``Nats-Msg-Id`` and 64 publishes in flight (how a busy gateway
  with many concurrent pushes behaves);
* pull-consume + ack (batch 100, no-op handler) through ``NatsBroker.consume``.

Ratios are to the core-NATS rate measured in the same run. Run with
``./dev bench nats_publish`` or ``.venv/bin/python tests/benchmarks/nats_publish.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.messaging import ConsumeStats, Delivery, NatsBroker, NatsConfig
from backend.messaging.subjects import CHANGESETS_STREAM, changeset_subject
from infra.nats.server import NatsServer
from tests.benchmarks._report import report

CONCURRENCY = 64


async def _median_rate(
    runs: int, one_run: Callable[[int], Awaitable[int]]
) -> tuple[float, list[float]]:
    rates = []
    for run in range(runs):
        started = time.perf_counter()
        n = await one_run(run)
        rates.append(n / (time.perf_counter() - started))
    return statistics.median(rates), rates


async def bench(runs: int, messages: int, size: int) -> list[dict[str, Any]]:
    """Run every case on a fresh server and return the report rows."""
    payload = os.urandom(size)
    subject = changeset_subject("bench-device")
    async with NatsServer() as server, NatsBroker(NatsConfig(servers=(server.url,))) as broker:
        await broker.ensure_streams()

        async def fresh_stream() -> None:
            await broker.delete_stream(CHANGESETS_STREAM)
            await broker.ensure_streams()

        async def core(run: int) -> int:
            n = messages * 5
            for _ in range(n):
                await broker.publish_core("bench.core", payload)
            await broker.flush()
            return n

        async def js_plain(run: int) -> int:
            await fresh_stream()
            for _ in range(messages):
                await broker.publish(subject, payload)
            return messages

        async def js_msg_id(run: int) -> int:
            await fresh_stream()
            for i in range(messages):
                await broker.publish(subject, payload, msg_id=f"r{run}-{i}")
            return messages

        async def js_concurrent(run: int) -> int:
            await fresh_stream()
            for start in range(0, messages, CONCURRENCY):
                await asyncio.gather(
                    *(
                        broker.publish(subject, payload, msg_id=f"c{run}-{i}")
                        for i in range(start, min(start + CONCURRENCY, messages))
                    )
                )
            return messages

        core_rate, core_runs = await _median_rate(runs, core)
        rows: list[dict[str, Any]] = [
            _row("core publish (baseline)", messages * 5, core_rate, core_runs, core_rate)
        ]
        for name, fn in (
            ("js publish, no msg id", js_plain),
            ("js publish, Nats-Msg-Id", js_msg_id),
            (f"js publish, Nats-Msg-Id, {CONCURRENCY} in flight", js_concurrent),
        ):
            rate, all_rates = await _median_rate(runs, fn)
            rows.append(_row(name, messages, rate, all_rates, core_rate))

        # Consume + ack: fill the stream once, then drain it with a new durable per run.
        await fresh_stream()
        for start in range(0, messages, CONCURRENCY):
            await asyncio.gather(
                *(
                    broker.publish(subject, payload)
                    for _ in range(start, min(start + CONCURRENCY, messages))
                )
            )

        async def consume(run: int) -> int:
            stop = asyncio.Event()
            stats = ConsumeStats()

            async def handler(batch: Sequence[Delivery]) -> None:
                if stats.acked + len(batch) >= messages:
                    stop.set()

            await broker.consume(
                CHANGESETS_STREAM,
                f"bench-{run}",
                handler,
                batch=100,
                fetch_wait=1.0,
                stop=stop,
                stats=stats,
            )
            return stats.acked

        rate, all_rates = await _median_rate(runs, consume)
        rows.append(_row("pull consume + ack (batch 100)", messages, rate, all_rates, core_rate))
    return rows


def _row(case: str, n: int, rate: float, rates: list[float], core_rate: float) -> dict[str, Any]:
    return {
        "case": case,
        "msgs/run": n,
        "median msgs/s": round(rate, 1),
        "min": round(min(rates), 1),
        "max": round(max(rates), 1),
        "ratio to core": round(rate / core_rate, 4),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the benchmark, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=3000, help="JetStream msgs per run")
    parser.add_argument("--size", type=int, default=2048, help="payload bytes")
    args = parser.parse_args(argv)
    rows = asyncio.run(bench(args.runs, args.messages, args.size))
    report(f"nats_publish ({args.size} B messages, median of {args.runs} runs)", rows)


if __name__ == "__main__":
    main()
