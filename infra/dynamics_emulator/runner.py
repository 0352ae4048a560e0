"""Run the emulator with uvicorn (uvloop + httptools) in the foreground.

``run(config)`` is what ``python -m infra.dynamics_emulator`` and the ``crmsync emulator`` CLI
call; :class:`EmulatorServer` runs it in a background thread for tests and benchmarks.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from infra.dynamics_emulator.app import create_app
from infra.dynamics_emulator.clock import Clock
from infra.dynamics_emulator.config import EmulatorConfig
from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.errors import EmulatorError


class EmulatorServerError(EmulatorError):
    """The background emulator server did not start in time."""

    code = "dynamics_emulator.server_start_failed"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _uvicorn_config(config: EmulatorConfig, port: int, clock: Clock | None) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config, clock=clock),
        host=config.host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


def run(config: EmulatorConfig) -> None:
    """Serve the emulator until interrupted, printing its URLs first.

    Args:
        config: The configuration (``port`` 0 picks a free port).
    """
    port = config.port or free_port(config.host)
    server = uvicorn.Server(_uvicorn_config(config, port, None))
    url = f"http://{config.host}:{port}"
    print(
        f"Dynamics 365 Web API emulator: {url}/api/data/v9.2/ "
        f"(token endpoint {url}/<tenant>/oauth2/v2.0/token, control {url}/_emulator/health)",
        flush=True,
    )
    server.run()


class EmulatorServer:
    """The emulator on a real uvicorn server in a background thread.

    Use as a context manager; ``url`` is the server root and ``emulator`` the live state::

        with EmulatorServer(EmulatorConfig(port=0)) as server:
            httpx.get(f"{server.url}/_emulator/health")
    """

    def __init__(self, config: EmulatorConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.port = config.port or free_port(config.host)
        self._server = uvicorn.Server(_uvicorn_config(config, self.port, clock))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def emulator(self) -> Emulator:
        """The running emulator's state."""
        app: Any = self._server.config.app
        emulator: Emulator = app.state.emulator
        return emulator

    def start(self, timeout: float = 10.0) -> None:
        """Start serving and wait until the server accepts connections.

        Raises:
            EmulatorServerError: The server did not start before ``timeout``.
        """
        self._thread = threading.Thread(
            target=self._server.run, name="dynamics-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise EmulatorServerError(f"emulator did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and wait for its thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
