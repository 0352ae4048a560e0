"""Dependencies the routes ask for by name: the runtime, its parts, and the caller."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from backend.auth.principal import Principal
from backend.messaging.broker import Broker
from backend.store.base import RecordStore
from sync_protocol.rules import SyncRules

from ..runtime import GatewayRuntime

Runtime = NamedDependency[GatewayRuntime]
"""A handler parameter ``runtime: Runtime`` receives the gateway runtime."""

Caller = NamedDependency[Principal]
"""A handler parameter ``principal: Caller`` receives the authenticated caller."""


async def provide_principal(request: Request[Any, Any, Any], runtime: Runtime) -> Principal:
    """The authenticated caller of this request.

    Raises:
        AuthError: no, bad or expired token, or claims that map to no profile.
    """
    return await runtime.authenticator.authenticate(request.headers.get("authorization"))


def dependencies(runtime: GatewayRuntime) -> dict[str, Provide]:
    """The app's dependencies: ``runtime``, ``store``, ``broker``, ``rules``, ``principal``."""

    def get_runtime() -> GatewayRuntime:
        return runtime

    def get_store() -> RecordStore:
        return runtime.store

    def get_broker() -> Broker:
        return runtime.broker

    def get_rules() -> SyncRules:
        return runtime.rules

    return {
        "runtime": Provide(get_runtime, use_cache=True, sync_to_thread=False),
        "store": Provide(get_store, use_cache=True, sync_to_thread=False),
        "broker": Provide(get_broker, use_cache=True, sync_to_thread=False),
        "rules": Provide(get_rules, use_cache=True, sync_to_thread=False),
        "principal": Provide(provide_principal),
    }
