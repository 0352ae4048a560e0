"""Loading the demo records through the one write path: JetStream -> applier -> store.

The loader behaves like a tiny importer: it publishes each demo
:class:`~sync_protocol.changesets.UpstreamBatch` to ``sync.upstream.<source>`` with a
result-subject header, and waits until the applier has
answered for every batch. Batches are idempotent (the applier stores their results), so
loading again is harmless: the applier answers from the stored results.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec

from backend.applier.messages import encode, result_decoder
from backend.messaging.broker import Broker
from backend.messaging.messages import CoreMessage
from backend.messaging.subjects import (
    RESULT_SUBJECT_HEADER,
    RESULTS_PREFIX,
    encode_token,
    upstream_subject,
)
from infra.devstack.errors import DemoDataError
from sync_protocol.changesets import ChangesetResult, UpstreamBatch


async def load_batches(
    broker: Broker, batches: list[UpstreamBatch], *, timeout_s: float = 60.0
) -> list[ChangesetResult]:
    """Publish upstream batches and wait for the applier's result of each.

    Args:
        broker: A connected broker (streams ensured).
        batches: The batches.
        timeout_s: How long to wait for all results.

    Returns:
        The results, in batch order.

    Raises:
        DemoDataError: no applier answered in time, or a record was rejected.
    """
    inbox = f"{RESULTS_PREFIX}.loader-{uuid.uuid4().hex[:12]}"
    pending = {f"upstream:{b.batch_id}": i for i, b in enumerate(batches)}
    results: list[ChangesetResult | None] = [None] * len(batches)
    all_in = asyncio.Event()

    async def on_result(message: CoreMessage) -> None:
        try:
            result = result_decoder.decode(message.data)
        except msgspec.DecodeError:
            return
        index = pending.pop(result.changeset_id, None)
        if index is not None:
            results[index] = result
        if not pending:
            all_in.set()

    subscription = await broker.subscribe_core(f"{inbox}.>", on_result)
    try:
        for batch in batches:
            # No Nats-Msg-Id: a reload inside the duplicate window must still reach the
            # applier, which answers from the stored result instead of applying again.
            await broker.publish(
                upstream_subject(batch.source),
                encode(batch),
                headers={RESULT_SUBJECT_HEADER: f"{inbox}.{encode_token(batch.batch_id)}"},
            )
        if batches:
            deadline = time.monotonic() + timeout_s
            try:
                await asyncio.wait_for(all_in.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise DemoDataError(
                    f"no applier answered for {len(pending)} demo batch(es) in {timeout_s:.0f}s"
                ) from None
    finally:
        await subscription.unsubscribe()
    done = [r for r in results if r is not None]
    rejected = [m for r in done for m in r.results if m.outcome == "rejected"]
    if rejected:
        first = rejected[0]
        raise DemoDataError(
            f"{len(rejected)} demo record(s) rejected, e.g. {first.entity}: {first.code}"
        )
    return done
