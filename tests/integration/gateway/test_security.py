"""Security: forged tokens are refused everywhere, and a sales rep can neither read nor
write a record outside their channels through pull, push, bootstrap, blobs or events, with
errors that reveal nothing about the record. Real store, real NATS, real applier, real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import msgspec
import pytest
import websockets

from backend.auth.dev_signer import DevSigner
from backend.store.base import RecordStore
from sync_protocol.changesets import ChangesetResult
from sync_protocol.pull import PullResponse

from .conftest import KOWALSKA, ROSSI, AuthHeaders, Gateway, Push, upsert


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_tokens(signer: DevSigner) -> dict[str, str]:
    """Every kind of token the gateway must refuse, each otherwise valid."""
    now = int(time.time())
    claims: dict[str, Any] = {
        **{k: v for k, v in ROSSI.claims().items()},
        "iss": signer.issuer,
        "aud": signer.audience,
        "iat": now,
        "exp": now + 600,
    }
    header_none = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    header_hs = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    public = json.dumps(signer.jwks()["keys"][0]).encode()
    mac = hmac.new(public, f"{header_hs}.{payload}".encode(), hashlib.sha256).digest()
    return {
        "expired": signer.sign({**claims, "iat": now - 7200, "exp": now - 3600}),
        "wrong-issuer": signer.sign({**claims, "iss": "https://evil.example"}),
        "wrong-audience": signer.sign({**claims, "aud": "another-api"}),
        "alg-none": f"{header_none}.{payload}.",
        "hs256-with-public-key": f"{header_hs}.{payload}.{_b64(mac)}",
        "other-key": DevSigner.generate(kid=signer.kid).sign(claims),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "expired",
        "wrong-issuer",
        "wrong-audience",
        "alg-none",
        "hs256-with-public-key",
        "other-key",
    ],
)
async def test_bad_tokens_are_refused_on_every_endpoint(
    gateway: Gateway, http: httpx.AsyncClient, signer: DevSigner, kind: str
) -> None:
    headers = (
        {} if kind == "missing" else {"Authorization": "Bearer " + forged_tokens(signer)[kind]}
    )
    sha = "0" * 64
    calls = [
        http.get("/v1/sync/pull", params={"device_id": "d1"}, headers=headers),
        http.get("/v1/sync/bootstrap", params={"device_id": "d1"}, headers=headers),
        http.post("/v1/sync/push", json={"protocol": 1}, headers=headers),
        http.get("/v1/metadata", headers=headers),
        http.get(f"/v1/blobs/{sha}", params={"device_id": "d1"}, headers=headers),
        http.put(
            f"/v1/blobs/{sha}",
            params={"device_id": "d1", "entity": "account", "id": "x"},
            content=b"x",
            headers=headers,
        ),
        http.get("/v1/devices/", headers=headers),
        http.get("/v1/sync/changesets/d1:1", headers=headers),
    ]
    for r in await asyncio.gather(*calls):
        assert r.status_code == 401, (r.request.url, r.text)
        expected = "token_expired" if kind == "expired" else "unauthorized"
        assert r.json()["code"] == expected
    async with httpx.AsyncClient(base_url=gateway.admin_url) as admin:
        r = await admin.get("/admin/devices", headers=headers)
        assert r.status_code == 401
    token = headers.get("Authorization", "Bearer ").split(" ", 1)[1]
    async with websockets.connect(
        f"{gateway.ws_url}/v1/sync/events?device_id=d1&access_token={token}"
    ) as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["status"] == 401
    assert gateway.runtime.hub.connection_count == 0


async def _pull_all(http: httpx.AsyncClient, headers: dict[str, str], device: str) -> PullResponse:
    checkpoint = None
    merged = PullResponse(protocol=1, checkpoint="", has_more=False)
    while True:
        params: dict[str, Any] = {"device_id": device}
        if checkpoint:
            params["checkpoint"] = checkpoint
        r = await http.get("/v1/sync/pull", params=params, headers=headers)
        page = msgspec.json.decode(r.content, type=PullResponse)
        merged.changes += page.changes
        merged.removals += page.removals
        merged.results += page.results
        merged.checksums = page.checksums or merged.checksums
        merged.checkpoint = checkpoint = page.checkpoint
        if not page.has_more:
            return merged


async def test_a_sales_rep_cannot_reach_another_reps_record(
    gateway: Gateway,
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    push: Push,
    store: RecordStore,
) -> None:
    # Kowalska creates an account and attaches a contract to it, through the real path.
    secret = upsert("account", name="Kowalska Secret Sp. z o.o.", telephone1="+48 22 555 0101")
    r = await push("anna.kowalska", "phone-k", 1, secret)
    assert r.status_code == 200, r.text
    created = msgspec.json.decode(r.content, type=ChangesetResult).results[0]
    assert created.outcome == "applied"
    record = await store.get("account", secret["id"])
    assert record is not None and record.fields["ownerid"] == KOWALSKA.sub
    blob = b"%PDF contract"
    sha = hashlib.sha256(blob).hexdigest()
    up = await http.put(
        f"/v1/blobs/{sha}",
        params={"entity": "account", "id": secret["id"], "device_id": "phone-k"},
        content=blob,
        headers=auth("anna.kowalska"),
    )
    assert up.status_code == 201

    rossi = auth("marco.rossi")
    mine = upsert("account", name="Rossi Srl")
    assert (await push("marco.rossi", "phone-r", 1, mine)).status_code == 200

    # Pull: his own record only; no checksum of her channel.
    everything = await _pull_all(http, rossi, "phone-r")
    assert [c.id for c in everything.changes] == [mine["id"]]
    assert set(everything.checksums) == {f"owner:{ROSSI.sub}"}
    assert "Kowalska" not in str(everything)

    # Bootstrap: the same.
    boot = await http.get("/v1/sync/bootstrap", params={"device_id": "phone-r"}, headers=rossi)
    assert secret["id"] not in boot.text and "Kowalska" not in boot.text
    assert mine["id"] in boot.text

    # Push: updating her account, claiming its id with a create, and deleting her lead are
    # all rejected as not_found, with nothing about the records; nothing changes.
    lead = upsert("lead", subject="Kowalska lead")
    assert (await push("anna.kowalska", "phone-k", 2, lead)).status_code == 200
    hostile = [
        upsert("account", id=secret["id"], base=1, name="pwned"),
        upsert("account", id=secret["id"], base=0, name="claim it"),
        {**upsert("lead", id=lead["id"], base=1), "op": "delete", "fields": {}},
    ]
    for n, mutation in enumerate(hostile, start=2):
        r = await push("marco.rossi", "phone-r", n, mutation)
        assert r.status_code == 200, r.text
        (result,) = msgspec.json.decode(r.content, type=ChangesetResult).results
        assert result.outcome == "rejected"
        assert result.code == "not_found"
        assert (result.version, result.fields, result.field_outcomes) == (0, {}, {})
        assert not result.message
        assert "Kowalska" not in r.text and KOWALSKA.sub not in r.text
    lead_after = await store.get("lead", lead["id"])
    assert lead_after is not None and not lead_after.deleted
    after = await store.get("account", secret["id"])
    assert after is not None and after.version == record.version
    assert after.fields["name"] == "Kowalska Secret Sp. z o.o."

    # Blobs: her attachment is a 404 exactly like a blob that does not exist.
    hidden = await http.get(f"/v1/blobs/{sha}", params={"device_id": "phone-r"}, headers=rossi)
    missing = await http.get(
        f"/v1/blobs/{'f' * 64}", params={"device_id": "phone-r"}, headers=rossi
    )
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content
    attach = await http.put(
        f"/v1/blobs/{hashlib.sha256(b'x').hexdigest()}",
        params={"entity": "account", "id": secret["id"], "device_id": "phone-r"},
        content=b"x",
        headers=rossi,
    )
    assert attach.status_code == 404 and attach.json() == missing.json()

    # Her device and her changeset results are not his either.
    stolen = await http.get("/v1/sync/pull", params={"device_id": "phone-k"}, headers=rossi)
    assert stolen.status_code == 403 and stolen.json()["code"] == "device_not_registered"
    result = await http.get("/v1/sync/changesets/phone-k:1", headers=rossi)
    assert result.status_code == 404


async def test_events_never_poke_outside_the_callers_channels(
    gateway: Gateway, auth: AuthHeaders, push: Push
) -> None:
    rossi = auth("marco.rossi")["Authorization"].split()[1]
    url = f"{gateway.ws_url}/v1/sync/events?device_id=phone-r&access_token={rossi}"
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        # Her commit must not poke him ...
        assert (
            await push("anna.kowalska", "phone-k", 1, upsert("lead", subject="x"))
        ).status_code == 200
        # ... his own commit must (this also proves the socket is live).
        r = await push("marco.rossi", "phone-r", 1, upsert("lead", subject="mine"))
        assert r.status_code == 200
        seq = msgspec.json.decode(r.content, type=ChangesetResult).seq
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
        assert frames == [{"type": "changes", "seq": seq}]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)


async def test_a_revoked_device_is_wiped_on_every_sync_endpoint(
    gateway: Gateway, http: httpx.AsyncClient, auth: AuthHeaders, push: Push
) -> None:
    assert (await push("marco.rossi", "phone-r", 1, upsert("lead", subject="a"))).status_code == 200
    async with httpx.AsyncClient(base_url=gateway.admin_url) as admin:
        r = await admin.post(
            "/admin/devices/phone-r/revoke", json={"reason": "lost"}, headers=auth("lucia.garcia")
        )
        assert r.status_code == 200
    rossi = auth("marco.rossi")
    pulled = await http.get("/v1/sync/pull", params={"device_id": "phone-r"}, headers=rossi)
    assert pulled.json()["action"] == "wipe"
    pushed = await push("marco.rossi", "phone-r", 2, upsert("lead", subject="b"))
    assert pushed.status_code == 410 and pushed.json()["wipe"] is True
    boot = await http.get("/v1/sync/bootstrap", params={"device_id": "phone-r"}, headers=rossi)
    assert boot.status_code == 410 and boot.json()["code"] == "device_revoked"
    url = f"{gateway.ws_url}/v1/sync/events?device_id=phone-r"
    async with websockets.connect(url, additional_headers=rossi) as ws:
        frame = json.loads(await ws.recv())
        assert frame["wipe"] is True and frame["code"] == "device_revoked"
