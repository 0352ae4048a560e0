"""The sync API application factory.

``create_app(config, store, broker, rules)`` returns a :class:`litestar.Litestar` with one
controller per resource, the store, broker, rules and services injected with ``Provide``,
a lifespan that owns the connections, every error mapped to ``application/problem+json``
in one place, and the OpenAPI document at ``/schema``. The admin API and metrics are a
separate app on their own port (:func:`backend.admin.app.create_admin_app`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.middleware import DefineMiddleware

from backend.auth.dev_signer import DevSigner
from backend.config import GatewayConfig
from backend.messaging.broker import Broker
from backend.observability import Metrics
from backend.store.base import RecordStore
from sync_protocol.rules import SyncRules

from .middleware import metrics_middleware
from .openapi import openapi_config
from .problems import exception_handlers
from .routes.blobs import BlobController
from .routes.dependencies import dependencies
from .routes.dev import DevController
from .routes.devices import DeviceController
from .routes.events import events
from .routes.health import HealthController
from .routes.metadata import MetadataController
from .routes.sync import SyncController
from .runtime import GatewayRuntime

DESCRIPTION = (
    "Offline-first CRM sync: push changesets, pull scoped changes, bootstrap a replica, "
    "receive change pokes, read metadata, move attachments. Errors are "
    "application/problem+json with a stable `code` and a `detail` in the caller's "
    "language (Accept-Language: it, de, fr, es, pl, en)."
)


def create_app(
    config: GatewayConfig,
    store: RecordStore,
    broker: Broker,
    rules: SyncRules | None = None,
    *,
    runtime: GatewayRuntime | None = None,
    dev_signer: DevSigner | None = None,
    metrics: Metrics | None = None,
    own_resources: bool = True,
) -> Litestar:
    """Build the sync API.

    Args:
        config: gateway settings.
        store: the record store (started by the lifespan if ``own_resources``).
        broker: the messaging port (connected by the lifespan if ``own_resources``).
        rules: sync rules; those named by ``config`` (or the defaults) if omitted.
        runtime: services to share with an admin app; built here if omitted.
        dev_signer: the dev identity provider (tests pass an in-memory one).
        metrics: the process's metrics registry.
        own_resources: start/close the store and broker with the app.

    Returns:
        The application; its runtime is ``app.state.runtime``.
    """
    rt = runtime or GatewayRuntime.build(
        config,
        store,
        broker,
        rules,
        dev_signer=dev_signer,
        metrics=metrics,
        own_resources=own_resources,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.close()

    handlers: list[object] = [
        SyncController,
        DeviceController,
        MetadataController,
        BlobController,
        HealthController,
        events,
    ]
    if rt.dev_signer is not None:
        handlers.append(DevController)
    cors = (
        CORSConfig(
            allow_origins=list(config.cors_origins),
            allow_headers=["Authorization", "Content-Type", "Accept", "Accept-Language"],
            expose_headers=["Location", "ETag", "Content-Language"],
        )
        if config.cors_origins
        else None
    )
    app = Litestar(
        route_handlers=handlers,  # type: ignore[arg-type]
        dependencies=dependencies(rt),
        exception_handlers=exception_handlers(rt.metrics),
        middleware=[DefineMiddleware(metrics_middleware(rt.metrics))],
        lifespan=[lifespan],
        openapi_config=openapi_config("crmsync sync API", DESCRIPTION),
        request_max_body_size=max(config.max_body_bytes, config.blob_max_bytes) + 1,
        cors_config=cors,
        debug=False,
        logging_config=None,
    )
    app.state.runtime = rt
    return app
