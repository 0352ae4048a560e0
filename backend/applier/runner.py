"""Running an applier process: settings, start-up, signals, graceful stop.

``crmsync applier`` (or ``python -m backend.applier``) loads the same configuration as the
gateway (``crmsync.toml`` / ``$CRMSYNC_CONFIG`` plus environment variables), so both agree
on the sync rules, the allowed clock skew and the store; applier-only settings come from
``CRMSYNC_APPLIER_*`` variables (:class:`~backend.applier.config.ApplierConfig`).

SIGINT or SIGTERM stops the consumer loops after the batch in hand (handled and acked),
then closes NATS and the store; a second signal exits at once (unacked messages are
redelivered to another applier).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from backend.applier.config import ENV_PREFIX, ApplierConfig
from backend.applier.metrics import ApplierMetrics
from backend.applier.service import Applier
from backend.applier.worker import ApplierWorker
from backend.config import load_config
from backend.messaging.broker import NatsBroker
from backend.messaging.config import NatsConfig
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from sync_protocol.default_rules import default_rules
from sync_protocol.rules import SyncRules, parse_rules

logger = logging.getLogger("crmsync.applier")


@dataclass(frozen=True, slots=True)
class ApplierSettings:
    """Everything an applier process needs.

    Attributes:
        nats: NATS connection and stream settings.
        store: The record store.
        applier: Merge, consumer and compaction settings.
        rules: The sync rules.
        metrics_port: Serve Prometheus metrics on this port (``None``: not served).
        log_level: Root log level.
        log_json: JSON logs (else text for a terminal).
    """

    nats: NatsConfig
    store: StoreConfig
    applier: ApplierConfig
    rules: SyncRules
    metrics_port: int | None = None
    log_level: str = "INFO"
    log_json: bool = True


def load_rules(path: str | None) -> SyncRules:
    """The sync rules from a TOML file, or the built-in default rules.

    Raises:
        RulesError: The file is not valid rules (the message names the key).
        OSError: The file cannot be read.
    """
    if not path:
        return default_rules()
    return parse_rules(Path(path).read_text(encoding="utf-8"), path)


def load_settings(
    config_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    metrics_port: int | None = None,
) -> ApplierSettings:
    """Load the applier's settings from the shared configuration.

    The clock-skew bound follows ``gateway.max_clock_skew_ms`` and tombstone retention
    follows the store's ``max_offline_age`` unless ``CRMSYNC_APPLIER_MAX_SKEW_MS`` or
    ``CRMSYNC_APPLIER_TOMBSTONE_RETENTION_MS`` say otherwise.

    Raises:
        ConfigError, ApplierConfigError, StoreConfigError, RulesError: invalid settings.
    """
    env = os.environ if environ is None else environ
    shared = load_config(config_path, env)
    store = shared.store if isinstance(shared.store, StoreConfig) else StoreConfig.from_env(env)
    applier = ApplierConfig.from_env(env)
    overrides: dict[str, int] = {}
    if ENV_PREFIX + "MAX_SKEW_MS" not in env:
        overrides["max_skew_ms"] = shared.gateway.max_clock_skew_ms
    if ENV_PREFIX + "TOMBSTONE_RETENTION_MS" not in env:
        overrides["tombstone_retention_ms"] = store.max_offline_age_ms
    return ApplierSettings(
        nats=shared.nats,
        store=store,
        applier=applier.with_overrides(**overrides),
        rules=load_rules(shared.gateway.rules_file),
        metrics_port=metrics_port,
        log_level=shared.gateway.log_level,
        log_json=shared.gateway.log_json,
    )


async def serve(
    settings: ApplierSettings,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Applier], None] | None = None,
) -> None:
    """Run one applier until ``stop`` is set: open the store, connect, consume, close.

    Args:
        settings: The settings.
        stop: Set it to stop gracefully.
        on_ready: Called once the consumers are about to start (tests, the devstack).
    """
    store = create_store(settings.store)
    await store.start()
    broker = NatsBroker(settings.nats.with_overrides(connection_name="crmsync-applier"))
    try:
        await broker.connect()
        metrics = ApplierMetrics()
        if settings.metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port, registry=metrics.registry)
        applier = Applier(store, broker, settings.rules, config=settings.applier, metrics=metrics)
        worker = ApplierWorker(applier, broker)
        if on_ready is not None:
            on_ready(applier)
        logger.info("applier consuming (pid %d)", os.getpid())
        await worker.run(stop)
    finally:
        await broker.close()
        await store.close()
        logger.info("applier stopped")


def install_stop_signals(stop: asyncio.Event) -> None:
    """First SIGINT/SIGTERM sets ``stop``; a second one exits immediately."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            logger.warning("second signal: exiting without waiting")
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)


def run(settings: ApplierSettings) -> int:
    """Run an applier process in the foreground until SIGINT/SIGTERM.

    Returns:
        The process exit code.
    """
    from backend.observability import configure_logging

    configure_logging(settings.log_level, json_logs=settings.log_json)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve(settings, stop)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep a plain fallback
        asyncio.run(main())
    return 0
