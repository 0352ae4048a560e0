"""How the sync engine talks to the gateway: a small interface and its HTTP implementation.

:class:`Transport` is what :class:`~client_sdk.sync.SyncEngine` needs: push a changeset,
pull a page, stream a bootstrap, register the device, and listen for pokes. Tests inject
their own (e.g. one that drops the connection mid-push); :class:`HttpTransport` is the real
one, over httpx (HTTP/1.1, msgpack bodies) and a WebSocket (``websockets``) for pokes.

Errors are translated at this boundary into :mod:`client_sdk.errors` types: a dropped or
refused connection or a timeout is :class:`NetworkError`; 5xx and 429 are
:class:`ServerUnavailableError`; a problem document's stable ``code`` picks the rest
(``device_revoked`` -> :class:`DeviceRevokedError`, ``checkpoint_too_old``...). Nothing from
httpx or websockets escapes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import msgspec

from client_sdk.errors import (
    AuthenticationError,
    CheckpointTooOldError,
    DeviceRevokedError,
    MalformedResponseError,
    NetworkError,
    ProtocolMismatchError,
    RequestRejectedError,
    ServerUnavailableError,
    SyncError,
)
from sync_protocol.changesets import ChangesetResult, PushRequest
from sync_protocol.pull import BootstrapBatch, PullResponse
from sync_protocol.version import PROTOCOL_VERSION

T = TypeVar("T")

MSGPACK: Final = "application/msgpack"
BOOTSTRAP_FRAMES: Final = "application/vnd.crmsync.bootstrap+msgpack"
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024

TokenProvider = Callable[[], "str | Awaitable[str]"]
"""Returns a valid bearer token (refreshing it if needed); may be sync or async. After a
401 it is called once more and the request retried."""


class MutationError(msgspec.Struct, kw_only=True):
    """One entry of a refused changeset's ``errors`` list."""

    index: int
    code: str


class Problem(msgspec.Struct, kw_only=True):
    """The parts of an ``application/problem+json`` answer the SDK reads."""

    code: str = ""
    status: int = 0
    detail: str = ""
    reason: str | None = None
    wipe: bool = False
    errors: list[MutationError] = []


class ChangesetRefusedError(RequestRejectedError):
    """The gateway refused a whole changeset before applying any of it.

    ``errors`` names the offending mutations by index (empty: the changeset as a whole).
    """

    code = "changeset_refused"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int = 0,
        server_code: str = "",
        errors: list[MutationError] | None = None,
    ) -> None:
        super().__init__(message, status=status, server_code=server_code)
        self.errors = errors or []


class Transport(Protocol):
    """What the sync engine needs from the network. Every method raises only
    :class:`~client_sdk.errors.SyncError` subclasses."""

    async def register_device(self, device_id: str, name: str = "", platform: str = "") -> None:
        """Bind ``device_id`` to the token's user (idempotent)."""

    async def push(self, request: PushRequest) -> ChangesetResult:
        """Send a changeset; ``status == "pending"`` when the result comes later.

        Raises:
            ChangesetRefusedError: the gateway refused the changeset as a whole.
        """

    async def pull(self, device_id: str, checkpoint: str, limit: int) -> PullResponse:
        """One page of changes after ``checkpoint`` (``""``: from the start)."""

    def bootstrap(self, device_id: str, resume: str | None) -> AsyncIterator[BootstrapBatch]:
        """The snapshot's batches, as they arrive (resumed after ``resume`` if given)."""

    def pokes(self, device_id: str) -> AsyncIterator[int]:
        """Head sequences announced by the server; ends (or raises) when disconnected."""

    async def aclose(self) -> None:
        """Release connections."""


# --- HTTP ----------------------------------------------------------------------------


_problem_decoder = msgspec.json.Decoder(Problem)
_pull_decoder = msgspec.msgpack.Decoder(PullResponse)
_result_decoder = msgspec.msgpack.Decoder(ChangesetResult)
_batch_decoder = msgspec.msgpack.Decoder(BootstrapBatch)
_msgpack_encoder = msgspec.msgpack.Encoder()


def _problem(response: httpx.Response) -> Problem:
    try:
        return _problem_decoder.decode(response.content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Problem(status=response.status_code)


def error_for(status: int, problem: Problem) -> SyncError:
    """The SDK error for an HTTP error status and its problem document."""
    code = problem.code
    text = f"{status} {code or 'error'}: {problem.reason or problem.detail}".strip()
    if code == "device_revoked" or problem.wipe:
        return DeviceRevokedError(text)
    if code == "checkpoint_too_old":
        return CheckpointTooOldError(text)
    if code == "unsupported_protocol_version" or status == 426:
        return ProtocolMismatchError(text)
    if status == 401:
        return AuthenticationError(text)
    if status in (408, 429) or status >= 500:
        return ServerUnavailableError(text)
    return RequestRejectedError(text, status=status, server_code=code)


class HttpTransport:
    """:class:`Transport` over the gateway's HTTP API and its event WebSocket.

    Args:
        base_url: the sync API, e.g. ``http://127.0.0.1:8080``.
        token_provider: returns a bearer token (sync or async).
        timeout: per-request timeout in seconds (connect, read, write).
        client: an ``httpx.AsyncClient`` to use (tests wrap its transport to cut the
            connection); one is created if omitted.
        language: ``Accept-Language`` for problem details.
        pending_polls: how often a 202 push answer is polled at its Location.
        pending_poll_s: pause between those polls.
        bootstrap_batch: records per bootstrap frame asked of the server.
    """

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
        language: str = "en",
        pending_polls: int = 20,
        pending_poll_s: float = 0.25,
        bootstrap_batch: int = 2000,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token_provider = token_provider
        self._token: str | None = None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._language = language
        self._pending_polls = pending_polls
        self._pending_poll_s = pending_poll_s
        self._bootstrap_batch = bootstrap_batch

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    # --- auth ------------------------------------------------------------------------

    async def _bearer(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            try:
                token = self._token_provider()
                if inspect.isawaitable(token):
                    token = await token
            except SyncError:
                raise
            except Exception as e:
                raise AuthenticationError(f"token provider failed: {type(e).__name__}") from e
            if not isinstance(token, str) or not token:
                raise AuthenticationError("token provider returned no token")
            self._token = token
        return self._token

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """Send a request, refreshing the token once on 401; map failures to SyncError."""
        for attempt in (0, 1):
            token = await self._bearer(refresh=attempt == 1)
            hdrs = {
                "Authorization": f"Bearer {token}",
                "Accept-Language": self._language,
                **(headers or {}),
            }
            try:
                response = await self._client.request(
                    method,
                    self.base_url + path,
                    params=params,
                    content=content,
                    json=json_body,
                    headers=hdrs,
                )
            except httpx.TimeoutException as e:
                raise NetworkError(f"{method} {path}: timed out") from e
            except (httpx.TransportError, OSError) as e:
                raise NetworkError(f"{method} {path}: {type(e).__name__}") from e
            if response.status_code == 401 and attempt == 0:
                continue
            return response
        return response

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise error_for(response.status_code, _problem(response))

    # --- endpoints -------------------------------------------------------------------

    async def register_device(self, device_id: str, name: str = "", platform: str = "") -> None:
        """``POST /v1/devices/``: bind the device to the token's user."""
        body = {"device_id": device_id, "name": name, "platform": platform}
        response = await self._request("POST", "/v1/devices/", json_body=body)
        self._raise_for(response)

    async def push(self, request: PushRequest) -> ChangesetResult:
        """``POST /v1/sync/push`` (msgpack); a 202 is polled briefly at its Location."""
        body = _msgpack_encoder.encode(request)
        response = await self._request(
            "POST",
            "/v1/sync/push",
            content=body,
            headers={"Content-Type": MSGPACK, "Accept": MSGPACK},
        )
        if response.status_code >= 400:
            problem = _problem(response)
            error = error_for(response.status_code, problem)
            if type(error) is RequestRejectedError:
                raise ChangesetRefusedError(
                    str(error),
                    status=response.status_code,
                    server_code=problem.code,
                    errors=problem.errors,
                )
            raise error
        result = self._decode(response, _result_decoder)
        if response.status_code == 202:
            location = response.headers.get("location")
            if location:
                result = await self._poll(location, result)
        if result.changeset_id != request.changeset_id:
            raise MalformedResponseError("the push answer names another changeset")
        return result

    async def _poll(self, location: str, result: ChangesetResult) -> ChangesetResult:
        path = urlsplit(location).path or location
        for _ in range(self._pending_polls):
            await asyncio.sleep(self._pending_poll_s)
            response = await self._request("GET", path, headers={"Accept": MSGPACK})
            self._raise_for(response)
            result = self._decode(response, _result_decoder)
            if result.status == "done":
                break
        return result

    async def pull(self, device_id: str, checkpoint: str, limit: int) -> PullResponse:
        """``GET /v1/sync/pull`` (msgpack)."""
        params: dict[str, Any] = {"device_id": device_id, "limit": limit}
        params["protocol"] = PROTOCOL_VERSION
        if checkpoint:
            params["checkpoint"] = checkpoint
        response = await self._request(
            "GET", "/v1/sync/pull", params=params, headers={"Accept": MSGPACK}
        )
        self._raise_for(response)
        return self._decode(response, _pull_decoder)

    async def bootstrap(self, device_id: str, resume: str | None) -> AsyncIterator[BootstrapBatch]:
        """``GET /v1/sync/bootstrap``: gzip'd length-prefixed msgpack frames, decoded one
        at a time as the bytes arrive (never the whole body in memory)."""
        params: dict[str, Any] = {
            "device_id": device_id,
            "protocol": PROTOCOL_VERSION,
            "batch": self._bootstrap_batch,
        }
        if resume:
            params["resume"] = resume
        for attempt in (0, 1):
            token = await self._bearer(refresh=attempt == 1)
            request = self._client.build_request(
                "GET",
                self.base_url + "/v1/sync/bootstrap",
                params=params,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": BOOTSTRAP_FRAMES,
                    # Decompressed here, incrementally: httpx would too, but owning it
                    # keeps the frame buffer bounded and the failure modes typed.
                    "Accept-Encoding": "gzip",
                    "Accept-Language": self._language,
                },
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TimeoutException as e:
                raise NetworkError("bootstrap: timed out") from e
            except (httpx.TransportError, OSError) as e:
                raise NetworkError(f"bootstrap: {type(e).__name__}") from e
            try:
                if response.status_code == 401 and attempt == 0:
                    continue
                if response.status_code >= 400:
                    await response.aread()
                    self._raise_for(response)
                gzipped = "gzip" in response.headers.get("content-encoding", "").lower()
                async for batch_ in _frames(response, gzipped):
                    yield batch_
                return
            except httpx.TimeoutException as e:
                raise NetworkError("bootstrap stream: timed out") from e
            except (httpx.TransportError, OSError) as e:
                raise NetworkError(f"bootstrap stream: {type(e).__name__}") from e
            finally:
                await response.aclose()

    async def pokes(self, device_id: str) -> AsyncIterator[int]:
        """Hold the event WebSocket open and yield each announced head sequence.

        Raises:
            DeviceRevokedError: the server closed with "wipe".
            AuthenticationError / NetworkError: the socket was refused or dropped.
        """
        import websockets  # a dependency of uvicorn[standard]; imported lazily

        token = await self._bearer()
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urlencode({"device_id": device_id})
        url = urlunsplit((scheme, parts.netloc, parts.path + "/v1/sync/events", query, ""))
        try:
            async with websockets.connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=10,
                ping_interval=30,
            ) as socket:
                async for message in socket:
                    try:
                        frame = json.loads(message)
                    except ValueError:
                        continue
                    if not isinstance(frame, dict):
                        continue
                    kind = frame.get("type")
                    if kind in ("ready", "changes"):
                        yield int(frame.get("seq") or 0)
                    elif kind == "error":
                        status = int(frame.get("status") or 0)
                        problem = Problem(
                            code=str(frame.get("code") or ""),
                            status=status,
                            wipe=bool(frame.get("wipe")),
                        )
                        if status == 401:
                            self._token = None
                        raise error_for(status, problem)
        except SyncError:
            raise
        except (OSError, TimeoutError, websockets.WebSocketException) as e:
            raise NetworkError(f"event socket: {type(e).__name__}") from e

    @staticmethod
    def _decode(response: httpx.Response, decoder: msgspec.msgpack.Decoder[T]) -> T:
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise MalformedResponseError("response too large")
        try:
            return decoder.decode(response.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise MalformedResponseError(f"undecodable response: {str(e)[:200]}") from e


async def _frames(response: httpx.Response, gzipped: bool) -> AsyncIterator[BootstrapBatch]:
    """Split a (gzip'd) stream of 4-byte-length-prefixed msgpack frames into batches.

    Holds at most one frame plus one network chunk in memory.
    """
    inflater = zlib.decompressobj(31) if gzipped else None
    buffer = bytearray()
    async for chunk in response.aiter_raw():
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk)
            except zlib.error as e:
                raise MalformedResponseError("bootstrap stream is not valid gzip") from e
        buffer += chunk
        while len(buffer) >= 4:
            (size,) = struct.unpack_from(">I", buffer, 0)
            if size > MAX_FRAME_BYTES:
                raise MalformedResponseError("bootstrap frame too large")
            if len(buffer) < 4 + size:
                break
            try:
                # Views must be released before the buffer is resized below.
                with memoryview(buffer) as view, view[4 : 4 + size] as frame:
                    batch = _batch_decoder.decode(frame)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise MalformedResponseError(f"bad bootstrap frame: {str(e)[:200]}") from e
            del buffer[: 4 + size]
            yield batch
    if inflater is not None:
        buffer += inflater.flush()
    if buffer:
        raise MalformedResponseError("bootstrap stream ended inside a frame")


__all__ = [
    "BOOTSTRAP_FRAMES",
    "ChangesetRefusedError",
    "HttpTransport",
    "MutationError",
    "Problem",
    "TokenProvider",
    "Transport",
    "error_for",
]
