"""Push over HTTP: stateless checks, hand-off to JetStream, waiting, replay, 202, wipe."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from backend.applier.messages import ChangesetEnvelope, envelope_decoder
from backend.gateway.runtime import GatewayRuntime
from backend.messaging import CoreMessage, NatsBroker
from backend.messaging.subjects import CHANGESETS_STREAM, RESULT_SUBJECT_HEADER
from backend.store.base import RecordStore
from backend.store.types import WriteBatch
from sync_protocol.changesets import ChangesetResult, MutationResult

from .conftest import ROSSI, AuthHeaders

Client = httpx.AsyncClient
CLOCK = [1_700_000_000_000, 0, "dev-a"]


def mutation(**overrides: Any) -> dict[str, Any]:
    return {
        "entity": "lead",
        "id": str(uuid.uuid4()),
        "clock": CLOCK,
        "fields": {"subject": "New lead"},
        **overrides,
    }


def changeset(*mutations: dict[str, Any], n: int = 1, device: str = "dev-a") -> dict[str, Any]:
    return {
        "protocol": 1,
        "changeset_id": f"{device}:{n}",
        "device_id": device,
        "mutations": list(mutations) or [mutation()],
    }


class FakeApplier:
    """Plays the applier's part on core NATS: answers every changeset on its result subject."""

    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker
        self.seen: list[ChangesetEnvelope] = []

    async def __call__(self, message: CoreMessage) -> None:
        envelope = envelope_decoder.decode(message.data)
        self.seen.append(envelope)
        result = ChangesetResult(
            changeset_id=envelope.push.changeset_id,
            results=[
                MutationResult(index=i, entity=m.entity, id=m.id, outcome="applied", version=1)
                for i, m in enumerate(envelope.push.mutations)
            ],
            seq=7,
        )
        reply = message.headers[RESULT_SUBJECT_HEADER]
        await self.broker.publish_core(reply, msgspec.msgpack.encode(result))


@pytest.fixture
async def fake_applier(broker: NatsBroker) -> AsyncIterator[FakeApplier]:
    fake = FakeApplier(broker)
    sub = await broker.subscribe_core("sync.changesets.>", fake)
    try:
        yield fake
    finally:
        await sub.unsubscribe()


async def test_result_within_the_wait_is_answered_200(
    client: Client, auth: AuthHeaders, fake_applier: FakeApplier
) -> None:
    body = changeset(mutation(), mutation())
    r = await client.post(
        "/v1/sync/push", json=body, headers={**auth("marco.rossi"), "Accept-Language": "pl"}
    )
    assert r.status_code == 200, r.text
    result = msgspec.json.decode(r.content, type=ChangesetResult)
    assert [m.outcome for m in result.results] == ["applied", "applied"]
    (envelope,) = fake_applier.seen
    assert envelope.actor.user == ROSSI.sub
    assert envelope.actor.profile == "sales_rep"
    assert envelope.actor.channels == [f"owner:{ROSSI.sub}"]
    assert (envelope.actor.device_id, envelope.actor.language) == ("dev-a", "pl")
    assert envelope.received_ms > 0


async def test_without_an_answer_it_is_202_with_a_status_url(
    client: Client, auth: AuthHeaders, store: RecordStore
) -> None:
    r = await client.post("/v1/sync/push", json=changeset(), headers=auth("marco.rossi"))
    assert r.status_code == 202
    assert r.json() == {"changeset_id": "dev-a:1", "results": [], "status": "pending"}
    location = r.headers["location"]
    assert location == "/v1/sync/changesets/dev-a%3A1"
    status = await client.get(location, headers=auth("marco.rossi"))
    assert status.status_code == 202 and status.json()["status"] == "pending"
    stored = ChangesetResult(changeset_id="dev-a:1", results=[])
    await store.apply(WriteBatch(changeset=stored, device_id="dev-a"))
    status = await client.get(location, headers=auth("marco.rossi"))
    assert status.status_code == 200
    assert msgspec.json.decode(status.content, type=ChangesetResult).status == "done"
    # Another user cannot read it (same answer as for a changeset that does not exist).
    other = await client.get(location, headers=auth("anna.kowalska"))
    missing = await client.get("/v1/sync/changesets/nobody:1", headers=auth("anna.kowalska"))
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()


async def test_a_stored_result_older_than_the_duplicate_window_is_still_answered(
    client: Client, auth: AuthHeaders, store: RecordStore, broker: NatsBroker
) -> None:
    await client.get("/v1/sync/pull", params={"device_id": "dev-a"}, headers=auth("marco.rossi"))
    stored = ChangesetResult(
        changeset_id="dev-a:5",
        results=[MutationResult(index=0, entity="lead", id="x", outcome="merged", version=3)],
    )
    await store.apply(WriteBatch(changeset=stored, device_id="dev-a"))
    before = (await broker.stream_state(CHANGESETS_STREAM)).messages
    # Stored, but unknown to JetStream's duplicate window: the push goes to the applier
    # (which would replay it); with none running, the stored result answers after the wait.
    r = await client.post("/v1/sync/push", json=changeset(n=5), headers=auth("marco.rossi"))
    assert r.status_code == 200
    assert r.json()["results"][0]["outcome"] == "merged"
    assert (await broker.stream_state(CHANGESETS_STREAM)).messages == before + 1
    # Inside the window the retry is a duplicate: answered from the store, nothing added.
    r = await client.post("/v1/sync/push", json=changeset(n=5), headers=auth("marco.rossi"))
    assert r.status_code == 200 and r.json()["results"][0]["outcome"] == "merged"
    assert (await broker.stream_state(CHANGESETS_STREAM)).messages == before + 1


async def test_a_retried_push_is_stored_once(
    client: Client, auth: AuthHeaders, broker: NatsBroker
) -> None:
    body = changeset()
    for _ in range(2):
        r = await client.post("/v1/sync/push", json=body, headers=auth("marco.rossi"))
        assert r.status_code == 202
    assert (await broker.stream_state(CHANGESETS_STREAM)).messages == 1


async def test_msgpack_bodies_and_answers(
    client: Client, auth: AuthHeaders, fake_applier: FakeApplier
) -> None:
    r = await client.post(
        "/v1/sync/push",
        content=msgspec.msgpack.encode(changeset()),
        headers={
            **auth("marco.rossi"),
            "Content-Type": "application/msgpack",
            "Accept": "application/msgpack",
        },
    )
    assert r.status_code == 200
    assert msgspec.msgpack.decode(r.content, type=ChangesetResult).changeset_id == "dev-a:1"


@pytest.mark.parametrize(
    ("login", "mutations", "status", "codes"),
    [
        ("marco.rossi", [mutation(entity="invoice")], 422, ["unknown_entity"]),
        ("marco.rossi", [mutation(fields={"nope": 1})], 422, ["unknown_field"]),
        ("marco.rossi", [mutation(fields={"subject": 5})], 422, ["invalid_field_value"]),
        ("marco.rossi", [mutation(fields={"createdon": "x"})], 403, ["field_not_writable"]),
        ("marco.rossi", [mutation(id="not-a-uuid")], 422, ["invalid_record_id"]),
        ("marco.rossi", [mutation(clock=[-1, 0, "d"])], 400, ["invalid_clock"]),
        ("marco.rossi", [mutation(fields={"ownerid": ROSSI.sub})], 403, ["field_not_writable"]),
        ("marco.rossi", [mutation(entity="quote", fields={})], 403, ["operation_not_allowed"]),
        (
            "marco.rossi",
            [mutation(entity="account", op="delete", base_version=2, fields={})],
            403,
            ["operation_not_allowed"],
        ),
        (
            "jonas.weber",
            [mutation(entity="account", fields={"name": "x"})],
            403,
            ["operation_not_allowed"],
        ),
        ("marco.rossi", [mutation(etag='W/"1"')], 422, ["schema_violation"]),
        ("marco.rossi", [mutation(op="delete", base_version=1)], 422, ["schema_violation"]),
        (
            "marco.rossi",
            [mutation(), mutation(entity="invoice"), mutation(fields={"ownerid": "x"})],
            422,
            ["unknown_entity", "field_not_writable"],
        ),
    ],
)
async def test_stateless_faults_refuse_the_changeset_with_a_code_per_mutation(
    client: Client,
    auth: AuthHeaders,
    broker: NatsBroker,
    login: str,
    mutations: list[dict[str, Any]],
    status: int,
    codes: list[str],
) -> None:
    r = await client.post("/v1/sync/push", json=changeset(*mutations), headers=auth(login))
    assert r.status_code == status, r.text
    problem = r.json()
    assert problem["code"] == codes[0]
    assert [e["code"] for e in problem["errors"]] == codes
    assert (await broker.stream_state(CHANGESETS_STREAM)).messages == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_payload"),
        (b"\xc1", "application/msgpack", 400, "malformed_payload"),
        (b"{}", "text/plain", 415, "unsupported_media_type"),
        (
            msgspec.json.encode({**changeset(), "protocol": 99}),
            "application/json",
            426,
            "unsupported_protocol_version",
        ),
        (
            msgspec.json.encode({**changeset(), "changeset_id": "other:1"}),
            "application/json",
            400,
            "malformed_payload",
        ),
        (
            msgspec.json.encode({**changeset(), "mutations": []}),
            "application/json",
            400,
            "malformed_payload",
        ),
        (
            msgspec.json.encode(changeset(*[mutation()] * 501)),
            "application/json",
            413,
            "payload_too_large",
        ),
    ],
)
async def test_malformed_bodies_are_typed_problems(
    client: Client, auth: AuthHeaders, content: bytes, content_type: str, status: int, code: str
) -> None:
    r = await client.post(
        "/v1/sync/push",
        content=content,
        headers={**auth("marco.rossi"), "Content-Type": content_type, "Accept-Language": "it"},
    )
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code
    assert body["type"] == f"urn:crmsync:problem:{code}"
    assert body["status"] == status
    assert body["detail"] != body["title"] or code == "payload_too_large"


async def test_a_revoked_device_is_told_to_wipe(
    client: Client, auth: AuthHeaders, runtime: GatewayRuntime
) -> None:
    await runtime.devices.check(
        "dev-a", await runtime.authenticator.authenticate(auth("marco.rossi")["Authorization"])
    )
    await runtime.devices.revoke("dev-a", "admin")
    r = await client.post("/v1/sync/push", json=changeset(), headers=auth("marco.rossi"))
    assert r.status_code == 410
    assert r.json()["code"] == "device_revoked"
    assert r.json()["wipe"] is True


async def test_another_users_device_is_refused(client: Client, auth: AuthHeaders) -> None:
    r = await client.post("/v1/sync/push", json=changeset(), headers=auth("marco.rossi"))
    assert r.status_code == 202
    r = await client.post("/v1/sync/push", json=changeset(n=2), headers=auth("anna.kowalska"))
    assert r.status_code == 403
    assert r.json()["code"] == "device_not_registered"
