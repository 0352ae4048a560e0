"""``/v1/blobs``: content-addressed attachments, visible only with their record.

An attachment is stored under the sha256 of its bytes and bound to one record. Uploading
needs write permission on the record's entity and the record in the caller's channels;
downloading needs the record in the caller's channels. Otherwise the answer is 404
``not_found``, the same as for an attachment that does not exist.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, put
from litestar.params import Parameter, PathParameter

from backend.store.types import BlobMeta
from sync_protocol.entities import is_uuid, schema
from sync_protocol.errors import (
    InvalidRecordIdError,
    OperationNotAllowedError,
    PayloadTooLargeError,
)

from ..errors import BlobExistsError, BlobHashMismatchError, NotFoundError
from .dependencies import Caller, Runtime
from .sync import DeviceIdParam

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MEDIA_RE = re.compile(r"^[A-Za-z0-9][\w.+-]{0,63}/[A-Za-z0-9][\w.+-]{0,63}$")
Sha256Param = Annotated[str, PathParameter(description="Lower-case hex sha256 of the content.")]


async def _visible_record(runtime: Runtime, principal: Caller, entity: str, record_id: str) -> bool:
    record = await runtime.store.get(entity, record_id)
    return record is not None and not record.deleted and principal.grants.covers(record.channels)


class BlobController(Controller):
    """Upload and download attachments."""

    path = "/v1/blobs"
    tags = ["blobs"]

    @put(
        "/{sha256:str}",
        status_code=201,
        summary="Upload an attachment",
        description=(
            "Body: the raw bytes (Content-Type is kept). They must hash to `sha256`. "
            "201 when stored, 200 when already stored for the same record, 404 if the "
            "record is not visible, 409 blob_exists if the bytes belong to another record."
        ),
        operation_id="putBlob",
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        principal: Caller,
        sha256: Sha256Param,
        entity: Annotated[str, Parameter(description="Entity of the record.", max_length=64)],
        id: Annotated[str, Parameter(description="Id (UUID) of the record.", max_length=64)],
        device_id: DeviceIdParam,
    ) -> Response[BlobMeta]:
        """Store an attachment for one of the caller's records."""
        await runtime.devices.check(device_id, principal)
        if not _SHA_RE.match(sha256):
            raise NotFoundError("not a sha256")
        entity_name = schema(entity).name
        if not is_uuid(id):
            raise InvalidRecordIdError("record id must be a lower-case UUID")
        permission = principal.grants.profile.permission(entity_name)
        if not (permission.create or permission.update):
            raise OperationNotAllowedError(f"profile may not attach to {entity_name}")
        limit = runtime.config.blob_max_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"attachment over {limit} bytes", limit=limit)
        data = await request.body()
        if len(data) > limit:
            raise PayloadTooLargeError(f"attachment over {limit} bytes", limit=limit)
        if not await _visible_record(runtime, principal, entity_name, id):
            raise NotFoundError("record not visible")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobHashMismatchError("content does not hash to the URL's sha256")
        existing = await runtime.store.get_blob(sha256)
        if existing is not None:
            meta = existing[0]
            if (meta.entity, meta.record_id) != (entity_name, id):
                raise BlobExistsError("content is attached to another record")
            return Response(content=meta, status_code=200)
        media = (request.headers.get("content-type") or "").split(";", 1)[0].strip()
        meta = BlobMeta(
            sha256=sha256,
            size=len(data),
            content_type=media if _MEDIA_RE.match(media) else "application/octet-stream",
            entity=entity_name,
            record_id=id,
            created_ms=int(time.time() * 1000),
        )
        await runtime.store.put_blob(meta, data)
        return Response(content=meta, status_code=201)

    @get(
        "/{sha256:str}",
        summary="Download an attachment",
        description="404 not_found unless the attachment's record is in the caller's channels.",
        operation_id="getBlob",
        media_type="application/octet-stream",
    )
    async def download(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        principal: Caller,
        sha256: Sha256Param,
        device_id: DeviceIdParam,
    ) -> Response[bytes]:
        """The attachment's bytes, if its record is visible to the caller."""
        await runtime.devices.check(device_id, principal)
        if not _SHA_RE.match(sha256):
            raise NotFoundError("not a sha256")
        found = await runtime.store.get_blob(sha256)
        if found is None:
            raise NotFoundError("no such blob")
        meta, data = found
        if not await _visible_record(runtime, principal, meta.entity, meta.record_id):
            raise NotFoundError("no such blob")
        etag = f'"{sha256}"'
        headers = {
            "ETag": etag,
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "attachment",
        }
        if etag in (request.headers.get("if-none-match") or ""):
            return Response(content=b"", status_code=304, headers=headers)
        return Response(content=data, media_type=meta.content_type, headers=headers)
