"""Pull over HTTP: scope, paging, removals, grant diffs, resync, wipe, results, formats."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec
import pytest

from backend.gateway.runtime import GatewayRuntime
from backend.store.base import RecordStore
from backend.store.types import WriteBatch
from sync_protocol.changesets import ChangesetResult, MutationResult
from sync_protocol.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from sync_protocol.pull import PullResponse

from .conftest import KOWALSKA, MARTIN, ROSSI, AuthHeaders, Seed, owned_by

Client = httpx.AsyncClient


async def pull(
    client: Client,
    headers: dict[str, str],
    device: str = "dev-a",
    checkpoint: str | None = None,
    **params: Any,
) -> PullResponse:
    query: dict[str, Any] = {"device_id": device, **params}
    if checkpoint:
        query["checkpoint"] = checkpoint
    r = await client.get("/v1/sync/pull", params=query, headers=headers)
    assert r.status_code == 200, r.text
    return msgspec.json.decode(r.content, type=PullResponse)


async def drain(
    client: Client, headers: dict[str, str], checkpoint: str | None = None, **params: Any
) -> tuple[list[PullResponse], str]:
    pages = []
    while True:
        page = await pull(client, headers, checkpoint=checkpoint, **params)
        pages.append(page)
        checkpoint = page.checkpoint
        if not page.has_more:
            return pages, checkpoint


async def test_a_sales_rep_sees_only_their_own_records(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    mine = await seed("account", **owned_by(ROSSI, name="Rossi Srl"))
    await seed("account", **owned_by(KOWALSKA, name="Kowalska Sp"))
    # Same territory as Rossi but another owner: sales reps read by owner only.
    await seed("account", ownerid=KOWALSKA.sub, territory="IT-NW", country="IT", name="X")
    page = await pull(client, auth("marco.rossi"))
    assert [c.id for c in page.changes] == [mine.id]
    assert page.changes[0].channels == (f"owner:{ROSSI.sub}",)  # only granted channels named
    assert page.action == "none" and not page.has_more
    assert set(page.checksums) == {f"owner:{ROSSI.sub}"}
    assert page.checksums[f"owner:{ROSSI.sub}"].count == 1


async def test_pages_follow_the_limit_and_checksums_come_last(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    ids = {(await seed("lead", **owned_by(ROSSI, subject=f"L{i}"))).id for i in range(5)}
    pages, _ = await drain(client, auth("marco.rossi"), limit=2)
    assert [len(p.changes) for p in pages] == [2, 2, 1]
    assert [p.has_more for p in pages] == [True, True, False]
    assert {c.id for p in pages for c in p.changes} == ids
    assert not pages[0].checksums and pages[-1].checksums[f"owner:{ROSSI.sub}"].count == 5
    seqs = [c.seq for p in pages for c in p.changes]
    assert seqs == sorted(seqs)


async def test_a_record_leaving_the_scope_is_removed_and_appears_for_its_new_owner(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    rec = await seed("contact", **owned_by(ROSSI, lastname="Bianchi"))
    _, cp = await drain(client, auth("marco.rossi"))
    _, cp_k = await drain(client, auth("anna.kowalska"), device="dev-k")
    await seed("contact", previous=rec, **owned_by(KOWALSKA))
    page = await pull(client, auth("marco.rossi"), checkpoint=cp)
    assert page.changes == []
    assert [(r.id, r.reason) for r in page.removals] == [(rec.id, "scope")]
    theirs = await pull(client, auth("anna.kowalska"), device="dev-k", checkpoint=cp_k)
    assert [c.id for c in theirs.changes] == [rec.id]


async def test_moving_between_granted_channels_is_not_a_removal(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    other = "00000000-0000-4000-8000-0000000000ff"
    rec = await seed("account", ownerid=other, territory="FR-IDF", country="FR", name="A")
    _, cp = await drain(client, auth("claire.martin"))
    moved = await seed("account", previous=rec, territory="FR-ARA")
    page = await pull(client, auth("claire.martin"), checkpoint=cp)
    assert page.removals == []
    assert [(c.id, c.version) for c in page.changes] == [(rec.id, moved.version)]


async def test_a_grant_change_backfills_and_sweeps_without_a_resync(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    other = "00000000-0000-4000-8000-0000000000ff"
    idf = await seed("account", ownerid=other, territory="FR-IDF", country="FR", name="IDF")
    ara = await seed("account", ownerid=other, territory="FR-ARA", country="FR", name="ARA")
    only_idf = auth("claire.martin", territories=["FR-IDF"])
    pages, cp = await drain(client, only_idf)
    assert {c.id for p in pages for c in p.changes} == {idf.id}
    # The manager is given FR-ARA too: its records are backfilled.
    both = auth("claire.martin", territories=["FR-IDF", "FR-ARA"])
    pages, cp = await drain(client, both, checkpoint=cp)
    assert all(p.action == "none" for p in pages)
    assert {c.id for p in pages for c in p.changes} == {ara.id}
    assert pages[-1].checksums  # backfill done: checksums are consistent again
    # FR-IDF is withdrawn: its records are removed, FR-ARA's stay.
    only_ara = auth("claire.martin", territories=["FR-ARA"])
    pages, cp = await drain(client, only_ara, checkpoint=cp)
    assert all(p.action == "none" for p in pages)
    assert [(r.id, r.reason) for p in pages for r in p.removals] == [(idf.id, "scope")]
    assert not any(p.changes for p in pages)


async def test_backfill_pages_respect_the_limit(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    other = "00000000-0000-4000-8000-0000000000ff"
    new = {
        (await seed("lead", ownerid=other, territory="FR-ARA", country="FR", subject=str(i))).id
        for i in range(5)
    }
    _, cp = await drain(client, auth("claire.martin", territories=["FR-IDF"]))
    pages, _ = await drain(
        client, auth("claire.martin", territories=["FR-IDF", "FR-ARA"]), checkpoint=cp, limit=2
    )
    assert all(len(p.changes) <= 2 for p in pages)
    assert {c.id for p in pages for c in p.changes} == new


async def test_an_unknown_scope_or_an_old_checkpoint_asks_for_a_resync(
    client: Client, auth: AuthHeaders, runtime: GatewayRuntime
) -> None:
    key = runtime.config.checkpoint_key
    stale = Checkpoint(seq=0, user=ROSSI.sub, scope=12345, issued_ms=int(time.time() * 1000))
    page = await pull(client, auth("marco.rossi"), checkpoint=encode_checkpoint(stale, key))
    assert (page.action, page.checkpoint, page.has_more) == ("resync", "", False)
    _, cp = await drain(client, auth("marco.rossi"))
    old = decode_checkpoint(cp, key, ROSSI.sub)
    too_old = msgspec.structs.replace(old, issued_ms=old.issued_ms - 31 * 86_400_000)
    page = await pull(client, auth("marco.rossi"), checkpoint=encode_checkpoint(too_old, key))
    assert page.action == "resync"


async def test_a_compacted_feed_asks_for_a_resync(
    client: Client, auth: AuthHeaders, seed: Seed, store: RecordStore
) -> None:
    rec = await seed("lead", **owned_by(ROSSI, subject="a"))
    _, cp = await drain(client, auth("marco.rossi"))
    # The record leaves Rossi's scope (a removal entry), then compaction drops that entry:
    # a checkpoint from before it can no longer be caught up by pull.
    await seed("lead", previous=rec, **owned_by(KOWALSKA))
    await store.compact(int(time.time() * 1000) + 60_000)
    assert await store.oldest_seq() > 1
    page = await pull(client, auth("marco.rossi"), checkpoint=cp)
    assert (page.action, page.checkpoint) == ("resync", "")


@pytest.mark.parametrize("who", ["tampered", "other-user"])
async def test_forged_or_foreign_checkpoints_are_refused(
    client: Client, auth: AuthHeaders, who: str
) -> None:
    _, cp = await drain(client, auth("marco.rossi"))
    if who == "tampered":
        cp = cp[:-3] + ("A" if cp[-3] != "A" else "B") + cp[-2:]
        headers = auth("marco.rossi")
    else:
        headers = auth("anna.kowalska")
    r = await client.get(
        "/v1/sync/pull", params={"device_id": "dev-z", "checkpoint": cp}, headers=headers
    )
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_checkpoint"


async def test_a_revoked_device_is_told_to_wipe(
    client: Client, auth: AuthHeaders, runtime: GatewayRuntime
) -> None:
    await pull(client, auth("marco.rossi"))
    await runtime.devices.revoke("dev-a", "admin")
    page = await pull(client, auth("marco.rossi"))
    assert (page.action, page.changes, page.checkpoint) == ("wipe", [], "")


async def test_own_changeset_results_and_write_checkpoint(
    client: Client, auth: AuthHeaders, store: RecordStore
) -> None:
    _, cp = await drain(client, auth("marco.rossi"))
    result = ChangesetResult(
        changeset_id="dev-a:1",
        results=[MutationResult(index=0, entity="lead", id="x", outcome="rejected", code="c")],
    )
    await store.apply(WriteBatch(changeset=result, device_id="dev-a"))
    page = await pull(client, auth("marco.rossi"), checkpoint=cp)
    assert [r.changeset_id for r in page.results] == ["dev-a:1"]
    assert page.write_checkpoint == page.results[0].seq > 0
    other = await pull(client, auth("marco.rossi"), device="dev-b")
    assert other.results == []


async def test_msgpack_by_accept(client: Client, auth: AuthHeaders, seed: Seed) -> None:
    await seed("account", **owned_by(ROSSI, name="M"))
    r = await client.get(
        "/v1/sync/pull",
        params={"device_id": "dev-a"},
        headers={**auth("marco.rossi"), "Accept": "application/msgpack"},
    )
    assert r.headers["content-type"].startswith("application/msgpack")
    page = msgspec.msgpack.decode(r.content, type=PullResponse)
    assert len(page.changes) == 1


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"limit": 0}, 400, "invalid_payload"),
        ({"limit": 5001}, 400, "invalid_payload"),
        ({"protocol": 99}, 426, "unsupported_protocol_version"),
        ({"device_id": "bad id"}, 400, "invalid_payload"),
        ({"checkpoint": "!!!"}, 400, "invalid_checkpoint"),
    ],
)
async def test_bad_parameters_are_typed_problems(
    client: Client, auth: AuthHeaders, params: dict[str, Any], status: int, code: str
) -> None:
    query = {"device_id": "dev-a", **params}
    r = await client.get("/v1/sync/pull", params=query, headers=auth("marco.rossi"))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def test_a_service_technician_reads_the_territory(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    other = "00000000-0000-4000-8000-0000000000ff"
    de = await seed("account", ownerid=other, territory="DE-BY", country="DE", name="Bayern")
    await seed("account", ownerid=other, territory="DE-BW", country="DE", name="BW")
    page = await pull(client, auth("jonas.weber"))
    assert [c.id for c in page.changes] == [de.id]
    assert MARTIN.sub not in {c.id for c in page.changes}
