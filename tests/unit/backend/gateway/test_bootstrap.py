"""Bootstrap: framed, compressed, resumable snapshots that end with a pull checkpoint."""

from __future__ import annotations

import gzip
import zlib

import httpx
import pytest

from backend.gateway.bootstrap import (
    BootstrapCursor,
    decode_cursor,
    encode_cursor,
    iter_frames,
)
from backend.gateway.runtime import GatewayRuntime
from sync_protocol.checkpoint import decode_checkpoint
from sync_protocol.errors import InvalidCheckpointError
from sync_protocol.pull import BootstrapBatch

from .conftest import KOWALSKA, ROSSI, AuthHeaders, Seed, owned_by

Client = httpx.AsyncClient
MSGPACK = "application/vnd.crmsync.bootstrap+msgpack"


async def fetch(
    client: Client, headers: dict[str, str], *, fmt: str = "ndjson", **params: object
) -> tuple[httpx.Response, list[BootstrapBatch]]:
    accept = MSGPACK if fmt == "msgpack" else "application/x-ndjson"
    r = await client.get(
        "/v1/sync/bootstrap",
        params={"device_id": "dev-a", **params},
        headers={**headers, "Accept": accept, "Accept-Encoding": "identity"},
    )
    assert r.status_code == 200, r.text
    return r, iter_frames(r.content, "msgpack" if fmt == "msgpack" else "ndjson")


@pytest.mark.parametrize("fmt", ["ndjson", "msgpack"])
async def test_the_snapshot_holds_exactly_the_scope_in_bounded_batches(
    client: Client, auth: AuthHeaders, seed: Seed, fmt: str
) -> None:
    mine = {(await seed("contact", **owned_by(ROSSI, lastname=str(i)))).id for i in range(7)}
    await seed("contact", **owned_by(KOWALSKA, lastname="not mine"))
    r, batches = await fetch(client, auth("marco.rossi"), fmt=fmt)
    assert r.headers["content-type"].startswith(MSGPACK if fmt == "msgpack" else "application/x")
    assert [len(b.records) for b in batches] == [3, 3, 1]  # bootstrap_batch=3
    assert [b.done for b in batches] == [False, False, True]
    assert {rec.id for b in batches for rec in b.records} == mine
    assert batches[-1].total == 7
    assert batches[-1].checkpoint and not batches[0].checkpoint


async def test_the_final_checkpoint_is_the_head_before_the_scan(
    client: Client, auth: AuthHeaders, seed: Seed, runtime: GatewayRuntime
) -> None:
    for i in range(4):
        await seed("lead", **owned_by(ROSSI, subject=str(i)))
    _, batches = await fetch(client, auth("marco.rossi"))
    cp = decode_checkpoint(batches[-1].checkpoint, runtime.config.checkpoint_key, ROSSI.sub)
    assert cp.seq == 4
    later = await seed("lead", **owned_by(ROSSI, subject="later"))
    r = await client.get(
        "/v1/sync/pull",
        params={"device_id": "dev-a", "checkpoint": batches[-1].checkpoint},
        headers=auth("marco.rossi"),
    )
    assert [c["id"] for c in r.json()["changes"]] == [later.id]


async def test_a_broken_stream_resumes_after_the_last_frame(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    for i in range(7):
        await seed("account", **owned_by(ROSSI, name=str(i)))
    _, full = await fetch(client, auth("marco.rossi"))
    # Pretend the connection broke after the first frame.
    _, rest = await fetch(client, auth("marco.rossi"), resume=full[0].resume)
    resumed = [rec.id for b in [full[0], *rest] for rec in b.records]
    assert resumed == [rec.id for b in full for rec in b.records]
    assert rest[-1].done and rest[-1].total == 7


async def test_records_written_during_the_snapshot_come_once_then_with_the_pull(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    accounts = [await seed("account", **owned_by(ROSSI, name=str(i))) for i in range(7)]
    _, first = await fetch(client, auth("marco.rossi"))
    sent = [rec.id for rec in first[0].records]
    # While the stream is broken: one record already sent and one not yet sent change,
    # and one is created. All three now sit past the snapshot's head.
    not_sent = next(a for a in accounts if a.id not in sent)
    changed = [
        await seed("account", previous=next(a for a in accounts if a.id == sent[0]), name="x"),
        await seed("account", previous=not_sent, name="y"),
        await seed("account", **owned_by(ROSSI, name="new")),
    ]
    _, rest = await fetch(client, auth("marco.rossi"), resume=first[0].resume)
    ids = [rec.id for b in [first[0], *rest] for rec in b.records]
    assert len(ids) == len(set(ids))  # each record at most once: a fresh replica relies on it
    assert set(ids) == {a.id for a in accounts} - {not_sent.id}
    assert rest[-1].done and rest[-1].total == 6
    r = await client.get(
        "/v1/sync/pull",
        params={"device_id": "dev-a", "checkpoint": rest[-1].checkpoint},
        headers=auth("marco.rossi"),
    )
    assert [(c["id"], c["version"]) for c in r.json()["changes"]] == [
        (c.id, c.version) for c in changed
    ]


async def test_resume_tokens_are_bound_to_user_and_scope(
    client: Client, auth: AuthHeaders, seed: Seed
) -> None:
    await seed("account", **owned_by(ROSSI, name="x"))
    _, batches = await fetch(client, auth("marco.rossi"))
    token = batches[0].resume
    other_user = auth("anna.kowalska")
    other_scope = auth("marco.rossi", crm_profile="service_technician")
    for device, headers in (("dev-b", other_user), ("dev-a", other_scope)):
        r = await client.get(
            "/v1/sync/bootstrap", params={"device_id": device, "resume": token}, headers=headers
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid_checkpoint"
    r = await client.get(
        "/v1/sync/bootstrap",
        params={"device_id": "dev-a", "resume": token[:-2] + "xx"},
        headers=auth("marco.rossi"),
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_checkpoint"


async def test_gzip_when_accepted(client: Client, auth: AuthHeaders, seed: Seed) -> None:
    for i in range(5):
        await seed("account", **owned_by(ROSSI, name="Società " * 10 + str(i)))
    r = await client.get(
        "/v1/sync/bootstrap",
        params={"device_id": "dev-a"},
        headers={**auth("marco.rossi"), "Accept-Encoding": "gzip"},
    )
    assert r.headers["content-encoding"] == "gzip"
    batches = iter_frames(r.content, "ndjson")  # httpx decompressed it
    assert sum(len(b.records) for b in batches) == 5


def test_frames_are_flushed_one_by_one() -> None:
    # Each yielded chunk of a gzip stream must decompress on its own (progressive apply).
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    chunk = comp.compress(b'{"records":[]}\n') + comp.flush(zlib.Z_SYNC_FLUSH)
    assert zlib.decompressobj(31).decompress(chunk) == b'{"records":[]}\n'
    assert gzip.decompress(chunk + comp.flush()) == b'{"records":[]}\n'


def test_cursor_tokens_round_trip_and_refuse_tampering() -> None:
    key = b"k" * 32
    cursor = BootstrapCursor(user="u", scope=1, head=9, seq=7, sent=3)
    token = encode_cursor(cursor, key)
    assert decode_cursor(token, key, "u") == cursor
    for bad_key, user in ((b"j" * 32, "u"), (key, "v")):
        with pytest.raises(InvalidCheckpointError):
            decode_cursor(token, bad_key, user)
    with pytest.raises(InvalidCheckpointError):
        decode_cursor("", key, "u")


async def test_revoked_device_gets_410_wipe(
    client: Client, auth: AuthHeaders, runtime: GatewayRuntime
) -> None:
    await fetch(client, auth("marco.rossi"))
    await runtime.devices.revoke("dev-a", "admin")
    r = await client.get(
        "/v1/sync/bootstrap", params={"device_id": "dev-a"}, headers=auth("marco.rossi")
    )
    assert r.status_code == 410
    assert r.json()["wipe"] is True
