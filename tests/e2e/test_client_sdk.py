"""The client SDK end to end: real gateway, applier, NATS and store, over HTTP and WebSocket.

The issue's "done" list: offline edits on two devices converge; a network drop mid-push
is retried without duplicates; a rejected mutation does not block the ones behind it; a
revoked device wipes itself; "checkpoint too old" keeps unsynced changes; plus a
bootstrap cut mid-stream that resumes, and background sync woken by WebSocket pokes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from client_sdk.database import database_files, key_path_for
from client_sdk.errors import DeviceRevokedError, NetworkError
from client_sdk.events import (
    ConflictResolved,
    MutationRejected,
    ReplicaWiped,
    ResyncStarted,
    SyncProgress,
)
from client_sdk.sync import SyncConfig
from infra.devstack.stack import DevStack

pytestmark = pytest.mark.timeout(120)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def later_than(ms: int) -> None:
    """Let the wall clock pass ``ms``: the next edit must be later in real time (its HLC
    then orders after the other device's edit)."""
    await asyncio.sleep(max(0.0, (ms + 2 - now_ms()) / 1000))
    assert now_ms() > ms


def visible(client: Any, entity: str) -> dict[str, dict[str, Any]]:
    page = client.sdk.query(entity, limit=1000)
    return {v.id: v.fields for v in page.items}


class CutPushResponse(httpx.AsyncBaseTransport):
    """Real HTTP, except that the next push's response is lost after the server got it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.cut_next_push = False
        self.push_bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/sync/push":
            self.push_bodies.append(await request.aread())
            if self.cut_next_push:
                self.cut_next_push = False
                response = await self.inner.handle_async_request(request)
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("connection reset by peer", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class CutBootstrapStream(httpx.AsyncBaseTransport):
    """Real HTTP, except that the first bootstrap stream breaks after ``keep`` bytes."""

    def __init__(self, keep: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.keep = keep
        self.bootstrap_urls: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/v1/sync/bootstrap":
            return response
        self.bootstrap_urls.append(request.url)
        if len(self.bootstrap_urls) > 1:
            return response
        upstream = response.stream
        keep = self.keep

        class Broken(httpx.AsyncByteStream):
            async def __aiter__(self) -> Any:
                sent = 0
                async for chunk in upstream:  # type: ignore[union-attr]
                    if sent + len(chunk) > keep:
                        yield chunk[: keep - sent]
                        raise httpx.RemoteProtocolError("peer closed connection")
                    sent += len(chunk)
                    yield chunk

            async def aclose(self) -> None:
                await upstream.aclose()  # type: ignore[union-attr]

        return httpx.Response(
            response.status_code, headers=response.headers, stream=Broken(), request=request
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_offline_edits_on_two_devices_sync_and_converge(new_client: Any) -> None:
    phone, tablet = new_client("phone"), new_client("tablet")
    acme = phone.sdk.upsert("account", None, {"name": "Acme Meccanica", "telephone1": "+39 02 1"})
    beta = phone.sdk.upsert("account", None, {"name": "Beta Utensili"})
    lead = phone.sdk.upsert("lead", None, {"subject": "Fiera Bologna", "lastname": "Verdi"})
    await phone.sdk.sync()
    await tablet.sdk.sync()
    assert visible(tablet, "account") == visible(phone, "account")

    # Offline on both: different fields of one record, the same field of another (the
    # tablet first, the phone later: the phone's value must win everywhere), a create,
    # and a delete.
    tablet.sdk.upsert("account", acme.id, {"address1_city": "Genova"})
    phone.sdk.upsert("account", acme.id, {"telephone1": "+39 010 555"})
    tablet.sdk.upsert("account", beta.id, {"name": "Beta (tablet)"})
    await later_than(now_ms())
    phone.sdk.upsert("account", beta.id, {"name": "Beta (phone)"})
    contact = phone.sdk.upsert("contact", None, {"lastname": "Bianchi", "firstname": "Anna"})
    tablet.sdk.delete("lead", lead.id)

    await phone.sdk.sync()
    await tablet.sdk.sync()
    await phone.sdk.sync()

    for entity in ("account", "contact", "lead"):
        assert visible(phone, entity) == visible(tablet, entity), entity
    merged = visible(phone, "account")[acme.id]
    assert (merged["address1_city"], merged["telephone1"]) == ("Genova", "+39 010 555")
    assert visible(tablet, "account")[beta.id]["name"] == "Beta (phone)"
    assert contact.id in visible(tablet, "contact")
    assert lead.id not in visible(phone, "lead")
    assert phone.sdk.pending() == [] and tablet.sdk.pending() == []
    [lost] = [c for c in tablet.of(ConflictResolved) if c.result.id == beta.id]
    assert lost.result.fields["name"] == "Beta (phone)"
    for client in (phone, tablet):
        assert client.sdk.get("account", acme.id).status == "synced"  # type: ignore[union-attr]


async def test_network_drop_mid_push_is_retried_without_duplicates(
    new_client: Any, admin_http: httpx.AsyncClient
) -> None:
    http = CutPushResponse()
    phone = new_client("phone", http=http)
    await phone.sdk.sync()
    account = phone.sdk.upsert("account", None, {"name": "Retry Srl"})
    http.cut_next_push = True
    with pytest.raises(NetworkError):
        await phone.sdk.sync()
    [inflight] = phone.sdk.pending()
    assert inflight.status == "inflight" and inflight.changeset_id == f"{phone.device_id}:1"

    done = await phone.sdk.sync()
    assert done.checksum_ok is True
    assert len(http.push_bodies) == 2 and http.push_bodies[0] == http.push_bodies[1]
    shown = phone.sdk.get("account", account.id)
    assert shown is not None and (shown.version, shown.status) == (1, "synced")
    audit = await admin_http.get(
        "/admin/audit", params={"entity": "account", "record_id": account.id}
    )
    assert audit.status_code == 200, audit.text
    entries = audit.json()
    assert [e["changeset_id"] for e in entries] == [inflight.changeset_id]


async def test_a_rejected_mutation_does_not_block_the_ones_behind_it(
    new_client: Any,
) -> None:
    phone = new_client("phone")
    account = phone.sdk.upsert("account", None, {"name": "Gamma", "description": "v1"})
    await phone.sdk.sync()
    before = phone.sdk.get("account", account.id)
    assert before is not None

    first = phone.sdk.upsert("lead", None, {"subject": "before the bad one"})
    phone.sdk.upsert("account", account.id, {"revenue": 1_000_000.0})  # sales reps may not
    after = phone.sdk.upsert("contact", None, {"lastname": "after the bad one"})
    done = await phone.sdk.sync()

    [rejected] = phone.sdk.rejections()
    assert (rejected.entity, rejected.id, rejected.code) == (
        "account",
        account.id,
        "field_not_writable",
    )
    assert [e.code for e in phone.of(MutationRejected)] == ["field_not_writable"]
    for entity, rec in (("lead", first), ("contact", after)):
        shown = phone.sdk.get(entity, rec.id)
        assert shown is not None and shown.version >= 1 and shown.status == "synced"
    # Kept and visible until the user decides; later edits still flow.
    flagged = phone.sdk.get("account", account.id)
    assert flagged is not None and flagged.status == "rejected"
    assert flagged.fields["revenue"] == 1_000_000.0
    phone.sdk.upsert("lead", first.id, {"subject": "edited after the rejection"})
    await phone.sdk.sync()
    assert phone.sdk.get("lead", first.id).status == "synced"  # type: ignore[union-attr]
    # Discard: back to the server's version.
    phone.sdk.discard(rejected.mutation_id)
    restored = phone.sdk.get("account", account.id)
    assert restored is not None
    assert restored.fields == before.fields and restored.status == "synced"
    assert done.checksum_ok is True
    assert (await phone.sdk.sync()).checksum_ok is True


async def test_a_revoked_device_wipes_itself(new_client: Any, stack: DevStack) -> None:
    phone = new_client("phone")
    phone.sdk.upsert("account", None, {"name": "Secret customer"})
    await phone.sdk.sync()
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        revoked = await http.delete(
            f"/v1/devices/{phone.device_id}", headers={"Authorization": f"Bearer {phone.token}"}
        )
    assert revoked.status_code == 200, revoked.text

    with pytest.raises(DeviceRevokedError):
        await phone.sdk.sync()
    assert phone.sdk.wiped
    assert [e.reason for e in phone.of(ReplicaWiped)] == ["device_revoked"]
    assert not key_path_for(phone.path).exists()
    assert not any(f.exists() for f in database_files(phone.path))


async def test_checkpoint_too_old_resyncs_and_keeps_unsynced_changes(
    new_client: Any, stack: DevStack
) -> None:
    phone, tablet = new_client("phone"), new_client("tablet")
    kept = phone.sdk.upsert("account", None, {"name": "Delta"})
    doomed = phone.sdk.upsert("lead", None, {"subject": "to be deleted elsewhere"})
    await phone.sdk.sync()
    await tablet.sdk.sync()
    checkpoint = phone.sdk.engine.checkpoint
    assert checkpoint is not None

    # The phone goes offline with edits; meanwhile a delete happens and its tombstone is
    # compacted, so the phone's checkpoint predates what the server still has.
    phone.sdk.upsert("account", kept.id, {"address1_city": "Unsynced city"})
    offline_new = phone.sdk.upsert("lead", None, {"subject": "made offline"})
    tablet.sdk.delete("lead", doomed.id)
    await tablet.sdk.sync()
    async with httpx.AsyncClient(base_url=stack.base_url) as http:
        deadline = time.monotonic() + 20
        while True:
            probe = await http.get(
                "/v1/sync/pull",
                params={"device_id": phone.device_id, "checkpoint": checkpoint},
                headers={"Authorization": f"Bearer {phone.token}"},
            )
            if probe.json().get("action") == "resync":
                break
            assert time.monotonic() < deadline, "the tombstone was never compacted"
            await asyncio.sleep(0.1)

    done = await phone.sdk.sync()
    assert "checkpoint_too_old" in [e.reason for e in phone.of(ResyncStarted)]
    assert done.checksum_ok is True
    assert phone.sdk.pending() == []
    assert phone.sdk.get("account", kept.id).fields["address1_city"] == "Unsynced city"  # type: ignore[union-attr]
    assert phone.sdk.get("lead", doomed.id) is None
    await tablet.sdk.sync()
    assert tablet.sdk.get("account", kept.id).fields["address1_city"] == "Unsynced city"  # type: ignore[union-attr]
    assert tablet.sdk.get("lead", offline_new.id) is not None


async def test_bootstrap_is_streamed_and_resumes_after_a_broken_stream(
    new_client: Any,
) -> None:
    writer = new_client("writer")
    for i in range(60):
        writer.sdk.upsert("contact", None, {"lastname": f"Kowalski {i}", "address1_city": "Łódź"})
    await writer.sdk.sync()

    http = CutBootstrapStream(keep=1500)
    reader = new_client("reader", http=http, bootstrap_batch=10)
    with pytest.raises(NetworkError):
        await reader.sdk.sync()
    await writer.sdk.sync()
    total = writer.sdk.count("contact")  # the user's whole scope (other tests add some)
    partial = reader.sdk.count("contact")
    assert 0 < partial < total
    done = await reader.sdk.sync()
    assert len(http.bootstrap_urls) == 2
    assert "resume" not in http.bootstrap_urls[0].params
    assert http.bootstrap_urls[1].params["resume"]
    assert visible(reader, "contact") == visible(writer, "contact")
    assert done.checksum_ok is True
    progress = [e.done for e in reader.of(SyncProgress) if e.phase == "bootstrap"]
    assert progress == sorted(progress) and progress[-1] >= total
    hits = reader.sdk.search("lodz kowalski 4", entities=["contact"])
    assert [h.title for h in hits] == ["Kowalski 4"]  # the FTS index came with the snapshot


async def test_background_sync_is_woken_by_websocket_pokes(
    new_client: Any, eventually: Any
) -> None:
    phone = new_client("phone")
    tablet = new_client("tablet", config=SyncConfig(poll_interval_s=3600))
    await phone.sdk.sync()
    tablet.sdk.start()
    try:
        await eventually(lambda: tablet.sdk.engine.checkpoint is not None, within=20)
        pulls_before = len([e for e in tablet.of(SyncProgress) if e.phase == "pull"])
        made = phone.sdk.upsert("appointment", None, {"subject": "Visita cantiere"})
        await phone.sdk.sync()
        await eventually(lambda: tablet.sdk.get("appointment", made.id) is not None, within=20)
        assert len([e for e in tablet.of(SyncProgress) if e.phase == "pull"]) > pulls_before
        # Local writes are pushed by the loop too.
        back = tablet.sdk.upsert("appointment", made.id, {"location": "Milano"})
        await eventually(lambda: tablet.sdk.pending() == [], within=20)
        await phone.sdk.sync()
        assert phone.sdk.get("appointment", back.id).fields["location"] == "Milano"  # type: ignore[union-attr]
    finally:
        await tablet.sdk.stop()
