"""WebSocket ``/v1/sync/events``: "changes available" pokes for the caller's channels.

Authenticate with ``Authorization: Bearer`` or, since browsers cannot set headers on a
WebSocket, ``?access_token=``; name the device with ``?device_id=``. After the server's
``{"type":"ready","seq":N}`` (the head sequence), every commit that touches one of the
caller's channels sends ``{"type":"changes","seq":N}``; the device then pulls. A ``ping``
text frame is answered ``{"type":"pong"}``.

Failures are sent as ``{"type":"error","code":...,"status":...,"detail":...,"wipe":...}``
followed by a close with code ``4000 + status`` (4401 bad token, 4403 foreign device,
4410 revoked device: wipe); 1013 when the process is at its connection limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from backend.auth.errors import AuthError, MissingTokenError
from backend.auth.principal import Principal
from backend.messaging.errors import MessagingError
from sync_protocol.errors import ProtocolError
from sync_protocol.messages import negotiate_language

from ..events import EventConnection
from ..problems import problem_for
from .dependencies import Runtime

logger = logging.getLogger("crmsync.gateway.events")

_TRY_AGAIN_LATER = 1013


class ErrorFrame(msgspec.Struct, kw_only=True):
    """The frame sent before closing a socket that cannot be served."""

    type: str
    code: str
    status: int
    detail: str
    wipe: bool = False


async def _authenticate(socket: WebSocket[Any, Any, Any], runtime: Runtime) -> Principal:
    header = socket.headers.get("authorization")
    if header:
        return await runtime.authenticator.authenticate(header)
    token = socket.query_params.get("access_token")
    if not token:
        raise MissingTokenError("no token")
    return await runtime.authenticator.token(str(token))


async def _refuse(socket: WebSocket[Any, Any, Any], exc: Exception) -> None:
    language = negotiate_language(socket.headers.get("accept-language"))
    problem, _ = problem_for(exc, language)
    frame = ErrorFrame(
        type="error",
        code=problem.code,
        status=problem.status,
        detail=problem.detail,
        wipe=problem.wipe,
    )
    await socket.send_text(msgspec.json.encode(frame).decode())
    await socket.close(code=4000 + problem.status if problem.status < 1000 else 4500)


@websocket("/v1/sync/events", opt={"exclude_from_auth": True})
async def events(socket: WebSocket[Any, Any, Any], runtime: Runtime) -> None:
    """Hold one device's event socket until it disconnects."""
    await socket.accept()
    try:
        if not runtime.hub.has_room():
            await socket.close(code=_TRY_AGAIN_LATER, reason="connection limit")
            return
        principal = await _authenticate(socket, runtime)
        device_id = str(socket.query_params.get("device_id") or "")
        await runtime.devices.check(device_id, principal)
        head = await runtime.store.head_seq()
    except (AuthError, ProtocolError) as e:
        await _refuse(socket, e)
        return
    except Exception as e:  # store or NATS trouble: tell the client to come back later
        logger.warning("event socket refused: %s", type(e).__name__)
        await socket.close(code=_TRY_AGAIN_LATER, reason="unavailable")
        return

    def expire() -> None:
        task = asyncio.get_running_loop().create_task(socket.close(code=4401, reason="expired"))
        task.add_done_callback(lambda _: None)

    conn = EventConnection(
        device_id,
        principal.user,
        principal.channels,
        socket.send_text,
        expires_at=principal.expires_at,
        on_expired=expire,
    )
    try:
        await runtime.hub.join(conn)
    except MessagingError:
        await socket.close(code=_TRY_AGAIN_LATER, reason="unavailable")
        return
    try:
        conn.last_seq = head
        await socket.send_text(f'{{"type":"ready","seq":{head}}}')
        while True:
            text = await socket.receive_text()
            if text == "ping":
                await socket.send_text('{"type":"pong"}')
    except WebSocketDisconnect:
        pass
    except Exception as e:
        logger.debug("event socket ended: %s", type(e).__name__)
    finally:
        await runtime.hub.leave(conn)
