"""Operators on the admin port: a manual-policy conflict resolved by taking the device's
value, written through the real applier."""

from __future__ import annotations

import httpx
import msgspec

from backend.store.base import RecordStore
from sync_protocol.changesets import ChangesetResult

from .conftest import ROSSI, AuthHeaders, Gateway, Push, upsert


async def test_take_device_value_resolves_a_held_conflict(
    gateway: Gateway, auth: AuthHeaders, push: Push, store: RecordStore
) -> None:
    # An administrator creates Rossi's account in Italy (reps may not set owner or country).
    account = upsert(
        "account", name="Officina Rossi", ownerid=ROSSI.sub, country="IT", description="v1"
    )
    assert (await push("lucia.garcia", "laptop-g", 1, account)).status_code == 200
    # Two devices edit the description (a manual-policy field) from version 1.
    first = upsert("account", id=account["id"], base=1, description="from the tablet")
    assert (await push("marco.rossi", "tablet-r", 1, first)).status_code == 200
    second = {**upsert("account", id=account["id"], base=1, description="from the phone")}
    second["clock"] = [1_700_000_000_500, 0, "phone-r"]
    r = await push("marco.rossi", "phone-r", 2, second)
    held = msgspec.json.decode(r.content, type=ChangesetResult).results[0]
    assert held.outcome == "conflict" and held.conflict_ids

    admin_headers = auth("lucia.garcia")
    async with httpx.AsyncClient(base_url=gateway.admin_url, timeout=30) as admin:
        listed = (
            await admin.get("/admin/conflicts", params={"status": "open"}, headers=admin_headers)
        ).json()
        (conflict,) = [c for c in listed if c["id"] in held.conflict_ids]
        assert conflict["device_value"] == "from the phone"
        r = await admin.post(
            "/admin/conflicts/resolve",
            json={"conflict_id": conflict["id"], "resolution": "take_device"},
            headers=admin_headers,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["conflict"]["status"] == "resolved"
        assert body["write"]["results"][0]["outcome"] in ("applied", "merged")
    record = await store.get("account", account["id"])
    assert record is not None and record.fields["description"] == "from the phone"
    trail = await store.audit_trail(entity="account", record_id=account["id"])
    assert any(a.device_id == "admin-console" for a in trail)
