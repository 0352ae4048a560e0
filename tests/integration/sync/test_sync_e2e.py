"""End to end over real HTTP and WebSocket: gateway and applier processes, NATS, SQLite.

Each test uses its own devices and records on the module's running stack; the gateway
restart test comes last because it restarts processes.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import websockets

from backend.messaging.broker import NatsBroker
from backend.messaging.config import NatsConfig
from backend.messaging.subjects import CHANGESETS_STREAM
from backend.store.factory import create_store
from sync_protocol.changesets import Mutation, UpstreamBatch
from sync_protocol.hlc import HLC

MARCO = "00000000-0000-4000-8000-000000000001"
COLLEAGUE = "00000000-0000-4000-8000-0000000000c1"


def _id() -> str:
    return str(uuid.uuid4())


def _account(id: str, owner: str = MARCO, clock_ms: int = 1_000, **fields: object) -> Mutation:
    values = {
        "name": "Ferrari Meccanica S.p.A.",
        "telephone1": "+39 02 0000",
        "description": "Cliente storico",
        "ownerid": owner,
        "territory": "IT-NW",
        "country": "IT",
        **fields,
    }
    return Mutation(
        entity="account",
        id=id,
        clock=HLC(1_735_689_600_000 + clock_ms, 0, "upstream:dynamics"),
        fields=values,
        etag=f'W/"{clock_ms}"',
    )


def _batch(*mutations: Mutation) -> UpstreamBatch:
    return UpstreamBatch(batch_id=_id(), source="dynamics", mutations=list(mutations))


async def _next_event(socket: websockets.ClientConnection, kind: str) -> dict[str, object]:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if frame.get("type") == kind:
            return frame


async def test_two_devices_with_offline_edits_converge_and_both_learn_the_outcome(
    sync_stack, new_device, load_upstream
) -> None:
    account = _id()
    await load_upstream(_batch(_account(account)))
    phone = new_device("marco.rossi", "marco-phone")
    tablet = new_device("marco.rossi", "marco-tablet")
    await phone.pull()
    await tablet.pull()
    assert phone.versions[("account", account)] == tablet.versions[("account", account)] == 1

    ws_url = f"{sync_stack.ws_url}?device_id=marco-tablet&access_token={tablet.token}"
    async with websockets.connect(ws_url) as socket:
        ready = await _next_event(socket, "ready")
        # Offline: the tablet edits first, the phone later (its clock is newer).
        tablet_edit = tablet.upsert(
            "account",
            account,
            telephone1="+39 02 2222",
            name="Ferrari Meccanica (tablet)",
            description="nota dal tablet",
        )
        phone.clock.observe(tablet_edit.clock)  # later, even within the same millisecond
        phone_edit = phone.upsert(
            "account", account, telephone1="+39 02 1111", description="nota dal telefono"
        )
        assert tablet_edit.clock < phone_edit.clock

        pushed = await phone.push([phone_edit])
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["results"][0]["outcome"] == "applied"
        poke = await _next_event(socket, "changes")
        assert int(poke["seq"]) > int(ready["seq"])

    answer = await tablet.push([tablet_edit])
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    assert result["outcome"] == "conflict"
    assert result["code"] == "conflict_held"
    assert result["field_outcomes"] == {
        "telephone1": "overridden",
        "name": "applied",
        "description": "held",
    }
    assert result["fields"]["telephone1"] == "+39 02 1111"  # the winning value
    assert result["conflict_ids"]

    await phone.pull()
    await tablet.pull()
    key = ("account", account)
    assert phone.records[key] == tablet.records[key]
    assert phone.versions[key] == tablet.versions[key] == 3
    assert phone.records[key]["telephone1"] == "+39 02 1111"
    assert phone.records[key]["name"] == "Ferrari Meccanica (tablet)"
    assert phone.records[key]["description"] == "nota dal telefono"
    tablet_results = [r for r in tablet.results if r["changeset_id"] == "marco-tablet:1"]
    assert tablet_results and tablet_results[0]["results"][0]["outcome"] == "conflict"
    assert any(r["changeset_id"] == "marco-phone:1" for r in phone.results)

    # The held description waits for a person, owned by the record's owner.
    admin = {"Authorization": f"Bearer {sync_stack.token('lucia.garcia')}"}
    async with httpx.AsyncClient(base_url=sync_stack.admin_url) as client:
        listed = await client.get("/admin/conflicts", params={"status": "open"}, headers=admin)
    assert listed.status_code == 200, listed.text
    held = [c for c in listed.json() if c["record_id"] == account]
    assert [(c["field"], c["owner"], c["device_value"]) for c in held] == [
        ("description", MARCO, "nota dal tablet")
    ]


async def test_record_leaving_the_devices_scope_is_removed(new_device, load_upstream) -> None:
    kept, moved = _id(), _id()
    await load_upstream(_batch(_account(kept), _account(moved)))
    phone = new_device("marco.rossi", "marco-scope")
    await phone.pull()
    assert {("account", kept), ("account", moved)} <= set(phone.records)

    # Dynamics gives the account to a colleague: it leaves marco's only channel.
    await load_upstream(_batch(_account(moved, owner=COLLEAGUE, clock_ms=2_000)))
    await phone.pull()

    assert ("account", moved) in phone.removed
    assert ("account", moved) not in phone.records
    assert ("account", kept) in phone.records
    assert phone.removed == [("account", moved)]


async def test_revoked_device_is_told_to_wipe(sync_stack, new_device) -> None:
    phone = new_device("anna.kowalska", "anna-lost-phone")
    await phone.pull()  # registers the device
    admin = {"Authorization": f"Bearer {sync_stack.token('lucia.garcia')}"}
    async with httpx.AsyncClient(base_url=sync_stack.admin_url) as client:
        revoked = await client.post(
            "/admin/devices/anna-lost-phone/revoke", json={"reason": "lost"}, headers=admin
        )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] is True

    page = await phone.pull()
    assert page["action"] == "wipe"
    pushed = await phone.push([phone.upsert("lead", _id(), subject="x", lastname="y")])
    assert pushed.status_code == 410
    assert pushed.json()["code"] == "device_revoked"
    assert pushed.json()["wipe"] is True


async def test_repushing_a_changeset_returns_the_identical_result(new_device) -> None:
    phone = new_device("marco.rossi", "marco-retry")
    lead = _id()
    body = phone.changeset([phone.upsert("lead", lead, subject="Fiera EIMA", lastname="Verdi")])

    first = await phone.push_body(body)
    again = await phone.push_body(body)

    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert first.json()["results"][0]["outcome"] == "applied"
    await phone.pull()
    assert phone.versions[("lead", lead)] == 1


async def test_gateway_restart_mid_push_loses_nothing(sync_stack, new_device) -> None:
    phone = new_device("marco.rossi", "marco-restart")
    lead = _id()
    body = phone.changeset([phone.upsert("lead", lead, subject="Rinnovo flotta", lastname="Neri")])
    # With no applier the gateway holds the push, waiting for a result; kill it then.
    sync_stack.stop_applier()
    async with NatsBroker(NatsConfig(servers=(sync_stack.nats.url,))) as broker:
        before = (await broker.stream_state(CHANGESETS_STREAM)).last_seq
        in_flight = asyncio.create_task(phone.push_body(body))
        deadline = time.monotonic() + 10
        while (published := (await broker.stream_state(CHANGESETS_STREAM)).last_seq) == before:
            assert time.monotonic() < deadline, "the push never reached JetStream"
            await asyncio.sleep(0.02)
    assert published == before + 1
    sync_stack.kill_gateway()
    try:
        lost = await in_flight
    except httpx.HTTPError:
        lost = None
    assert lost is None or lost.status_code != 200

    sync_stack.start_applier()
    sync_stack.start_gateway()
    retried = await phone.push_body(body)

    assert retried.status_code == 200, retried.text
    assert retried.json()["results"][0]["outcome"] == "applied"
    await phone.pull()
    assert phone.versions[("lead", lead)] == 1
    store = create_store(sync_stack.store_config)
    await store.start()
    try:
        audit = await store.audit_trail("lead", lead)
    finally:
        await store.close()
    assert [(a.changeset_id, a.outcome) for a in audit] == [("marco-restart:1", "applied")]
    async with NatsBroker(NatsConfig(servers=(sync_stack.nats.url,))) as broker:
        # The retry inside the duplicate window stored nothing new in the stream.
        assert (await broker.stream_state(CHANGESETS_STREAM)).last_seq == published
