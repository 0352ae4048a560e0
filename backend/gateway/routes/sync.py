"""``/v1/sync``: push, pull, bootstrap and changeset status."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter, PathParameter
from litestar.response import Stream

from backend.applier.messages import Actor
from backend.auth.errors import DeviceRevokedError
from sync_protocol.changesets import ChangesetResult
from sync_protocol.checkpoint import scope_hash
from sync_protocol.codec import decode_push
from sync_protocol.messages import negotiate_language
from sync_protocol.pull import PullResponse
from sync_protocol.version import PROTOCOL_VERSION, check_version

from ..bootstrap import MSGPACK_FRAMES, NDJSON_FRAMES, FrameFormat
from ..errors import NotFoundError
from ..push import check_push
from ..wire import wire_response
from .dependencies import Caller, Runtime

_CHANGESET_ID_RE = re.compile(r"^([A-Za-z0-9_\-]{1,64}):([0-9]{1,19})$")

DeviceIdParam = Annotated[
    str,
    Parameter(
        description="The calling device's id (1-64 of A-Z a-z 0-9 _ -).",
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
    ),
]
ProtocolParam = Annotated[
    int,
    Parameter(description="Protocol version the client speaks.", ge=0, le=1000),
]


def _bootstrap_format(accept: str | None) -> FrameFormat:
    text = (accept or "").lower()
    if MSGPACK_FRAMES in text or "application/msgpack" in text:
        return "msgpack"
    return "ndjson"


class SyncController(Controller):
    """Push changesets, pull changes, bootstrap a replica."""

    path = "/v1/sync"
    tags = ["sync"]

    @post(
        "/push",
        status_code=200,
        summary="Push a changeset",
        description=(
            "Body: a PushRequest as JSON or msgpack (Content-Type). Answers 200 with the "
            "ChangesetResult if the applier answers within push_wait_ms, else 202 with "
            "status 'pending' and a Location to poll; the result also comes with the next "
            "pull. A stored result (retry of an applied changeset) is answered at once. "
            "A revoked device gets 410 device_revoked with wipe: true."
        ),
        operation_id="push",
    )
    async def push(
        self, request: Request[Any, Any, Any], runtime: Runtime, principal: Caller
    ) -> Response[ChangesetResult]:
        """Check and hand a changeset to the applier; wait briefly for its result."""
        body = await request.body()
        push = decode_push(body, request.headers.get("content-type"), runtime.limits)
        await runtime.devices.check(push.device_id, principal)
        check_push(push, principal.grants)
        actor = Actor(
            user=principal.user,
            profile=principal.profile,
            channels=sorted(principal.channels),
            device_id=push.device_id,
            language=negotiate_language(request.headers.get("accept-language")),
        )
        result, replay = await runtime.dispatcher.submit(
            push, actor, runtime.config.push_wait_ms / 1000
        )
        metrics = runtime.metrics
        if result is None:
            metrics.push_answers.labels("pending").inc()
            pending = ChangesetResult(changeset_id=push.changeset_id, results=[], status="pending")
            location = f"/v1/sync/changesets/{quote(push.changeset_id, safe='')}"
            return wire_response(request, pending, status=202, headers={"Location": location})
        metrics.push_answers.labels("replay" if replay else "done").inc()
        for r in result.results:
            metrics.push_outcomes.labels(r.outcome).inc()
        return wire_response(request, result)

    @get(
        "/changesets/{changeset_id:str}",
        summary="Result of a pushed changeset",
        description=(
            "200 with the stored ChangesetResult once applied, 202 with status 'pending' "
            "before. Only the device's own user may ask; anyone else gets 404."
        ),
        operation_id="changesetResult",
    )
    async def changeset(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        principal: Caller,
        changeset_id: Annotated[str, PathParameter(max_length=100)],
    ) -> Response[ChangesetResult]:
        """The result of one of the caller's changesets."""
        m = _CHANGESET_ID_RE.match(changeset_id)
        if m is None:
            raise NotFoundError("no such changeset")
        entry = await runtime.devices.get(m.group(1))
        if entry is None or entry.user != principal.user:
            raise NotFoundError("no such changeset")
        if await runtime.devices.revocation(entry.device_id) is not None:
            raise DeviceRevokedError("device revoked")
        result = await runtime.store.changeset_result(changeset_id)
        if result is None:
            pending = ChangesetResult(changeset_id=changeset_id, results=[], status="pending")
            return wire_response(request, pending, status=202)
        return wire_response(request, result)

    @get(
        "/pull",
        summary="Pull changes after a checkpoint",
        description=(
            "One page of the caller's scoped changes after `checkpoint` (from the start "
            "without one), with removals, this device's changeset results, a write "
            "checkpoint and, on the last page, per-channel checksums. JSON or msgpack by "
            "Accept. action 'resync' (checkpoint too old or scope unknown: keep local "
            "changes and bootstrap again) or 'wipe' (device revoked) come as 200."
        ),
        operation_id="pull",
    )
    async def pull(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        principal: Caller,
        device_id: DeviceIdParam,
        checkpoint: Annotated[
            str | None,
            Parameter(description="Opaque checkpoint from the previous pull.", max_length=4096),
        ] = None,
        limit: Annotated[
            int | None, Parameter(description="Most changes in the page.", ge=1, le=5000)
        ] = None,
        protocol: ProtocolParam = PROTOCOL_VERSION,
    ) -> Response[PullResponse]:
        """A page of changes for the calling device."""
        check_version(protocol)
        try:
            device = await runtime.devices.check(device_id, principal)
        except DeviceRevokedError:
            runtime.metrics.pull_actions.labels("wipe").inc()
            wipe = PullResponse(
                protocol=PROTOCOL_VERSION, checkpoint="", has_more=False, action="wipe"
            )
            return wire_response(request, wipe)
        size = min(limit or runtime.config.pull_default_limit, runtime.config.pull_max_limit)
        page = await runtime.feed.pull(principal, device, checkpoint, size)
        runtime.metrics.pull_changes.observe(len(page.changes))
        if page.action != "none":
            runtime.metrics.pull_actions.labels(page.action).inc()
        return wire_response(request, page)

    @get(
        "/bootstrap",
        summary="Stream a snapshot of the caller's scope",
        description=(
            "Frames of BootstrapBatch: length-prefixed msgpack "
            f"(Accept: {MSGPACK_FRAMES}) or NDJSON ({NDJSON_FRAMES}, the default), "
            "gzip-compressed when Accept-Encoding allows. Resume a broken stream with the "
            "last frame's `resume` token; the final frame (done: true) carries the pull "
            "checkpoint. A revoked device gets 410 device_revoked with wipe: true."
        ),
        operation_id="bootstrap",
    )
    async def bootstrap(
        self,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        principal: Caller,
        device_id: DeviceIdParam,
        resume: Annotated[
            str | None,
            Parameter(description="Resume token of the last frame received.", max_length=2048),
        ] = None,
        batch: Annotated[
            int | None, Parameter(description="Records per frame.", ge=1, le=5000)
        ] = None,
        protocol: ProtocolParam = PROTOCOL_VERSION,
    ) -> Stream:
        """A streamed, compressed, resumable snapshot."""
        check_version(protocol)
        device = await runtime.devices.check(device_id, principal)
        fmt = _bootstrap_format(request.headers.get("accept"))
        gzip = "gzip" in (request.headers.get("accept-encoding") or "").lower()
        plan = await runtime.snapshots.plan(
            principal,
            resume,
            batch=min(batch or runtime.config.bootstrap_batch, 5000),
            fmt=fmt,
            gzip=gzip,
        )
        await runtime.devices.remember_scope(
            device, scope_hash(principal.channels), principal.channels
        )
        headers = {"Cache-Control": "no-store", "Vary": "Accept, Accept-Encoding"}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        return Stream(
            runtime.snapshots.stream(plan),
            media_type=MSGPACK_FRAMES if fmt == "msgpack" else NDJSON_FRAMES,
            headers=headers,
        )
