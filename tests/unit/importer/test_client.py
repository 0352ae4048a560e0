"""The Web API client against scripted transports: auth, retries, throttling, errors, paging."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from importer.config import ImporterConfig
from importer.dynamics.batch import BatchRequest
from importer.dynamics.client import ClientCredentials, DynamicsClient, error_from_response
from importer.errors import (
    AuthenticationError,
    BadRequestError,
    DeltaTokenExpiredError,
    DuplicateRecordError,
    PreconditionFailedError,
    RecordNotFoundError,
    ServerError,
    ThrottledError,
    TransportError,
)

BASE = "https://org.crm4.dynamics.com/api/data/v9.2/"


class FakeTime:
    """A monotonic clock that only sleeping advances."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    fake: FakeTime | None = None,
    **cfg: object,
) -> DynamicsClient:
    fake = fake or FakeTime()
    config = ImporterConfig(base_url=BASE, access_token="t0", backoff_base_s=0.5, **cfg)  # type: ignore[arg-type]
    return DynamicsClient(
        config,
        transport=httpx.MockTransport(handler),
        sleep=fake.sleep,
        monotonic=fake.monotonic,
        rng=lambda: 1.0,
    )


def error(status: int, code: str = "", message: str = "", **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


async def test_odata_headers_paging_prefer_and_bearer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {
            "value": [{"accountid": "a"}],
            "@odata.nextLink": BASE + "accounts?$skiptoken=x",
        }
        return httpx.Response(200, json=body)

    async with make_client(handler, page_size=500) as client:
        page = await client.get_page(
            client.query_url("accounts", ["accountid", "name"]), track_changes=True
        )
    req = seen[0]
    assert req.url.path == "/api/data/v9.2/accounts"
    assert req.url.params["$select"] == "accountid,name"
    assert req.headers["OData-Version"] == "4.0"
    assert req.headers["OData-MaxVersion"] == "4.0"
    assert req.headers["Accept"] == "application/json"
    assert req.headers["Authorization"] == "Bearer t0"
    assert req.headers["Prefer"] == "odata.maxpagesize=500, odata.track-changes"
    assert page.value == [{"accountid": "a"}]
    assert page.next_link == BASE + "accounts?$skiptoken=x"
    assert page.delta_link is None


async def test_429_honours_retry_after_and_pauses_everyone() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return error(429, "0x80072322", "Number of requests exceeded", **{"Retry-After": "7"})
        return httpx.Response(200, json={"value": []})

    fake = FakeTime()
    async with make_client(handler, fake) as client:
        await client.get_page("accounts")
        assert client.stats.throttled == 1
    assert calls == 2
    assert fake.slept and fake.slept[0] == pytest.approx(7.0)


async def test_5xx_and_transport_errors_back_off_exponentially_then_succeed() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return error(503, "0x8004A001", "busy")
        if calls == 2:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"value": []})

    fake = FakeTime()
    async with make_client(handler, fake) as client:
        await client.get_page("accounts")
        assert client.stats.server_errors == 1 and client.stats.transport_errors == 1
    assert fake.slept == [0.5, 1.0]  # base * 2**(attempt-1), full jitter at rng=1


async def test_gives_up_after_max_attempts_with_the_typed_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return error(500, "", "boom")

    async with make_client(handler, max_attempts=3) as client:
        with pytest.raises(ServerError) as info:
            await client.get_page("accounts")
    assert calls == 3
    assert info.value.status == 500 and info.value.retryable


async def test_401_refreshes_the_token_once() -> None:
    tokens: list[str] = []
    issued = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal issued
        if request.url.path.endswith("/token"):
            issued += 1
            assert request.content.decode().count("grant_type=client_credentials") == 1
            return httpx.Response(200, json={"access_token": f"tok{issued}", "expires_in": 3600})
        tokens.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer tok1":
            return error(401, "0x80040220", "expired")
        return httpx.Response(200, json={"value": []})

    config = ImporterConfig(
        base_url=BASE,
        client_id="app",
        client_secret="s",
        token_url="https://login.example/tenant/oauth2/v2.0/token",
    )
    async with DynamicsClient(config, transport=httpx.MockTransport(handler)) as client:
        await client.get_page("accounts")
        await client.get_page("accounts")
        assert client.stats.token_refreshes_on_401 == 1
    assert tokens == ["Bearer tok1", "Bearer tok2", "Bearer tok2"]
    assert issued == 2


async def test_401_twice_is_an_authentication_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return error(401, "0x80040220", "nope")

    async with make_client(handler) as client:
        with pytest.raises(AuthenticationError):
            await client.get_page("accounts")


async def test_client_credentials_refresh_before_expiry() -> None:
    now = [0.0]
    issued = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal issued
        issued += 1
        return httpx.Response(200, json={"access_token": f"t{issued}", "expires_in": 3600})

    creds = ClientCredentials(
        "https://x/token", "id", "secret", "scope", refresh_margin_s=300, clock=lambda: now[0]
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        assert await creds.token(http) == "t1"
        now[0] = 3000.0
        assert await creds.token(http) == "t1"
        now[0] = 3301.0  # inside the refresh margin
        assert await creds.token(http) == "t2"
        results = await asyncio.gather(*(creds.token(http, force=True) for _ in range(5)))
    assert set(results) <= {"t3", "t4", "t5", "t6", "t7"}
    assert creds.fetches >= 3


async def test_token_endpoint_failure_is_typed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_client"})

    creds = ClientCredentials("https://x/token", "id", "bad", "scope")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(AuthenticationError):
            await creds.token(http)


async def test_dop_hint_bounds_parallel_requests() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"value": []}, headers={"x-ms-dop-hint": "2"})

    config = ImporterConfig(base_url=BASE, access_token="t", max_parallel=8)
    async with DynamicsClient(config, transport=httpx.MockTransport(handler)) as client:
        await client.get_page("accounts")  # learns the hint
        assert client.parallelism == 2
        await asyncio.gather(*(client.get_page("accounts") for _ in range(10)))
    assert peak <= 2


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (
            400,
            "0x80044352",
            "Version stamp associated with the client has expired.",
            DeltaTokenExpiredError,
        ),
        (
            410,
            "",
            "Version stamp associated with the client has expired. Please perform a full sync.",
            DeltaTokenExpiredError,
        ),
        (
            412,
            "0x80060882",
            "The version of the existing record doesn't match",
            PreconditionFailedError,
        ),
        (
            412,
            "0x80040237",
            "A record with matching key values already exists.",
            DuplicateRecordError,
        ),
        (404, "0x80040217", "account With Id = x Does Not Exist", RecordNotFoundError),
        (400, "0x80048d19", "bad payload", BadRequestError),
        (429, "0x80072322", "limit", ThrottledError),
        (503, "", "unavailable", ServerError),
    ],
)
def test_error_translation(status: int, code: str, message: str, kind: type[Exception]) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    err = error_from_response(status, body, {"Retry-After": "3"})
    assert isinstance(err, kind)
    assert err.status == status and err.dynamics_code == code


def test_non_json_error_body_is_still_typed() -> None:
    err = error_from_response(502, b"<html>bad gateway</html>", {})
    assert isinstance(err, ServerError) and "bad gateway" in err.message


async def test_writes_send_if_match_and_return_representation() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"@odata.etag": 'W/"9"', "accountid": "a"})

    async with make_client(handler) as client:
        row = await client.update(
            "accounts", "a", {"name": "x"}, if_match='W/"8"', select=("accountid",)
        )
        created = await client.create("accounts", {"accountid": "b"})
        await client.delete("accounts", "a", if_match='W/"9"')
    assert row["@odata.etag"] == 'W/"9"' and created["accountid"] == "a"
    patch, post, delete = seen
    assert patch.method == "PATCH" and patch.headers["If-Match"] == 'W/"8"'
    assert patch.headers["Prefer"] == "return=representation"
    assert json.loads(patch.content) == {"name": "x"}
    assert post.method == "POST" and "If-Match" not in post.headers
    assert delete.headers["If-Match"] == 'W/"9"'


async def test_get_row_missing_is_none_and_transport_errors_are_typed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "missing" in str(request.url):
            return error(404, "0x80040217", "account With Id = missing Does Not Exist")
        raise httpx.ReadTimeout("slow")

    async with make_client(handler, max_attempts=2) as client:
        assert await client.get_row("accounts", "missing", ["accountid"]) is None
        with pytest.raises(TransportError):
            await client.get_row("accounts", "other", ["accountid"])


async def test_batch_posts_multipart_and_returns_parts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/data/v9.2/$batch"
        assert request.headers["Prefer"] == "odata.continue-on-error"
        assert request.headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")
        assert b"PATCH /api/data/v9.2/accounts(1) HTTP/1.1" in request.content
        body = (
            b"--r\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
            b"--r\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 429 Too Many\r\n"
            b"Retry-After: 2\r\n\r\n{}\r\n--r--\r\n"
        )
        return httpx.Response(
            200, content=body, headers={"Content-Type": "multipart/mixed; boundary=r"}
        )

    async with make_client(handler) as client:
        parts = await client.batch(
            [
                BatchRequest("PATCH", "accounts(1)", body=b"{}"),
                BatchRequest("DELETE", "accounts(2)"),
            ]
        )
    assert [p.status for p in parts] == [204, 429]
    err = error_from_response(parts[1].status, parts[1].body, parts[1].headers)
    assert isinstance(err, ThrottledError) and err.retry_after_s == 2.0
