"""Composition of a running importer: settings, and one object that wires every part.

``crmsync importer run`` (and the tests, and the benchmark) build an
:class:`ImporterRuntime`: it opens the store and NATS, builds the Dynamics client, the
entity maps (with the organisation's missing columns and the sales-territory directory),
and the services: :class:`FullLoader`, :class:`ChangeTracker`, :class:`Writeback`,
:class:`Reconciler` and :class:`FileImporter`. :meth:`ImporterRuntime.run` then loads
what has not been loaded yet, and follows deltas and writes back device changes until
told to stop.

Settings come from the shared configuration (``crmsync.toml`` / ``$CRMSYNC_CONFIG``: the
``[nats]``, ``[store]`` and ``[importer]`` tables) and from ``CRMSYNC_DYNAMICS_*``
variables, which win.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from backend.messaging.broker import Broker, NatsBroker
from backend.messaging.config import NatsConfig
from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from sync_protocol.default_rules import default_rules
from sync_protocol.rules import SyncRules, parse_rules

from .config import ENV_PREFIX, ImporterConfig
from .dynamics.change_tracking import ChangeTracker
from .dynamics.client import DynamicsClient
from .dynamics.echo import EchoRegistry
from .dynamics.entity_maps import EntityMaps
from .dynamics.full_load import FullLoader, LoadStats
from .dynamics.mapping import DirectoryScope, NoScope, ScopeResolver
from .dynamics.row_diff import RowDiffer
from .dynamics.writeback import Writeback
from .errors import DynamicsError, ImporterConfigError
from .files.file_import import FileImporter
from .publisher import UpstreamPublisher
from .reconcile import Reconciler
from .state import StateStore

logger = logging.getLogger("crmsync.importer")


@dataclass(frozen=True, slots=True)
class ImporterSettings:
    """Everything an importer process needs.

    Attributes:
        importer: Dynamics connection and importer behaviour.
        nats: NATS connection.
        store: The record store (importer state lives there too).
        rules: Sync rules (conflict policies for writeback, channels for reconcile).
        log_level: Root log level.
        log_json: JSON logs.
    """

    importer: ImporterConfig
    nats: NatsConfig
    store: StoreConfig
    rules: SyncRules
    log_level: str = "INFO"
    log_json: bool = True


def importer_config_from(table: Mapping[str, Any], environ: Mapping[str, str]) -> ImporterConfig:
    """An :class:`ImporterConfig` from a TOML ``[importer]`` table and the environment.

    Raises:
        ImporterConfigError: Unknown keys or invalid values.
    """
    known = {f.name for f in fields(ImporterConfig)}
    unknown = set(table) - known
    if unknown:
        raise ImporterConfigError(f"importer: unknown keys {sorted(unknown)}")
    values = dict(table)
    if "entities" in values and isinstance(values["entities"], list):
        values["entities"] = tuple(values["entities"])
    from_env = ImporterConfig.from_env(environ)
    for f in fields(ImporterConfig):
        if ENV_PREFIX + f.name.upper() in environ or (
            f.name == "base_url" and ENV_PREFIX + "URL" in environ
        ):
            values[f.name] = getattr(from_env, f.name)
    try:
        return ImporterConfig(**values)
    except TypeError as e:
        raise ImporterConfigError(f"importer: {e}") from e


def load_settings(
    config_path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> ImporterSettings:
    """Load the importer's settings from the shared configuration and the environment.

    Raises:
        ConfigError, ImporterConfigError, RulesError: invalid settings.
    """
    from backend.config import CONFIG_ENV, DEFAULT_CONFIG_FILE, load_config

    env = os.environ if environ is None else environ
    shared = load_config(config_path, env)
    path = Path(config_path) if config_path else None
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = Path(DEFAULT_CONFIG_FILE)
    table: dict[str, Any] = {}
    if path is not None:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("importer", {})
    rules_file = shared.gateway.rules_file
    rules = (
        parse_rules(Path(rules_file).read_text(encoding="utf-8"), rules_file)
        if rules_file
        else default_rules()
    )
    return ImporterSettings(
        importer=importer_config_from(table, env),
        nats=shared.nats,
        store=shared.store,
        rules=rules,
        log_level=shared.gateway.log_level,
        log_json=shared.gateway.log_json,
    )


async def load_directory(client: DynamicsClient, scope: DirectoryScope) -> DirectoryScope:
    """Fill ``scope`` with Dynamics' sales territories and users (for territory/country).

    Raises:
        DynamicsError: The tables cannot be read.
    """
    url: str | None = client.query_url("territories", ["territoryid", "name"])
    while url is not None:
        page = await client.get_page(url)
        for row in page.value:
            if isinstance(row.get("territoryid"), str) and isinstance(row.get("name"), str):
                scope.add_territory(row["territoryid"], row["name"])
        url = page.next_link
    url = client.query_url(
        "systemusers", ["systemuserid", "_territoryid_value", "address1_country"]
    )
    while url is not None:
        page = await client.get_page(url)
        for row in page.value:
            user = row.get("systemuserid")
            if isinstance(user, str):
                scope.add_owner(user, row.get("_territoryid_value"), row.get("address1_country"))
        url = page.next_link
    return scope


class ImporterRuntime:
    """A wired importer (see the module docstring). Use it as an async context manager.

    Args:
        settings: The settings.
        store: An already started store to use instead of opening one (not closed here).
        broker: A connected broker to use instead of connecting (not closed here).
        transport: httpx transport for the Dynamics client (in-process emulator in tests).
        scope: Territory/country resolver; by default the directory is read from Dynamics.
    """

    def __init__(
        self,
        settings: ImporterSettings,
        *,
        store: RecordStore | None = None,
        broker: Broker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        scope: ScopeResolver | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.importer
        # httpx logs every request at INFO: far too much for a full load.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self._own_store = store is None
        self._own_broker = broker is None
        self.store: RecordStore = store if store is not None else create_store(settings.store)
        self.broker: Broker = (
            broker
            if broker is not None
            else NatsBroker(settings.nats.with_overrides(connection_name="crmsync-importer"))
        )
        self.client = DynamicsClient(self.config, transport=transport)
        self.state = StateStore(self.store)
        self._scope_given = scope is not None
        self.scope: ScopeResolver = scope if scope is not None else DirectoryScope()
        self.maps = EntityMaps(self.config.node, self.scope, self.state)
        self.publisher = UpstreamPublisher(
            self.broker,
            source=self.config.source,
            batch_mutations=self.config.batch_mutations,
            max_message_bytes=self.config.max_message_bytes,
        )
        self.file_publisher = UpstreamPublisher(
            self.broker,
            source="file",
            batch_mutations=self.config.batch_mutations,
            max_message_bytes=self.config.max_message_bytes,
        )
        self.echoes = EchoRegistry(self.state)
        self.differ = RowDiffer(self.store, self.echoes)
        self.loader = FullLoader(
            self.client, self.publisher, self.state, self.maps, self.config, differ=self.differ
        )
        self.reconciler = Reconciler(
            self.client, self.store, self.publisher, self.maps, settings.rules
        )
        self.tracker = ChangeTracker(self.loader, self.echoes, self.store, reconcile=self._repair)
        self.writeback = Writeback(
            self.client,
            self.state,
            self.store,
            self.maps,
            self.echoes,
            settings.rules,
            self.config,
            publisher=self.publisher,
        )
        self.files = FileImporter(self.state, self.file_publisher, batch_rows=1000)

    async def _repair(self, entity: str) -> None:
        await self.reconciler.reconcile(entity, repair=True)

    async def __aenter__(self) -> ImporterRuntime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self, *, dynamics: bool = True) -> None:
        """Open the store and NATS, load remembered state and the territory directory.

        Args:
            dynamics: Also read the directory from Dynamics (not needed for file imports).
        """
        if self._own_store:
            await self.store.start()
        if self._own_broker:
            await self.broker.connect()
        await self.broker.ensure_streams()
        await self.maps.load()
        await self.echoes.load()
        if dynamics and not self._scope_given and isinstance(self.scope, DirectoryScope):
            try:
                await load_directory(self.client, self.scope)
            except DynamicsError as e:
                # Territories or users unreadable (permissions): records keep only owners.
                logger.warning("sales-territory directory unavailable: %s", e.code)
                self.scope = NoScope()

    async def close(self) -> None:
        """Close what this runtime opened."""
        await self.client.close()
        if self._own_broker:
            await self.broker.close()
        if self._own_store:
            await self.store.close()

    async def full_load(
        self, entities: list[str] | None = None, *, restart: bool = False
    ) -> dict[str, LoadStats]:
        """Load ``entities`` (default: every configured one), resuming interrupted loads."""
        return await self.loader.load(entities, restart=restart)

    async def run(self, stop: asyncio.Event, *, writeback: bool = True) -> None:
        """Load, then follow deltas and write back device changes until ``stop`` is set."""
        # Done markers only matter while the outbound stream may redeliver their messages.
        horizon_ms = int((time.time() - self.settings.nats.max_age) * 1000)
        await self.writeback.prune_done(horizon_ms)
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(self._sync_forever(stop))]
        if writeback:
            tasks.append(asyncio.create_task(self.writeback.run(self.broker, stop)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    stop.set()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _sync_forever(self, stop: asyncio.Event) -> None:
        # ChangeTracker.sync finishes (or starts) the full load of an entity first.
        await self.tracker.run(stop)
