"""Response encoding: JSON or msgpack by the ``Accept`` header, never by guesswork."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from litestar import Request, Response

from sync_protocol.codec import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE, Format, accepts_msgpack, encode


def response_format(request: Request[Any, Any, Any]) -> Format:
    """The format the caller prefers (``application/msgpack`` if it ranks it higher)."""
    return "msgpack" if accepts_msgpack(request.headers.get("accept")) else "json"


T = TypeVar("T")


def wire_response(
    request: Request[Any, Any, Any],
    obj: T,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response[T]:
    """Encode a wire message for the caller, with ``Vary: Accept``.

    The body is encoded here (so msgpack and JSON share one path); the type parameter
    only documents the message for OpenAPI.
    """
    fmt = response_format(request)
    hdrs = {"Vary": "Accept", "Cache-Control": "no-store", **(headers or {})}
    response: Response[bytes] = Response(
        content=encode(obj, fmt),
        status_code=status,
        media_type=MSGPACK_MEDIA_TYPE if fmt == "msgpack" else JSON_MEDIA_TYPE,
        headers=hdrs,
    )
    return cast("Response[T]", response)
