"""A device's round trip through the real stack: push, result, pull, replay, bootstrap."""

from __future__ import annotations

import httpx
import msgspec

from backend.gateway.bootstrap import iter_frames
from backend.store.base import RecordStore
from sync_protocol.changesets import ChangesetResult
from sync_protocol.pull import PullResponse

from .conftest import ROSSI, AuthHeaders, Gateway, Push, upsert


async def test_push_then_pull_then_replay(
    gateway: Gateway, http: httpx.AsyncClient, auth: AuthHeaders, push: Push, store: RecordStore
) -> None:
    rossi = auth("marco.rossi")
    start = await http.get("/v1/sync/pull", params={"device_id": "phone-r"}, headers=rossi)
    checkpoint = start.json()["checkpoint"]

    lead = upsert("lead", subject="Fiera di Milano", firstname="Giulia")
    r = await push("marco.rossi", "phone-r", 1, lead)
    assert r.status_code == 200, r.text
    result = msgspec.json.decode(r.content, type=ChangesetResult)
    assert result.results[0].outcome == "applied" and result.seq > 0

    # The next pull carries the record, the device's own result and a write checkpoint.
    r = await http.get(
        "/v1/sync/pull", params={"device_id": "phone-r", "checkpoint": checkpoint}, headers=rossi
    )
    page = msgspec.json.decode(r.content, type=PullResponse)
    assert [c.id for c in page.changes] == [lead["id"]]
    assert page.changes[0].fields["ownerid"] == ROSSI.sub  # stamped by the applier
    assert [x.changeset_id for x in page.results] == ["phone-r:1"]
    assert page.write_checkpoint == result.seq

    # A retry of the same changeset is answered from the stored result, not re-applied.
    again = await push("marco.rossi", "phone-r", 1, lead)
    assert msgspec.json.decode(again.content, type=ChangesetResult) == result
    record = await store.get("lead", lead["id"])
    assert record is not None and record.version == 1

    # An edit on the current version applies and bumps the version.
    edit = upsert("lead", id=lead["id"], base=1, subject="Fiera di Milano 2025")
    r = await push("marco.rossi", "phone-r", 2, edit)
    assert msgspec.json.decode(r.content, type=ChangesetResult).results[0].version == 2

    # A fresh install bootstraps the same scope.
    boot = await http.get("/v1/sync/bootstrap", params={"device_id": "tablet-r"}, headers=rossi)
    batches = iter_frames(boot.content, "ndjson")
    assert [r.id for b in batches for r in b.records] == [lead["id"]]
    assert batches[-1].records[0].version == 2 and batches[-1].done
