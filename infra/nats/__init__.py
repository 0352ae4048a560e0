"""Local nats-server launcher (JetStream) and the production cluster configuration example."""

from infra.nats.errors import (
    NatsServerError,
    NatsServerNotFoundError,
    NatsServerReadyTimeoutError,
    NatsServerStartError,
    NatsServerStateError,
)
from infra.nats.server import NatsServer, find_nats_server_binary, free_port

__all__ = [
    "NatsServer",
    "NatsServerError",
    "NatsServerNotFoundError",
    "NatsServerReadyTimeoutError",
    "NatsServerStartError",
    "NatsServerStateError",
    "find_nats_server_binary",
    "free_port",
]
