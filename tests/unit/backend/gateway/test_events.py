"""Change pokes: the hub's subscriptions and fan-out, and the WebSocket endpoint."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from backend.applier.messages import ChangeEvent, encode
from backend.gateway.events import EventConnection, EventHub
from backend.gateway.runtime import GatewayRuntime
from backend.messaging import NatsBroker
from backend.messaging.subjects import event_subject
from backend.observability import Metrics

from .conftest import KOWALSKA, ROSSI, AuthHeaders


class Inbox:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        self.frames.append(json.loads(text))


async def publish(broker: NatsBroker, channel: str, seq: int) -> None:
    await broker.publish_core(event_subject(channel), encode(ChangeEvent(channel=channel, seq=seq)))


async def test_hub_subscribes_per_channel_and_pokes_once_per_commit(
    broker: NatsBroker, eventually: Any
) -> None:
    metrics = Metrics()
    hub = EventHub(broker, metrics)
    a, b, c = Inbox(), Inbox(), Inbox()
    conn_a = EventConnection("a", "u1", frozenset({"owner:u1", "territory:IT-NW"}), a.send)
    conn_b = EventConnection("b", "u2", frozenset({"territory:IT-NW"}), b.send)
    conn_c = EventConnection("c", "u3", frozenset({"owner:u3"}), c.send)
    for conn in (conn_a, conn_b, conn_c):
        await hub.join(conn)
    assert hub.channel_count == 3
    # One commit touching two of a's channels: one poke for a, one for b, none for c.
    await publish(broker, "owner:u1", 10)
    await publish(broker, "territory:IT-NW", 10)
    await eventually(lambda: len(a.frames) == 1 and len(b.frames) == 1)
    await publish(broker, "territory:IT-NW", 11)
    await eventually(lambda: len(a.frames) == 2 and len(b.frames) == 2)
    assert a.frames == [{"type": "changes", "seq": 10}, {"type": "changes", "seq": 11}]
    assert c.frames == []
    await hub.leave(conn_b)
    await hub.leave(conn_c)
    assert hub.channel_count == 2  # IT-NW still needed by a; owner:u3 dropped
    await hub.leave(conn_a)
    assert hub.channel_count == 0 and hub.connection_count == 0
    assert metrics.ws_connections._value.get() == 0


async def test_expired_tokens_get_no_more_pokes(broker: NatsBroker) -> None:
    hub = EventHub(broker)
    inbox = Inbox()
    closed: list[bool] = []
    conn = EventConnection(
        "a",
        "u1",
        frozenset({"c1"}),
        inbox.send,
        expires_at=1.0,
        on_expired=lambda: closed.append(True),
    )
    await hub.join(conn)
    assert hub.poke("c1", 5) == 0
    assert closed == [True]
    await hub.close()


async def connect(url: str, **params: str) -> ClientConnection:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return await websockets.connect(url.replace("http", "ws") + f"/v1/sync/events?{query}")


async def test_socket_gets_ready_then_pokes_for_its_channels_only(
    live_url: str, auth: AuthHeaders, broker: NatsBroker, runtime: GatewayRuntime
) -> None:
    token = auth("marco.rossi")["Authorization"].split()[1]
    other = auth("anna.kowalska")["Authorization"].split()[1]
    async with (
        await connect(live_url, access_token=token, device_id="dev-a") as ws,
        await connect(live_url, access_token=other, device_id="dev-k") as ws_k,
    ):
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        json.loads(await ws_k.recv())
        await publish(broker, f"owner:{KOWALSKA.sub}", 41)
        await publish(broker, f"owner:{ROSSI.sub}", 42)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "changes", "seq": 42}
        assert json.loads(await asyncio.wait_for(ws_k.recv(), 5)) == {
            "type": "changes",
            "seq": 41,
        }
        await ws.send("ping")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        assert runtime.hub.connection_count == 2


async def test_header_auth_works_too(live_url: str, auth: AuthHeaders) -> None:
    url = live_url.replace("http", "ws") + "/v1/sync/events?device_id=dev-a"
    async with websockets.connect(url, additional_headers=auth("marco.rossi")) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"


@pytest.mark.parametrize(
    ("params", "close_code", "code"),
    [
        ({"device_id": "dev-a"}, 4401, "unauthorized"),
        ({"device_id": "dev-a", "access_token": "garbage"}, 4401, "unauthorized"),
    ],
)
async def test_bad_tokens_are_refused_with_a_typed_close(
    live_url: str, params: dict[str, str], close_code: int, code: str
) -> None:
    async with await connect(live_url, **params) as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["code"] == code
        with pytest.raises(websockets.ConnectionClosed) as e:
            await ws.recv()
        assert e.value.rcvd is not None and e.value.rcvd.code == close_code


async def test_revoked_and_foreign_devices_are_refused(
    live_url: str, auth: AuthHeaders, runtime: GatewayRuntime
) -> None:
    token = auth("marco.rossi")["Authorization"].split()[1]
    other = auth("anna.kowalska")["Authorization"].split()[1]
    async with await connect(live_url, access_token=token, device_id="dev-a") as ws:
        await ws.recv()
    async with await connect(live_url, access_token=other, device_id="dev-a") as ws:
        frame = json.loads(await ws.recv())
        assert (frame["code"], frame["status"]) == ("device_not_registered", 403)
    await runtime.devices.revoke("dev-a", "admin")
    async with await connect(live_url, access_token=token, device_id="dev-a") as ws:
        frame = json.loads(await ws.recv())
        assert (frame["code"], frame["wipe"]) == ("device_revoked", True)
        with pytest.raises(websockets.ConnectionClosed) as e:
            await ws.recv()
        assert e.value.rcvd is not None and e.value.rcvd.code == 4410
