"""A consumer process for the crash test: takes one batch, reports it, then hangs unacked.

Run as ``python crash_consumer.py URL STREAM DURABLE ACK_WAIT BATCH [MAX_DELIVER]``. It
prints one JSON line with the stream sequences it received and then never acks, so the test
can SIGKILL it mid-batch. Not a test module (no ``test_`` prefix): pytest does not collect it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from backend.messaging import Delivery, NatsBroker, NatsConfig


async def main(
    url: str, stream: str, durable: str, ack_wait: float, batch: int, max_deliver: int
) -> None:
    """Consume one batch, report it on stdout, and block forever inside the handler."""
    async with NatsBroker(NatsConfig(servers=(url,))) as broker:

        async def handler(deliveries: Sequence[Delivery]) -> None:
            seqs = [d.stream_seq for d in deliveries]
            print(json.dumps({"seqs": seqs}), flush=True)
            await asyncio.Event().wait()  # "working" until killed

        await broker.consume(
            stream, durable, handler, batch=batch, ack_wait=ack_wait, max_deliver=max_deliver
        )


if __name__ == "__main__":
    url, stream, durable, ack_wait, batch = sys.argv[1:6]
    max_deliver = int(sys.argv[6]) if len(sys.argv) > 6 else 5
    asyncio.run(main(url, stream, durable, float(ack_wait), int(batch), max_deliver))
