"""The gateway's services, built once per process and shared by the sync and admin apps."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.auth.dev_signer import DevSigner
from backend.auth.devices import DeviceRegistry
from backend.auth.jwks import (
    FileKeySetSource,
    KeySetCache,
    KeySetSource,
    StaticKeySetSource,
    UrlKeySetSource,
)
from backend.auth.principal import Authenticator
from backend.auth.tokens import TokenVerifier
from backend.config import GatewayConfig
from backend.messaging.broker import Broker
from backend.observability import Metrics
from backend.store.base import RecordStore
from sync_protocol.codec import Limits
from sync_protocol.default_rules import default_rules
from sync_protocol.rules import SyncRules, parse_rules

from .bootstrap import SnapshotStreamer
from .events import EventHub
from .metadata import MetadataCache
from .pull import FeedReader
from .push import ChangesetDispatcher

logger = logging.getLogger("crmsync.gateway")


def load_rules(config: GatewayConfig) -> SyncRules:
    """The sync rules named by the config (the built-in default rules if none).

    Raises:
        RulesError: the file is invalid (the message names the key).
        OSError: the file cannot be read.
    """
    if not config.rules_file:
        return default_rules()
    path = Path(config.rules_file)
    return parse_rules(path.read_text(), str(path))


def key_source(config: GatewayConfig, dev_signer: DevSigner | None) -> KeySetSource:
    """Where token keys come from: the JWKS file or URL, else the dev signer."""
    if config.jwks_file:
        return FileKeySetSource(Path(config.jwks_file))
    if config.jwks_url:
        return UrlKeySetSource(config.jwks_url)
    if dev_signer is None:
        raise ValueError("no JWKS configured and no dev signer")
    return StaticKeySetSource(dev_signer.jwks())


@dataclass
class GatewayRuntime:
    """Everything the handlers use; start and close it around serving.

    Build it with :meth:`build`. ``own_resources`` decides whether :meth:`start` and
    :meth:`close` also start and close the store and the broker (true when the gateway
    process owns them; tests that share a store set it false).
    """

    config: GatewayConfig
    store: RecordStore
    broker: Broker
    rules: SyncRules
    authenticator: Authenticator
    devices: DeviceRegistry
    dispatcher: ChangesetDispatcher
    feed: FeedReader
    snapshots: SnapshotStreamer
    hub: EventHub
    metadata: MetadataCache
    metrics: Metrics
    limits: Limits
    dev_signer: DevSigner | None = None
    own_resources: bool = True
    _users: int = field(default=0, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    def build(
        cls,
        config: GatewayConfig,
        store: RecordStore,
        broker: Broker,
        rules: SyncRules | None = None,
        *,
        dev_signer: DevSigner | None = None,
        metrics: Metrics | None = None,
        own_resources: bool = True,
    ) -> GatewayRuntime:
        """Wire the services from their config.

        With ``dev_auth`` and no ``dev_signer`` given, the dev signer's key pair is
        loaded from (or created in) ``config.dev_key_dir``.
        """
        rules = rules or load_rules(config)
        metrics = metrics or Metrics()
        if config.dev_auth and dev_signer is None:
            dev_signer = DevSigner.load_or_create(
                Path(config.dev_key_dir), issuer=config.issuer, audience=config.audience
            )
        keys = KeySetCache(
            key_source(config, dev_signer),
            ttl_s=config.jwks_ttl_s,
            min_refresh_interval_s=config.jwks_min_refresh_s,
        )
        verifier = TokenVerifier(
            keys,
            issuer=config.issuer,
            audience=config.audience,
            algorithms=config.algorithms,
            leeway_s=config.token_leeway_s,
        )
        devices = DeviceRegistry(store, auto_register=config.auto_register_devices)
        return cls(
            config=config,
            store=store,
            broker=broker,
            rules=rules,
            authenticator=Authenticator(verifier, rules),
            devices=devices,
            dispatcher=ChangesetDispatcher(broker, store),
            feed=FeedReader(
                store,
                devices,
                checkpoint_key=config.checkpoint_key,
                retention_ms=config.tombstone_retention_s * 1000,
            ),
            snapshots=SnapshotStreamer(
                store, config.checkpoint_key, on_records=metrics.bootstrap_records.inc
            ),
            hub=EventHub(broker, metrics, max_connections=config.ws_max_connections),
            metadata=MetadataCache(rules, config.max_clock_skew_ms),
            metrics=metrics,
            limits=Limits(
                max_body_bytes=config.max_body_bytes,
                max_mutations=config.max_mutations,
                max_fields_per_mutation=config.max_fields_per_mutation,
            ),
            dev_signer=dev_signer if config.dev_auth else None,
            own_resources=own_resources,
        )

    async def start(self) -> None:
        """Start the services (the first caller does the work; later calls count users)."""
        async with self._lock:
            self._users += 1
            if self._users > 1:
                return
            if self.own_resources:
                await self.store.start()
                await self.broker.connect()
                await self.broker.ensure_streams()
            await self.dispatcher.start()
            logger.info("gateway services started (gateway id %s)", self.dispatcher.gateway_id)

    async def close(self) -> None:
        """Stop the services when the last user closes them."""
        async with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            self._users = 0
            await self.hub.close()
            await self.dispatcher.close()
            if self.own_resources:
                await self.broker.close()
                await self.store.close()

    async def readiness(self) -> dict[str, Any]:
        """Whether the store and NATS answer (for ``/readyz``)."""
        checks: dict[str, Any] = {}
        try:
            checks["head_seq"] = await self.store.head_seq()
            checks["store"] = "ok"
        except Exception as e:
            checks["store"] = type(e).__name__
        connected = getattr(self.broker, "is_connected", True)
        checks["nats"] = "ok" if connected else "disconnected"
        checks["ready"] = checks["store"] == "ok" and checks["nats"] == "ok"
        return checks
