"""NatsBroker against a real server: streams, de-duplicated publish, core NATS, typed errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from backend.messaging import CoreMessage, NatsBroker, NatsConfig
from backend.messaging.errors import (
    AuthFailedError,
    ConnectFailedError,
    NoRespondersError,
    NoStreamError,
    NotConnectedError,
    PayloadTooLargeError,
    StreamNotFoundError,
)
from backend.messaging.subjects import (
    CHANGESETS_STREAM,
    DEADLETTER_STREAM,
    EVENTS_WILDCARD,
    STREAMS,
    changeset_subject,
    channel_from_event_subject,
    event_subject,
    results_subject,
)
from infra.nats.server import NatsServer, free_port


async def test_ensure_streams_is_idempotent_and_applies_the_config(broker: NatsBroker) -> None:
    await broker.ensure_streams()
    await broker.ensure_streams()
    for spec in STREAMS:
        state = await broker.stream_state(spec.name)
        assert state.messages == 0
        assert state.duplicate_window == 120.0


async def test_ensure_streams_updates_a_changed_config(
    broker: NatsBroker, nats_config: NatsConfig
) -> None:
    changed = NatsBroker(nats_config.with_overrides(duplicate_window=60.0))
    async with changed:
        await changed.ensure_streams()
        assert (await changed.stream_state(CHANGESETS_STREAM)).duplicate_window == 60.0
    await broker.ensure_streams()  # back to the default
    assert (await broker.stream_state(CHANGESETS_STREAM)).duplicate_window == 120.0


async def test_same_msg_id_twice_stores_one_message_and_reports_duplicate(
    broker: NatsBroker,
) -> None:
    subject = changeset_subject("device-1")
    first = await broker.publish(subject, b"changeset", msg_id="device-1:17")
    second = await broker.publish(subject, b"changeset", msg_id="device-1:17")
    other = await broker.publish(subject, b"changeset", msg_id="device-1:18")
    assert first.stream == CHANGESETS_STREAM
    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    assert not other.duplicate
    assert other.seq == first.seq + 1
    assert (await broker.stream_state(CHANGESETS_STREAM)).messages == 2


async def test_without_msg_id_every_publish_is_stored(broker: NatsBroker) -> None:
    subject = changeset_subject("device-2")
    acks = [await broker.publish(subject, b"same bytes") for _ in range(3)]
    assert [a.duplicate for a in acks] == [False, False, False]
    assert (await broker.stream_state(CHANGESETS_STREAM)).messages == 3


async def test_publish_to_a_subject_no_stream_owns_is_a_typed_error(broker: NatsBroker) -> None:
    with pytest.raises(NoStreamError) as info:
        await broker.publish("nobody.owns.this", b"x", timeout_s=2)
    assert info.value.code == "messaging.no_stream"


async def test_message_over_the_stream_limit_is_a_typed_error(
    broker: NatsBroker, nats_config: NatsConfig
) -> None:
    small = NatsBroker(nats_config.with_overrides(max_msg_size=1024))
    async with small:
        await small.ensure_streams()
        try:
            with pytest.raises(PayloadTooLargeError):
                await small.publish(changeset_subject("d"), b"x" * 2048)
        finally:
            await broker.ensure_streams()  # restore the default size for other tests


async def test_unknown_stream_state_is_not_found(broker: NatsBroker) -> None:
    with pytest.raises(StreamNotFoundError):
        await broker.stream_state("NO_SUCH_STREAM")


async def test_events_reach_subscribers_of_that_channel_only(broker: NatsBroker) -> None:
    seen: dict[str, list[CoreMessage]] = {"it": [], "de": [], "all": []}
    marker_seen = asyncio.Event()

    async def on_it(msg: CoreMessage) -> None:
        seen["it"].append(msg)

    async def on_de(msg: CoreMessage) -> None:
        seen["de"].append(msg)
        if msg.data == b"marker":
            marker_seen.set()

    async def on_all(msg: CoreMessage) -> None:
        seen["all"].append(msg)

    await broker.subscribe_core(event_subject("territory:IT-NW"), on_it)
    await broker.subscribe_core(event_subject("territory:DE-BY"), on_de)
    await broker.subscribe_core(EVENTS_WILDCARD, on_all)

    await broker.publish_core(event_subject("territory:IT-NW"), b"seq=41")
    # One connection delivers in order: once the marker reached the DE subscriber, an IT
    # event wrongly routed to it would already have arrived.
    await broker.publish_core(event_subject("territory:DE-BY"), b"marker")
    await asyncio.wait_for(marker_seen.wait(), 5)

    assert [m.data for m in seen["it"]] == [b"seq=41"]
    assert [m.data for m in seen["de"]] == [b"marker"]
    assert [channel_from_event_subject(m.subject) for m in seen["all"]] == [
        "territory:IT-NW",
        "territory:DE-BY",
    ]


async def test_unsubscribe_removes_interest_on_the_server(broker: NatsBroker) -> None:
    async def responder(msg: CoreMessage) -> None:
        assert msg.reply is not None
        await broker.publish_core(msg.reply, b"here")

    sub = await broker.subscribe_core(event_subject("public"), responder)
    assert (await broker.request(event_subject("public"), b"?", timeout_s=5)).data == b"here"
    await sub.unsubscribe()
    await sub.unsubscribe()  # idempotent
    await broker.flush()
    with pytest.raises(NoRespondersError):
        await broker.request(event_subject("public"), b"?", timeout_s=2)


async def test_request_reply_for_changeset_results(broker: NatsBroker) -> None:
    async def applier(msg: CoreMessage) -> None:
        assert msg.reply is not None
        await broker.publish_core(msg.reply, b"result:" + msg.data, headers={"k": "v"})

    await broker.subscribe_core(results_subject("dev1:5"), applier)
    reply = await broker.request(results_subject("dev1:5"), b"ok", timeout_s=5)
    assert reply.data == b"result:ok"
    assert reply.headers["k"] == "v"


async def test_handler_exception_does_not_end_the_subscription(broker: NatsBroker) -> None:
    got: list[bytes] = []
    done = asyncio.Event()

    async def flaky(msg: CoreMessage) -> None:
        if msg.data == b"boom":
            raise RuntimeError("handler bug")
        got.append(msg.data)
        done.set()

    await broker.subscribe_core(event_subject("public"), flaky)
    await broker.publish_core(event_subject("public"), b"boom")
    await broker.publish_core(event_subject("public"), b"fine")
    await asyncio.wait_for(done.wait(), 5)
    assert got == [b"fine"]


async def test_request_without_responders_is_a_typed_error(broker: NatsBroker) -> None:
    with pytest.raises(NoRespondersError):
        await broker.request(results_subject("nobody-waits"), b"", timeout_s=2)


async def test_queue_group_delivers_each_message_to_one_member(broker: NatsBroker) -> None:
    counts = {"a": 0, "b": 0}
    total = asyncio.Event()

    def handler(name: str):  # type: ignore[no-untyped-def]
        async def on_msg(msg: CoreMessage) -> None:
            counts[name] += 1
            if counts["a"] + counts["b"] == 20:
                total.set()

        return on_msg

    await broker.subscribe_core("sync.work.q", handler("a"), queue="workers")
    await broker.subscribe_core("sync.work.q", handler("b"), queue="workers")
    for i in range(20):
        await broker.publish_core("sync.work.q", str(i).encode())
    await asyncio.wait_for(total.wait(), 5)
    await broker.flush()
    assert counts["a"] + counts["b"] == 20


async def test_operations_after_close_are_typed_errors(nats_config: NatsConfig) -> None:
    broker = NatsBroker(nats_config)
    await broker.connect()
    await broker.close()
    await broker.close()  # idempotent
    assert not broker.is_connected
    with pytest.raises(NotConnectedError):
        await broker.publish(changeset_subject("d"), b"x")
    with pytest.raises(NotConnectedError):
        await broker.publish_core(event_subject("public"), b"x")


async def test_connect_to_nothing_fails_fast_and_typed() -> None:
    config = NatsConfig(
        servers=(f"nats://127.0.0.1:{free_port()}",),
        initial_connect_timeout=0.5,
        connect_timeout=0.2,
        reconnect_time_wait=0.05,
    )
    with pytest.raises(ConnectFailedError) as info:
        await NatsBroker(config).connect()
    assert info.value.code == "messaging.connect_failed"


async def test_wrong_credentials_are_an_auth_error() -> None:
    async with NatsServer(user="svc", password="right") as server:
        wrong = NatsConfig(
            servers=(server.url,),
            user="svc",
            password="wrong",
            initial_connect_timeout=20.0,
            reconnect_time_wait=0.05,
        )
        started = time.monotonic()
        with pytest.raises(AuthFailedError) as info:
            await NatsBroker(wrong).connect()
        assert info.value.code == "messaging.auth_failed"
        # Refused credentials fail at once instead of retrying until the connect deadline.
        assert time.monotonic() - started < 10.0
        async with NatsBroker(wrong.with_overrides(password="right")) as ok:
            await ok.ensure_streams()
            assert (await ok.stream_state(DEADLETTER_STREAM)).messages == 0
