"""HttpTransport over a mock gateway: encodings, problem codes, token refresh, 202 polling,
and the streamed bootstrap framing (split anywhere, truncated, corrupt)."""

from __future__ import annotations

import gzip
import struct
from collections.abc import AsyncIterator, Callable

import httpx
import msgspec
import pytest

from client_sdk.errors import (
    AuthenticationError,
    CheckpointTooOldError,
    DeviceRevokedError,
    MalformedResponseError,
    NetworkError,
    ProtocolMismatchError,
    RequestRejectedError,
    ServerUnavailableError,
)
from client_sdk.transport import ChangesetRefusedError, HttpTransport
from sync_protocol.changesets import ChangesetResult, Mutation, MutationResult, PushRequest
from sync_protocol.hlc import HLC
from sync_protocol.pull import BootstrapBatch, PullResponse
from sync_protocol.records import RecordChange

Handler = Callable[[httpx.Request], httpx.Response]
ID = "00000000-0000-4000-8000-000000000001"


def transport(handler: Handler, tokens: list[str] | None = None) -> HttpTransport:
    issued = iter(tokens or ["t1", "t2", "t3"])
    return HttpTransport(
        "http://gw.test",
        lambda: next(issued),
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        pending_poll_s=0,
    )


def problem(status: int, code: str, **extra: object) -> httpx.Response:
    body = {"type": f"urn:crmsync:problem:{code}", "status": status, "code": code, **extra}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


def push_request() -> PushRequest:
    return PushRequest(
        protocol=1,
        changeset_id="dev:7",
        device_id="dev",
        mutations=[Mutation(entity="lead", id=ID, clock=HLC(1, 0, "dev"), fields={"subject": "x"})],
    )


def done_result() -> bytes:
    return msgspec.msgpack.encode(
        ChangesetResult(
            changeset_id="dev:7",
            results=[MutationResult(index=0, entity="lead", id=ID, outcome="applied", version=1)],
            seq=9,
        )
    )


async def test_push_sends_msgpack_with_a_bearer_and_decodes_the_result() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=done_result())

    result = await transport(handler).push(push_request())
    assert result.results[0].outcome == "applied"
    [request] = seen
    assert request.headers["authorization"] == "Bearer t1"
    assert request.headers["content-type"] == "application/msgpack"
    assert msgspec.msgpack.decode(request.content, type=PushRequest) == push_request()


async def test_a_401_gets_one_retry_with_a_fresh_token() -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer t1":
            return problem(401, "token_expired")
        return httpx.Response(200, content=done_result())

    await transport(handler).push(push_request())
    assert tokens == ["Bearer t1", "Bearer t2"]

    with pytest.raises(AuthenticationError):
        await transport(lambda r: problem(401, "unauthorized")).push(push_request())


async def test_a_202_is_polled_at_its_location() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            pending = ChangesetResult(changeset_id="dev:7", results=[], status="pending")
            return httpx.Response(
                202,
                content=msgspec.msgpack.encode(pending),
                headers={"Location": "/v1/sync/changesets/dev%3A7"},
            )
        if len(calls) < 3:
            return httpx.Response(
                202,
                content=msgspec.msgpack.encode(
                    ChangesetResult(changeset_id="dev:7", results=[], status="pending")
                ),
            )
        return httpx.Response(200, content=done_result())

    result = await transport(handler).push(push_request())
    assert result.status == "done"
    assert calls == [
        "POST /v1/sync/push",
        "GET /v1/sync/changesets/dev:7",
        "GET /v1/sync/changesets/dev:7",
    ]


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        (problem(410, "device_revoked", wipe=True), DeviceRevokedError, "device_revoked"),
        (problem(410, "checkpoint_too_old"), CheckpointTooOldError, "checkpoint_too_old"),
        (problem(426, "unsupported_protocol_version"), ProtocolMismatchError, None),
        (problem(503, "service_unavailable"), ServerUnavailableError, None),
        (problem(429, "rate_limited"), ServerUnavailableError, None),
        (httpx.Response(502, text="<html>bad gateway</html>"), ServerUnavailableError, None),
        (problem(400, "invalid_checkpoint"), RequestRejectedError, "invalid_checkpoint"),
    ],
)
async def test_problems_map_to_typed_errors(
    response: httpx.Response, error: type[Exception], code: str | None
) -> None:
    with pytest.raises(error) as info:
        await transport(lambda r: response).pull("dev", "cp", 100)
    if code is not None and isinstance(info.value, RequestRejectedError):
        assert info.value.server_code == code
    assert info.value.code == error.code  # type: ignore[attr-defined]


async def test_a_refused_changeset_names_its_bad_mutations() -> None:
    refused = problem(
        403, "field_not_writable", errors=[{"index": 0, "code": "field_not_writable"}]
    )
    with pytest.raises(ChangesetRefusedError) as info:
        await transport(lambda r: refused).push(push_request())
    assert (info.value.status, info.value.server_code) == (403, "field_not_writable")
    assert [(e.index, e.code) for e in info.value.errors] == [(0, "field_not_writable")]


async def test_network_failures_and_garbage_are_typed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(NetworkError):
        await transport(refuse).pull("dev", "", 10)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(NetworkError):
        await transport(slow).push(push_request())
    with pytest.raises(MalformedResponseError):
        await transport(lambda r: httpx.Response(200, content=b"\xc1junk")).pull("dev", "", 10)
    other = ChangesetResult(changeset_id="dev:8", results=[])
    with pytest.raises(MalformedResponseError):
        await transport(lambda r: httpx.Response(200, content=msgspec.msgpack.encode(other))).push(
            push_request()
        )


async def test_pull_sends_checkpoint_limit_device_and_protocol() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        page = PullResponse(protocol=1, checkpoint="next", has_more=False)
        return httpx.Response(200, content=msgspec.msgpack.encode(page))

    page = await transport(handler).pull("dev-1", "cp-1", 250)
    assert page.checkpoint == "next"
    assert dict(seen[0].params) == {
        "device_id": "dev-1",
        "limit": "250",
        "protocol": "1",
        "checkpoint": "cp-1",
    }


def frames(n_batches: int, per: int = 3) -> bytes:
    out = b""
    for b in range(n_batches):
        batch = BootstrapBatch(
            records=[
                RecordChange(entity="lead", id=f"{b}-{i}", version=1, fields={"subject": "ü" * 50})
                for i in range(per)
            ],
            resume=f"r{b}",
            done=b == n_batches - 1,
            checkpoint="cp" if b == n_batches - 1 else "",
        )
        body = msgspec.msgpack.encode(batch)
        out += struct.pack(">I", len(body)) + body
    return out


def streaming(data: bytes, chunk: int, gz: bool = True) -> Handler:
    payload = gzip.compress(data) if gz else data

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), chunk):
            yield payload[i : i + chunk]

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": "gzip"} if gz else {}
        return httpx.Response(200, headers=headers, content=body())

    return handler


@pytest.mark.parametrize("chunk", [1, 7, 4096])
@pytest.mark.parametrize("gz", [True, False])
async def test_bootstrap_frames_are_split_however_the_bytes_arrive(chunk: int, gz: bool) -> None:
    got = [b async for b in transport(streaming(frames(4), chunk, gz)).bootstrap("dev", None)]
    assert [b.resume for b in got] == ["r0", "r1", "r2", "r3"]
    assert got[-1].done and got[-1].checkpoint == "cp"
    assert sum(len(b.records) for b in got) == 12


async def test_a_truncated_or_corrupt_bootstrap_stream_is_a_typed_error() -> None:
    data = frames(3)
    t = transport(streaming(data[:-5], 100, gz=False))
    with pytest.raises(MalformedResponseError):
        [b async for b in t.bootstrap("dev", None)]
    bad = struct.pack(">I", 3) + b"\xc1\xc1\xc1"
    with pytest.raises(MalformedResponseError):
        [b async for b in transport(streaming(bad, 100, gz=False)).bootstrap("dev", None)]

    async def plain() -> AsyncIterator[bytes]:
        yield b"plain text, not gzip"

    def not_gzip(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=plain())

    with pytest.raises(MalformedResponseError):
        [b async for b in transport(not_gzip).bootstrap("dev", None)]


async def test_bootstrap_sends_resume_and_maps_errors() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return problem(410, "device_revoked", wipe=True)

    with pytest.raises(DeviceRevokedError):
        [b async for b in transport(handler).bootstrap("dev", "tok-9")]
    assert seen[0].params["resume"] == "tok-9"
    assert seen[0].params["device_id"] == "dev"
