"""``/v1/metadata``: entity schemas, option-set labels and the caller's write permissions."""

from __future__ import annotations

from typing import Any, cast

from litestar import Controller, Request, Response, get

from ..metadata import Metadata
from ..wire import response_format
from .dependencies import Caller, Runtime


class MetadataController(Controller):
    """Schema and labels for building forms and search offline."""

    path = "/v1/metadata"
    tags = ["metadata"]

    @get(
        "/",
        summary="Entity schemas and labels",
        description=(
            "Entity schemas with field kinds, option-set labels in it, de, fr, es, pl, en, "
            "and what the caller's profile may write. Strong ETag; send If-None-Match to "
            "get 304."
        ),
        operation_id="metadata",
    )
    async def metadata(
        self, request: Request[Any, Any, Any], runtime: Runtime, principal: Caller
    ) -> Response[Metadata]:
        """The metadata document for the caller's profile."""
        fmt = response_format(request)
        body, etag = runtime.metadata.get(principal.profile, fmt)
        headers = {
            "ETag": etag,
            "Cache-Control": "private, max-age=3600",
            "Vary": "Accept, Authorization",
        }
        media = "application/msgpack" if fmt == "msgpack" else "application/json"
        if etag in (request.headers.get("if-none-match") or ""):
            response = Response(content=b"", status_code=304, headers=headers, media_type=media)
        else:
            response = Response(content=body, media_type=media, headers=headers)
        return cast("Response[Metadata]", response)
