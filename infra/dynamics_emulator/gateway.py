"""The ASGI front of the Web API: authentication, service protection, faults, then the service.

Mounted by the Litestar app at ``/api/data/v9.2``. Per request, in this order:

1. bearer token check (401 with ``WWW-Authenticate``),
2. service protection limits of the token's user (429 with ``Retry-After``),
3. injected faults (latency, then 503/500 or a dropped connection),
4. :meth:`WebApiService.handle`,

and every answer carries ``x-ms-dop-hint`` and the ``x-ms-ratelimit-*-remaining`` headers.
A dropped connection starts a response and ends the ASGI call without a body; the server
(uvicorn) then closes the connection, so the client sees an incomplete response.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import unquote

from infra.dynamics_emulator.auth import challenge
from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.errors import AuthenticationError, ServiceProtectionError
from infra.dynamics_emulator.faults import FaultKind, fault_error
from infra.dynamics_emulator.protection import Admission
from infra.dynamics_emulator.service import API_ROOT, ApiRequest, ApiResponse, error_response

Scope = dict[str, Any]
Message = dict[str, Any]


def request_headers(scope: Scope) -> dict[str, str]:
    """Return the request headers with lower-case names; repeated ones joined by ``, ``."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def base_url(scope: Scope, headers: dict[str, str], public_url: str | None) -> str:
    """Return ``scheme://host[:port]`` the client used (or the configured public URL)."""
    if public_url:
        return public_url.rstrip("/")
    scheme = scope.get("scheme", "http")
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"


class ApiGateway:
    """ASGI application serving ``/api/data/v9.2`` for one :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Serve one HTTP request."""
        if scope["type"] != "http":
            return
        emulator = self.emulator
        config = emulator.config
        headers = request_headers(scope)
        url = base_url(scope, headers, config.public_url)
        try:
            user = self._authenticate(headers)
        except AuthenticationError as error:
            error.headers["WWW-Authenticate"] = challenge(url, error)
            await self._send(send, error_response(error), None)
            return
        try:
            admission = emulator.protection.admit(user)
        except ServiceProtectionError as error:
            await self._send(send, error_response(error), None)
            return
        started = time.perf_counter()
        try:
            decision = emulator.faults.roll()
            if decision.latency_ms:
                await asyncio.sleep(decision.latency_ms / 1000)
            if decision.kind is FaultKind.DROP:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", b"1024"),
                        ],
                    }
                )
                return
            if decision.kind is not FaultKind.NONE:
                response = error_response(fault_error(decision.kind))
            else:
                body = await _read_body(receive)
                request = ApiRequest(
                    method=scope["method"].upper(),
                    path=_api_path(scope),
                    query=scope.get("query_string", b"").decode("latin-1"),
                    headers=headers,
                    body=body,
                    base_url=url,
                    user=user,
                )
                response = emulator.service.handle(request)
            await self._send(send, response, admission)
        finally:
            emulator.protection.release(admission, (time.perf_counter() - started) * 1000)

    def _authenticate(self, headers: dict[str, str]) -> str:
        tokens = self.emulator.tokens
        authorization = headers.get("authorization")
        if not self.emulator.config.auth.required and not authorization:
            return "anonymous"
        return tokens.validate(authorization)

    async def _send(self, send: Any, response: ApiResponse, admission: Admission | None) -> None:
        limits = self.emulator.protection.limits
        extra = [("x-ms-dop-hint", str(limits.dop_hint))]
        if admission is not None:
            extra.append(
                ("x-ms-ratelimit-burst-remaining-xrm-requests", str(admission.remaining_requests))
            )
            extra.append(
                (
                    "x-ms-ratelimit-time-remaining-xrm-requests",
                    f"{admission.remaining_execution_ms:,.2f}",
                )
            )
        raw_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (*response.headers, *extra)
        ]
        if response.status != 304:
            raw_headers.append((b"content-length", str(len(response.body)).encode()))
        await send(
            {"type": "http.response.start", "status": response.status, "headers": raw_headers}
        )
        body = response.body if response.status != 304 else b""
        await send({"type": "http.response.body", "body": body})


def _api_path(scope: Scope) -> str:
    # Litestar's mount rewrites scope["path"] (prefix removed, "/" appended); the raw path
    # is what the client sent.
    raw = scope.get("raw_path")
    # Some clients (Litestar's test transport) leave the query string in raw_path.
    path: str = unquote(raw.decode("latin-1").split("?", 1)[0]) if raw else scope.get("path", "/")
    if path.startswith(API_ROOT):
        path = path[len(API_ROOT) :]
    return path or "/"


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
