"""The admin API and metrics, served on their own port (the operators' network only).

``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` need no token; everything under
``/admin`` needs a bearer token with the ``admin`` profile: devices (list, revoke),
conflicts (list, resolve), the audit trail, and sync health.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Litestar, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter, PathParameter

from backend.applier.messages import Actor
from backend.auth.devices import DeviceView
from backend.auth.errors import NotAdminError
from backend.auth.principal import Principal
from backend.gateway.errors import InvalidParameterError, NotFoundError
from backend.gateway.openapi import openapi_config
from backend.gateway.problems import exception_handlers
from backend.gateway.routes.dependencies import Runtime
from backend.gateway.routes.health import HealthController
from backend.gateway.runtime import GatewayRuntime
from backend.observability import Metrics
from backend.store.types import AuditEntry, ConflictRecord
from sync_protocol.changesets import ChangesetResult, Mutation, PushRequest
from sync_protocol.hlc import HLC
from sync_protocol.version import PROTOCOL_VERSION

ADMIN_PROFILE = "admin"
ADMIN_DEVICE = "admin-console"
# Litestar appends the charset itself; prometheus_client's constant already has one.
METRICS_MEDIA_TYPE = Metrics.content_type.split("; charset", 1)[0]


async def provide_admin(request: Request[Any, Any, Any], runtime: Runtime) -> Principal:
    """The caller, who must hold the admin profile.

    Raises:
        AuthError: no, bad or expired token.
        NotAdminError: a valid token of another profile.
    """
    principal = await runtime.authenticator.authenticate(request.headers.get("authorization"))
    if principal.profile != ADMIN_PROFILE:
        raise NotAdminError("the admin API needs the admin profile")
    return principal


AdminCaller = NamedDependency[Principal]
"""A handler parameter ``admin: AdminCaller`` receives a caller with the admin profile."""


class RevokeRequest(msgspec.Struct, kw_only=True):
    """Why a device is revoked (kept for the record)."""

    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class ResolveRequest(msgspec.Struct, kw_only=True):
    """How an operator resolves a conflict.

    ``keep_server`` leaves the live value; ``take_device`` writes the device's value;
    ``custom`` writes ``value``. Writes go through the applier like any other change.
    Conflict ids contain ``/`` (``<changeset>/<index>/<field>``), hence in the body.
    """

    conflict_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    resolution: Literal["keep_server", "take_device", "custom"]
    value: Any = None


class ResolveResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The resolved conflict and, if a value was written, the write's result."""

    conflict: ConflictRecord
    write: ChangesetResult | None = None


class SyncHealth(msgspec.Struct, kw_only=True):
    """How the sync service is doing."""

    head_seq: int
    oldest_seq: int
    open_conflicts: int
    ws_connections: int
    ws_channel_subscriptions: int
    gateway_id: str
    streams: dict[str, dict[str, int]]


class AdminController(Controller):
    """Operator endpoints; every one needs the admin profile."""

    path = "/admin"
    tags = ["admin"]
    dependencies = {"admin": Provide(provide_admin)}

    @get("/devices", summary="List devices", operation_id="adminListDevices")
    async def devices(
        self,
        runtime: Runtime,
        admin: AdminCaller,
        user: Annotated[str | None, Parameter(max_length=128)] = None,
    ) -> list[DeviceView]:
        """Every device, or one user's."""
        return await runtime.devices.list_devices(user)

    @post(
        "/devices/{device_id:str}/revoke",
        status_code=200,
        summary="Revoke a device",
        description="Its next sync request is answered 'wipe'. Idempotent.",
        operation_id="adminRevokeDevice",
    )
    async def revoke(
        self,
        runtime: Runtime,
        admin: AdminCaller,
        device_id: Annotated[str, PathParameter(max_length=64)],
        data: JSONBody[RevokeRequest | None] = None,
    ) -> DeviceView:
        """Revoke any device."""
        return await runtime.devices.revoke(
            device_id, admin.user, reason=data.reason if data else ""
        )

    @get("/conflicts", summary="List conflicts", operation_id="adminListConflicts")
    async def conflicts(
        self,
        runtime: Runtime,
        admin: AdminCaller,
        status: Literal["open", "auto_resolved", "resolved"] | None = None,
        owner: Annotated[str | None, Parameter(max_length=128)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[ConflictRecord]:
        """Conflicts, newest first."""
        return await runtime.store.conflicts(status=status, owner=owner, limit=limit)

    @post(
        "/conflicts/resolve",
        status_code=200,
        summary="Resolve a conflict",
        operation_id="adminResolveConflict",
    )
    async def resolve(
        self,
        runtime: Runtime,
        admin: AdminCaller,
        data: JSONBody[ResolveRequest],
    ) -> ResolveResponse:
        """Resolve a conflict, writing the chosen value through the applier if needed."""
        conflict_id = data.conflict_id
        write: ChangesetResult | None = None
        if data.resolution != "keep_server":
            conflict = await self._find(runtime, conflict_id)
            value = conflict.device_value if data.resolution == "take_device" else data.value
            write = await self._write_value(runtime, admin, conflict, value)
            if any(r.outcome == "rejected" for r in write.results) or write.status == "pending":
                raise NotFoundError("the value could not be written")
        resolved = await runtime.store.resolve_conflict(conflict_id, data.resolution, admin.user)
        return ResolveResponse(conflict=resolved, write=write)

    @staticmethod
    async def _find(runtime: Runtime, conflict_id: str) -> ConflictRecord:
        for conflict in await runtime.store.conflicts(status="open", limit=10_000):
            if conflict.id == conflict_id:
                return conflict
        raise NotFoundError("no open conflict with that id")

    @staticmethod
    async def _write_value(
        runtime: Runtime, admin: AdminCaller, conflict: ConflictRecord, value: Any
    ) -> ChangesetResult:
        record = await runtime.store.get(conflict.entity, conflict.record_id)
        if record is None:
            raise NotFoundError("the conflict's record is gone")
        now = int(time.time() * 1000)
        push = PushRequest(
            protocol=PROTOCOL_VERSION,
            changeset_id=f"{ADMIN_DEVICE}:{now}",
            device_id=ADMIN_DEVICE,
            mutations=[
                Mutation(
                    entity=conflict.entity,
                    id=conflict.record_id,
                    clock=HLC(now, 0, f"admin-{admin.user}"[:64]),
                    base_version=record.version,
                    fields={conflict.field: value},
                )
            ],
        )
        actor = Actor(
            user=admin.user,
            profile=admin.profile,
            channels=sorted(admin.channels),
            device_id=ADMIN_DEVICE,
        )
        result, _ = await runtime.dispatcher.submit(
            push, actor, max(runtime.config.push_wait_ms, 5000) / 1000
        )
        return result or ChangesetResult(
            changeset_id=push.changeset_id, results=[], status="pending"
        )

    @get("/audit", summary="Audit trail", operation_id="adminAudit")
    async def audit(
        self,
        runtime: Runtime,
        admin: AdminCaller,
        entity: Annotated[str | None, Parameter(max_length=64)] = None,
        record_id: Annotated[str | None, Parameter(max_length=64)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[AuditEntry]:
        """Audit entries, newest first (``record_id`` needs ``entity``)."""
        if record_id is not None and entity is None:
            raise InvalidParameterError("record_id needs entity")
        return await runtime.store.audit_trail(entity=entity, record_id=record_id, limit=limit)

    @get("/health", summary="Sync health", operation_id="adminHealth")
    async def health(self, runtime: Runtime, admin: AdminCaller) -> SyncHealth:
        """Sequences, open conflicts, sockets and stream depths."""
        streams: dict[str, dict[str, int]] = {}
        stream_state = getattr(runtime.broker, "stream_state", None)
        if stream_state is not None:
            from backend.messaging.subjects import STREAMS

            for spec in STREAMS:
                try:
                    state = await stream_state(spec.name)
                except Exception:
                    continue
                streams[spec.name] = {"messages": state.messages, "last_seq": state.last_seq}
        open_conflicts = await runtime.store.conflicts(status="open", limit=10_000)
        return SyncHealth(
            head_seq=await runtime.store.head_seq(),
            oldest_seq=await runtime.store.oldest_seq(),
            open_conflicts=len(open_conflicts),
            ws_connections=runtime.hub.connection_count,
            ws_channel_subscriptions=runtime.hub.channel_count,
            gateway_id=runtime.dispatcher.gateway_id,
            streams=streams,
        )


@get(
    "/metrics",
    summary="Prometheus metrics",
    operation_id="metrics",
    tags=["metrics"],
    media_type=METRICS_MEDIA_TYPE,
)
async def metrics(runtime: Runtime) -> Response[bytes]:
    """The process's metrics in the Prometheus text format."""
    return Response(content=runtime.metrics.render(), media_type=METRICS_MEDIA_TYPE)


def create_admin_app(runtime: GatewayRuntime) -> Litestar:
    """Build the admin app over the same runtime as the sync app.

    Its lifespan starts and closes the shared runtime too (reference-counted), so either
    app can be served alone.
    """

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    def get_runtime() -> GatewayRuntime:
        return runtime

    app = Litestar(
        route_handlers=[AdminController, HealthController, metrics],
        dependencies={"runtime": Provide(get_runtime, use_cache=True, sync_to_thread=False)},
        exception_handlers=exception_handlers(runtime.metrics),
        lifespan=[lifespan],
        openapi_config=openapi_config(
            "crmsync admin API",
            "Devices, conflicts, audit and health for operators.",
            raw_bodies=False,
        ),
        debug=False,
        logging_config=None,
    )
    app.state.runtime = runtime
    return app
