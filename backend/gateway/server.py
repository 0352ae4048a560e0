"""Serving the gateway: the sync app and the admin app in one uvloop process.

``python -m backend.gateway`` (or the ``crmsync gateway`` command) loads the shared
configuration, opens the store and NATS once, and serves the sync API on
``gateway.port`` and the admin API and metrics on ``gateway.admin_port``. SIGINT or
SIGTERM stops both servers gracefully (open requests finish, then the runtime closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Generator
from pathlib import Path

import uvicorn
import uvloop

from backend.admin.app import create_admin_app
from backend.config import CrmsyncConfig, load_config
from backend.messaging.broker import NatsBroker
from backend.observability import configure_logging
from backend.store.factory import create_store

from .app import create_app

logger = logging.getLogger("crmsync.gateway")

WS_PING_INTERVAL_S = 60.0
"""Keepalive pings on event sockets: often enough to keep NAT mappings, rarely enough that
10,000 idle sockets cost little."""

ReadyCallback = Callable[[int, int], None]
"""Called with the bound sync and admin ports once both servers listen."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bound_port(server: uvicorn.Server) -> int:
    for s in getattr(server, "servers", []):
        for sock in s.sockets:
            port: int = sock.getsockname()[1]
            return port
    return 0


async def serve(
    config: CrmsyncConfig,
    *,
    stop: asyncio.Event | None = None,
    on_ready: ReadyCallback | None = None,
) -> None:
    """Serve both apps until ``stop`` is set (or a signal arrives).

    Args:
        config: the loaded configuration.
        stop: set it to shut down; SIGINT/SIGTERM set it too.
        on_ready: told the bound ports once both servers listen.
    """
    gw = config.gateway
    stop = stop or asyncio.Event()
    store = create_store(config.store)
    broker = NatsBroker(config.nats.with_overrides(connection_name="crmsync-gateway"))
    app = create_app(gw, store, broker)
    admin = create_admin_app(app.state.runtime)
    servers = [
        _Server(
            uvicorn.Config(
                app,
                host=gw.host,
                port=gw.port,
                loop="none",
                lifespan="on",
                access_log=False,
                log_config=None,
                proxy_headers=True,
                timeout_graceful_shutdown=10,
                # The sans-I/O implementation keeps an idle socket to one task and a
                # timer; pokes are a few bytes, so per-message deflate would only cost
                # each socket two zlib contexts (tens of KB).
                ws="websockets-sansio",
                ws_per_message_deflate=False,
                ws_ping_interval=WS_PING_INTERVAL_S,
                ws_ping_timeout=WS_PING_INTERVAL_S,
            )
        ),
        _Server(
            uvicorn.Config(
                admin,
                host=gw.admin_host,
                port=gw.admin_port,
                loop="none",
                lifespan="on",
                access_log=False,
                log_config=None,
                timeout_graceful_shutdown=5,
            )
        ),
    ]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(s.serve()) for s in servers]

    async def announce() -> None:
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                return
            await asyncio.sleep(0.02)
        ports = (_bound_port(servers[0]), _bound_port(servers[1]))
        logger.info("gateway listening: sync :%d, admin :%d", *ports)
        if on_ready is not None:
            on_ready(*ports)

    announcer = asyncio.create_task(announce())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        announcer.cancel()
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    if not all(s.started for s in servers):
        raise SystemExit("gateway failed to start (see the log above)")


def run(config: CrmsyncConfig) -> int:
    """Serve on uvloop until a signal stops it; returns the process exit code."""
    configure_logging(config.gateway.log_level, json_logs=config.gateway.log_json)
    uvloop.run(serve(config))
    return 0


def main(config_path: str | Path | None = None) -> int:
    """Load the configuration and serve (the ``crmsync gateway`` command)."""
    return run(load_config(config_path))
