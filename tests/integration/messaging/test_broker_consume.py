"""Durable pull consumers against a real server: ack after success, redelivery, work
sharing, poison messages, graceful stop, and a worker SIGKILLed mid-batch."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from backend.messaging import ConsumeStats, Delivery, NatsBroker, NatsConfig
from backend.messaging.errors import (
    InvalidNameError,
    MessagingConfigError,
    MessagingError,
    StreamNotFoundError,
)
from backend.messaging.subjects import (
    CHANGESETS_STREAM,
    DEADLETTER_STREAM,
    DLQ_DELIVERIES_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_MSG_ID_HEADER,
    DLQ_SEQ_HEADER,
    DLQ_STREAM_HEADER,
    UPSTREAM_STREAM,
    changeset_subject,
    dead_letter_subject,
    upstream_subject,
)
from infra.nats.server import NatsServer

CRASH_CONSUMER = Path(__file__).with_name("crash_consumer.py")
REPO_ROOT = Path(__file__).resolve().parents[3]


async def _publish_n(broker: NatsBroker, n: int, prefix: str = "m") -> list[int]:
    seqs = []
    for i in range(n):
        ack = await broker.publish(
            changeset_subject(f"dev{i % 3}"), f"{prefix}{i}".encode(), msg_id=f"{prefix}-{i}"
        )
        seqs.append(ack.seq)
    return seqs


async def _run_until(
    broker: NatsBroker,
    done: asyncio.Event,
    *args: object,
    **kwargs: object,
) -> ConsumeStats:
    """Run broker.consume until `done` is set (with a safety deadline)."""
    stop = asyncio.Event()
    task = asyncio.create_task(broker.consume(*args, stop=stop, **kwargs))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(done.wait(), 15)
    finally:
        stop.set()
    return await asyncio.wait_for(task, 10)


async def test_handler_gets_batches_and_messages_are_acked_after_it_returns(
    broker: NatsBroker, eventually
) -> None:
    seqs = await _publish_n(broker, 7)
    seen: list[Delivery] = []
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> None:
        # While the handler runs, its messages are delivered but not acked.
        state = await broker.consumer_state(CHANGESETS_STREAM, "applier")
        assert state.num_ack_pending >= len(batch)
        seen.extend(batch)
        if len(seen) == 7:
            done.set()

    stats = await _run_until(
        broker, done, CHANGESETS_STREAM, "applier", handler, batch=3, fetch_wait=0.2
    )
    assert [d.stream_seq for d in seen] == seqs
    assert [d.data for d in seen] == [f"m{i}".encode() for i in range(7)]
    assert seen[0].msg_id == "m-0"
    assert all(d.num_delivered == 1 and d.stream == CHANGESETS_STREAM for d in seen)
    assert stats.batches >= 3  # batch size 3 for 7 messages
    assert stats.acked == 7

    async def all_acked() -> bool:
        s = await broker.consumer_state(CHANGESETS_STREAM, "applier")
        return s.num_ack_pending == 0 and s.num_pending == 0 and s.ack_floor_stream_seq == seqs[-1]

    await eventually(all_acked, message="acks not recorded")


async def test_handler_failure_causes_redelivery(broker: NatsBroker, eventually) -> None:
    [seq] = await _publish_n(broker, 1)
    attempts: list[int] = []
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> None:
        attempts.extend(d.num_delivered for d in batch)
        if len(attempts) == 1:
            raise RuntimeError("store temporarily unavailable")
        done.set()

    stats = await _run_until(
        broker, done, CHANGESETS_STREAM, "applier", handler, nak_delay=0.0, fetch_wait=0.2
    )
    assert attempts == [1, 2]
    assert (stats.handler_failures, stats.nacked, stats.acked) == (1, 1, 1)

    async def settled() -> bool:
        s = await broker.consumer_state(CHANGESETS_STREAM, "applier")
        return s.num_ack_pending == 0 and s.ack_floor_stream_seq == seq

    await eventually(settled)


async def test_nak_delay_holds_the_redelivery_back(broker: NatsBroker) -> None:
    await _publish_n(broker, 1)
    times: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def handler(batch: Sequence[Delivery]) -> None:
        times.append(loop.time())
        if len(times) == 1:
            raise RuntimeError("later please")
        done.set()

    await _run_until(
        broker, done, CHANGESETS_STREAM, "applier", handler, nak_delay=0.5, fetch_wait=0.2
    )
    assert times[1] - times[0] >= 0.45


async def test_one_poison_message_does_not_hold_back_its_batch_and_is_dead_lettered(
    broker: NatsBroker, eventually
) -> None:
    for i in range(5):
        body = b"poison" if i == 2 else f"ok{i}".encode()
        await broker.publish(changeset_subject("dev"), body, msg_id=f"cs-{i}")
    processed: list[bytes] = []
    stats = ConsumeStats()
    stop = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> None:
        if any(d.data == b"poison" for d in batch):
            raise ValueError("cannot decode changeset")
        processed.extend(d.data for d in batch)

    task = asyncio.create_task(
        broker.consume(
            CHANGESETS_STREAM,
            "applier",
            handler,
            batch=5,
            max_deliver=2,
            nak_delay=0.0,
            fetch_wait=0.2,
            stop=stop,
            stats=stats,
        )
    )
    try:
        await eventually(lambda: stats.terminated == 1, message="poison not given up on")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sorted(processed) == [b"ok0", b"ok1", b"ok3", b"ok4"]
    assert stats.dead_lettered == 1
    assert stats.acked == 4

    letters: list[Delivery] = []
    got_letter = asyncio.Event()

    async def read_dlq(batch: Sequence[Delivery]) -> None:
        letters.extend(batch)
        got_letter.set()

    await _run_until(broker, got_letter, DEADLETTER_STREAM, "ops", read_dlq, fetch_wait=0.2)
    [letter] = letters
    assert letter.subject == dead_letter_subject(CHANGESETS_STREAM, "applier")
    assert letter.data == b"poison"
    assert letter.headers[DLQ_STREAM_HEADER] == CHANGESETS_STREAM
    assert letter.headers[DLQ_SEQ_HEADER] == "3"
    assert letter.headers[DLQ_DELIVERIES_HEADER] == "2"
    assert letter.headers[DLQ_MSG_ID_HEADER] == "cs-2"
    assert "ValueError" in letter.headers[DLQ_ERROR_HEADER]

    async def nothing_left() -> bool:
        s = await broker.consumer_state(CHANGESETS_STREAM, "applier")
        return s.num_ack_pending == 0 and s.num_pending == 0

    await eventually(nothing_left)


async def test_two_consumers_on_one_durable_split_the_work(
    broker: NatsBroker, nats_config: NatsConfig, eventually
) -> None:
    total = 40
    seqs = await _publish_n(broker, total)
    got: dict[str, list[int]] = {"a": [], "b": []}
    started = {"a": asyncio.Event(), "b": asyncio.Event()}
    all_done = asyncio.Event()

    def make_handler(me: str, other: str):  # type: ignore[no-untyped-def]
        async def handler(batch: Sequence[Delivery]) -> None:
            got[me].extend(d.stream_seq for d in batch)
            if not started[me].is_set():
                # Hold the first batch until the other worker has one too, so both must
                # pull from the shared durable.
                started[me].set()
                await asyncio.wait_for(started[other].wait(), 10)
            if len(got["a"]) + len(got["b"]) >= total:
                all_done.set()

        return handler

    async with NatsBroker(nats_config) as a, NatsBroker(nats_config) as b:
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                w.consume(CHANGESETS_STREAM, "applier", make_handler(me, other), batch=5, stop=stop)
            )
            for w, me, other in ((a, "a", "b"), (b, "b", "a"))
        ]
        await asyncio.wait_for(all_done.wait(), 15)
        stop.set()
        stats = await asyncio.wait_for(asyncio.gather(*tasks), 10)

    assert got["a"] and got["b"], "both workers must get a share"
    assert not set(got["a"]) & set(got["b"]), "no message handed to both"
    assert sorted(got["a"] + got["b"]) == seqs
    assert sum(s.acked for s in stats) == total

    async def settled() -> bool:
        s = await broker.consumer_state(CHANGESETS_STREAM, "applier")
        return (s.num_pending, s.num_ack_pending, s.num_redelivered) == (0, 0, 0)

    await eventually(settled)


async def test_close_waits_for_the_batch_in_hand_and_acks_it(
    nats_config: NatsConfig, broker: NatsBroker, eventually
) -> None:
    await _publish_n(broker, 3)
    worker = NatsBroker(nats_config)
    await worker.connect()
    entered = asyncio.Event()
    release = asyncio.Event()
    finished: list[int] = []

    async def handler(batch: Sequence[Delivery]) -> None:
        entered.set()
        await release.wait()
        finished.extend(d.stream_seq for d in batch)

    consume = asyncio.create_task(worker.consume(CHANGESETS_STREAM, "applier", handler, batch=3))
    await asyncio.wait_for(entered.wait(), 10)
    closing = asyncio.create_task(worker.close())
    for _ in range(20):
        await asyncio.sleep(0)  # let close() run as far as it can
    assert not closing.done(), "close must wait for the handler"
    release.set()
    await asyncio.wait_for(closing, 10)
    stats = await asyncio.wait_for(consume, 5)
    assert len(finished) == 3
    assert stats.acked == 3

    async def acked() -> bool:
        s = await broker.consumer_state(CHANGESETS_STREAM, "applier")
        return s.num_ack_pending == 0 and s.num_redelivered == 0 and s.num_pending == 0

    await eventually(acked)


async def test_cancelled_consumer_hands_its_batch_back_at_once(
    nats_config: NatsConfig, broker: NatsBroker
) -> None:
    await _publish_n(broker, 2)
    entered = asyncio.Event()

    async def stuck(batch: Sequence[Delivery]) -> None:
        entered.set()
        await asyncio.Event().wait()

    async with NatsBroker(nats_config) as worker:
        task = asyncio.create_task(
            worker.consume(CHANGESETS_STREAM, "applier", stuck, batch=2, ack_wait=30)
        )
        await asyncio.wait_for(entered.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # ack_wait is 30 s: only the nak on cancel can make them come back this fast.
    again: list[Delivery] = []
    done = asyncio.Event()

    async def collect(batch: Sequence[Delivery]) -> None:
        again.extend(batch)
        if len(again) == 2:
            done.set()

    await _run_until(broker, done, CHANGESETS_STREAM, "applier", collect, batch=2, ack_wait=30)
    assert [d.num_delivered for d in again] == [2, 2]


async def test_filter_subject_limits_what_a_consumer_sees(broker: NatsBroker) -> None:
    await broker.publish(upstream_subject("account"), b"acc")
    await broker.publish(upstream_subject("contact"), b"con")
    seen: list[bytes] = []
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> None:
        seen.extend(d.data for d in batch)
        done.set()

    await _run_until(
        broker,
        done,
        UPSTREAM_STREAM,
        "contacts-only",
        handler,
        filter_subject=upstream_subject("contact"),
        fetch_wait=0.2,
    )
    assert seen == [b"con"]


async def test_bad_consumer_arguments_are_typed_errors(broker: NatsBroker) -> None:
    async def handler(batch: Sequence[Delivery]) -> None:
        return None

    with pytest.raises(MessagingConfigError):
        await broker.consume(CHANGESETS_STREAM, "applier", handler, batch=0)
    with pytest.raises(InvalidNameError):
        await broker.consume(CHANGESETS_STREAM, "bad.name", handler)
    with pytest.raises(StreamNotFoundError):
        await broker.consume("NO_SUCH_STREAM", "applier", handler)


async def _crash_worker_holding(
    url: str, batch: int, ack_wait: float, max_deliver: int = 5
) -> tuple[asyncio.subprocess.Process, list[int]]:
    """Start a consumer process, wait until it holds a batch unacked; return it and the seqs."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CRASH_CONSUMER),
        url,
        CHANGESETS_STREAM,
        "applier",
        str(ack_wait),
        str(batch),
        str(max_deliver),
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        cwd=str(REPO_ROOT),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        seqs: list[int] = json.loads(line)["seqs"]
    except BaseException:
        await _sigkill(proc)
        raise
    return proc, seqs


async def _sigkill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def test_worker_killed_mid_batch_gets_its_messages_redelivered(
    broker: NatsBroker, nats_server, eventually
) -> None:
    seqs = await _publish_n(broker, 4)
    ack_wait = 1.0
    proc, held = await _crash_worker_holding(nats_server.url, batch=4, ack_wait=ack_wait)
    # The dying worker holds the batch it fetched: the first message and what else was
    # ready right then (all four, unless the machine is slow).
    try:
        assert held and set(held) <= set(seqs)
    finally:
        await _sigkill(proc)
    assert proc.returncode == -signal.SIGKILL

    redelivered: list[Delivery] = []
    done = asyncio.Event()

    async def survivor(batch: Sequence[Delivery]) -> None:
        redelivered.extend(batch)
        if len(redelivered) >= 4:
            done.set()

    await _run_until(
        broker,
        done,
        CHANGESETS_STREAM,
        "applier",
        survivor,
        batch=4,
        ack_wait=ack_wait,
        fetch_wait=0.3,
    )
    assert sorted(d.stream_seq for d in redelivered) == seqs
    assert all(d.num_delivered >= 2 for d in redelivered if d.stream_seq in held)

    async def settled() -> bool:
        s = await broker.consumer_state(CHANGESETS_STREAM, "applier")
        return s.num_ack_pending == 0 and s.num_pending == 0

    await eventually(settled)


async def test_close_waits_for_every_loop_even_when_they_share_a_stop_event(
    nats_config: NatsConfig, broker: NatsBroker
) -> None:
    await _publish_n(broker, 2)
    worker = NatsBroker(nats_config)
    await worker.connect()
    entered: list[int] = []
    both_in = asyncio.Event()
    release = {1: asyncio.Event(), 2: asyncio.Event()}

    async def handler(batch: Sequence[Delivery]) -> None:
        entered.extend(d.stream_seq for d in batch)
        if len(entered) == 2:
            both_in.set()
        await release[batch[0].stream_seq].wait()

    shared_stop = asyncio.Event()
    loops = [
        asyncio.create_task(
            worker.consume(CHANGESETS_STREAM, "applier", handler, batch=1, stop=shared_stop)
        )
        for _ in range(2)
    ]
    await asyncio.wait_for(both_in.wait(), 10)
    closing = asyncio.create_task(worker.close())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done(), "close must wait for the handlers"
    release[1].set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done(), "close must wait for the second handler too"
    release[2].set()
    await asyncio.wait_for(closing, 10)
    stats = await asyncio.wait_for(asyncio.gather(*loops), 5)
    assert sorted(entered) == [1, 2]
    assert [s.acked for s in stats] == [1, 1]


async def test_consumer_and_publisher_survive_a_server_restart(tmp_path: Path, eventually) -> None:
    store = tmp_path / "store"
    first = NatsServer(store_dir=store)
    await first.astart()
    port = first.port
    config = NatsConfig(servers=(first.url,), reconnect_time_wait=0.05, request_timeout=2.0)
    seen: list[bytes] = []
    stop = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> None:
        seen.extend(d.data for d in batch)

    second: NatsServer | None = None
    try:
        async with NatsBroker(config) as broker:
            await broker.ensure_streams()
            task = asyncio.create_task(
                broker.consume(CHANGESETS_STREAM, "applier", handler, fetch_wait=0.2, stop=stop)
            )
            await broker.publish(changeset_subject("d"), b"before", msg_id="before")
            await eventually(lambda: seen == [b"before"])

            await first.astop()
            second = NatsServer(port=port, store_dir=store)
            await second.astart()

            async def published_after_restart() -> bool:
                try:
                    await broker.publish(changeset_subject("d"), b"after", msg_id="after")
                except MessagingError:
                    return False  # still reconnecting
                return True

            await eventually(published_after_restart, message="publish after restart")
            await eventually(lambda: b"after" in seen, message="consume after restart")
            stop.set()
            await asyncio.wait_for(task, 10)
        assert seen.count(b"before") == 1
    finally:
        await first.astop()
        if second is not None:
            await second.astop()


async def test_message_that_kills_every_worker_is_dead_lettered_from_the_advisory(
    broker: NatsBroker, nats_server, eventually
) -> None:
    [seq] = await _publish_n(broker, 1)
    ack_wait, max_deliver = 0.5, 1
    proc, held = await _crash_worker_holding(
        nats_server.url, batch=1, ack_wait=ack_wait, max_deliver=max_deliver
    )
    if held != [seq]:
        await _sigkill(proc)
    assert held == [seq]
    survivor_stats = ConsumeStats()
    stop = asyncio.Event()
    handled: list[Delivery] = []

    async def survivor(batch: Sequence[Delivery]) -> None:
        handled.extend(batch)

    survivor_task = asyncio.create_task(
        broker.consume(
            CHANGESETS_STREAM,
            "applier",
            survivor,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            fetch_wait=0.2,
            stop=stop,
            stats=survivor_stats,
        )
    )
    try:
        await _sigkill(proc)  # the "poison" took its worker down without a handler error
        await eventually(lambda: survivor_stats.dead_lettered == 1, message="no dead letter")
    finally:
        stop.set()
        await asyncio.wait_for(survivor_task, 10)
    assert handled == []  # the server does not hand it out again

    letters: list[Delivery] = []
    got = asyncio.Event()

    async def read_dlq(batch: Sequence[Delivery]) -> None:
        letters.extend(batch)
        got.set()

    await _run_until(broker, got, DEADLETTER_STREAM, "ops", read_dlq, fetch_wait=0.2)
    [letter] = letters
    assert letter.data == b"m0"
    assert letter.headers[DLQ_SEQ_HEADER] == str(seq)
    assert letter.headers[DLQ_MSG_ID_HEADER] == "m-0"
    assert "max_deliveries_exceeded" in letter.headers[DLQ_ERROR_HEADER]


async def test_deleting_the_consumer_ends_the_loop_with_a_typed_error(
    broker: NatsBroker, eventually
) -> None:
    stats = ConsumeStats()

    async def handler(batch: Sequence[Delivery]) -> None:
        return None

    task = asyncio.create_task(
        broker.consume(CHANGESETS_STREAM, "doomed", handler, fetch_wait=0.2, stats=stats)
    )

    async def consumer_exists() -> bool:
        try:
            await broker.consumer_state(CHANGESETS_STREAM, "doomed")
        except StreamNotFoundError:
            return False
        return True

    await eventually(consumer_exists)
    await eventually(lambda: stats.empty_fetches >= 2, message="no idle fetches")
    assert not task.done()  # idle fetch timeouts do not end the loop
    assert await broker.delete_consumers(CHANGESETS_STREAM) == 1
    with pytest.raises(StreamNotFoundError) as info:
        await asyncio.wait_for(task, 10)
    assert info.value.code == "messaging.not_found"
