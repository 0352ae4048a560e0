"""Run a local JetStream nats-server in the foreground: ``python -m infra.nats [--port N]``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from pathlib import Path

from infra.nats.server import NatsServer


def main(argv: list[str] | None = None) -> int:
    """Start a server, print its URLs, and stop it on Ctrl-C or SIGTERM.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m infra.nats", description=__doc__)
    parser.add_argument("--port", type=int, default=4222, help="client port (-1: any free)")
    parser.add_argument("--http-port", type=int, default=8222, help="monitoring port")
    parser.add_argument("--store-dir", type=Path, default=Path("var/nats"), help="JetStream data")
    parser.add_argument("--config", type=Path, default=None, help="nats-server config file")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = NatsServer(
        port=None if args.port < 0 else args.port,
        http_port=args.http_port,
        store_dir=args.store_dir,
        config_file=args.config,
    )
    with server:
        print(f"nats-server ready: {server.url} (monitoring {server.monitoring_url})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
