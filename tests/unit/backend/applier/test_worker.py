"""The consumer handlers: per-device order, failures, dead letters, compaction."""

from __future__ import annotations

import pytest

from backend.applier.config import ApplierConfig
from backend.applier.messages import encode
from backend.applier.worker import ApplierWorker
from backend.messaging.messages import Delivery
from sync_protocol.changesets import Mutation, UpstreamBatch
from sync_protocol.hlc import HLC

NOW = 1_800_000_000_000
IDS = [f"10000000-0000-4000-8000-{i:012d}" for i in range(10)]


def _delivery(subject: str, data: bytes, seq: int, headers: dict[str, str] | None = None):
    return Delivery(
        subject=subject,
        data=data,
        headers=headers or {},
        stream="SYNC_CHANGESETS",
        consumer="applier-changesets",
        stream_seq=seq,
        consumer_seq=seq,
        num_delivered=1,
        num_pending=0,
    )


async def test_changesets_of_one_device_apply_in_order_devices_grouped(
    applier, store, envelope, ts
) -> None:
    rounds: list[list[str]] = []
    original = applier.apply_changesets

    async def spy(items):
        rounds.append([env.push.changeset_id for env, _ in items])
        return await original(items)

    applier.apply_changesets = spy  # type: ignore[method-assign]
    worker = ApplierWorker(applier, applier.broker)
    envs = [
        envelope([Mutation(entity="lead", id=IDS[0], clock=ts(1), fields={"subject": "a"})], 1),
        envelope(
            [Mutation(entity="lead", id=IDS[1], clock=ts(1), fields={"subject": "b"})],
            1,
            device="dev-b",
        ),
        envelope(
            [
                Mutation(
                    entity="lead", id=IDS[0], clock=ts(2), base_version=1, fields={"subject": "c"}
                )
            ],
            2,
        ),
    ]
    deliveries = [
        _delivery(f"sync.changesets.{e.push.device_id}", encode(e), i) for i, e in enumerate(envs)
    ]

    await worker.handle_changesets(deliveries)

    # The first changeset of each device share a group commit; dev-a's second waits for it.
    assert rounds == [["dev-a:1", "dev-b:1"], ["dev-a:2"]]
    assert store.records[("lead", IDS[0])].fields["subject"] == "c"
    assert store.records[("lead", IDS[0])].version == 2
    assert ("lead", IDS[1]) in store.records


async def test_reply_subject_header_is_honoured(applier, broker, envelope, ts) -> None:
    worker = ApplierWorker(applier, applier.broker)
    env = envelope([Mutation(entity="lead", id=IDS[0], clock=ts(1), fields={"subject": "a"})])

    await worker.handle_changesets(
        [_delivery("sync.changesets.dev-a", encode(env), 1, {"Crmsync-Result-Subject": "_R.x"})]
    )

    assert [p.subject for p in broker.on("_R.")] == ["_R.x"]


async def test_undecodable_message_is_dead_lettered_not_retried(applier, broker) -> None:
    worker = ApplierWorker(applier, applier.broker)

    await worker.handle_changesets([_delivery("sync.changesets.dev-a", b"\xc1garbage", 17)])

    (dl,) = broker.on("sync.deadletter.")
    assert dl.subject == "sync.deadletter.SYNC_CHANGESETS.applier-changesets"
    assert dl.data == b"\xc1garbage"
    assert dl.headers["Crmsync-Dlq-Seq"] == "17"
    assert "applier.malformed_message" in dl.headers["Crmsync-Dlq-Error"]
    assert dl.msg_id == "dlq:SYNC_CHANGESETS:applier-changesets:17"
    assert applier.metrics.tally["malformed"] == 1


async def test_a_store_failure_fails_the_batch_and_each_message_then_stands_alone(
    applier, store, envelope, ts
) -> None:
    original = store.apply_group

    async def flaky(batches):
        if any(b.device_id == "dev-bad" for b in batches):
            raise RuntimeError("store down")
        return await original(batches)

    store.apply_group = flaky  # type: ignore[method-assign]
    worker = ApplierWorker(applier, applier.broker)
    good = envelope([Mutation(entity="lead", id=IDS[3], clock=ts(1), fields={"subject": "ok"})])
    bad = envelope(
        [Mutation(entity="lead", id=IDS[4], clock=ts(1), fields={"subject": "x"})], device="dev-bad"
    )
    deliveries = [
        _delivery("sync.changesets.dev-bad", encode(bad), 1),
        _delivery("sync.changesets.dev-a", encode(good), 2),
    ]

    with pytest.raises(RuntimeError):
        await worker.handle_changesets(deliveries)
    assert ("lead", IDS[3]) not in store.records  # one transaction: nothing committed

    # The consumer loop then retries message by message: the good one goes through.
    await worker.handle_changesets(deliveries[1:])
    assert ("lead", IDS[3]) in store.records


async def test_upstream_handler_applies_batches(applier, store) -> None:
    worker = ApplierWorker(applier, applier.broker)
    batch = UpstreamBatch(
        batch_id="b-1",
        source="dynamics",
        mutations=[
            Mutation(
                entity="lead",
                id=IDS[5],
                clock=HLC(NOW, 0, "upstream:dynamics"),
                fields={"subject": "Fiera"},
            )
        ],
    )

    await worker.handle_upstream([_delivery("sync.upstream.lead", encode(batch), 1)])

    assert store.records[("lead", IDS[5])].fields["subject"] == "Fiera"
    assert await store.changeset_result("upstream:b-1") is not None


async def test_compaction_uses_the_retention_window(applier, store) -> None:
    worker = ApplierWorker(
        applier, applier.broker, ApplierConfig(tombstone_retention_ms=86_400_000)
    )

    dropped = await worker.compact_once()

    assert dropped == 3
    assert store.compactions == [NOW - 86_400_000]
    assert applier.metrics.tally["compacted"] == 3


async def test_compaction_failure_is_survived(applier, store) -> None:
    async def broken(older_than_ms: int) -> int:
        raise OSError("disk")

    store.compact = broken  # type: ignore[method-assign]
    assert await ApplierWorker(applier, applier.broker).compact_once() == 0
