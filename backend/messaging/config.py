"""Messaging configuration: one frozen value, validated when it is built."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from backend.messaging.errors import MessagingConfigError

ENV_PREFIX = "CRMSYNC_NATS_"
_URL_SCHEMES = ("nats://", "tls://", "ws://", "wss://")
_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class NatsConfig:
    """How to reach NATS and how to shape the JetStream streams and consumers.

    Durations are in seconds (float).

    Attributes:
        servers: Server URLs (a cluster's seed list); the client shuffles and fails over.
        user: Optional user name (with ``password``).
        password: Optional password.
        token: Optional auth token (instead of user/password).
        creds_file: Optional NATS ``.creds`` file (JWT + nkey), for operator-mode clusters.
        connection_name: Name shown in the server's connection monitoring.
        connect_timeout: Timeout of one TCP/TLS connect attempt.
        initial_connect_timeout: Deadline for the first successful connect; past it
            :meth:`NatsBroker.connect` fails instead of retrying forever.
        reconnect_time_wait: Pause between reconnect attempts to the same server.
        max_reconnect_attempts: Reconnect attempts per server after a connection was lost;
            ``-1`` retries forever (services should survive a rolling cluster restart).
        request_timeout: Default timeout of JetStream API calls, publishes and requests.
        stream_replicas: Replicas of every stream (1 for one server, 3 in production).
        max_age: How long the work streams keep messages (they use limits retention, so
            an operator can replay or recover a message by sequence within this window).
        dead_letter_max_age: How long the dead-letter stream keeps messages.
        duplicate_window: JetStream de-duplication window for ``Nats-Msg-Id``: a changeset
            pushed twice within it is stored once. This is the push idempotency window.
        max_msg_size: Largest message a stream accepts, in bytes.
        ack_wait: Consumer ack deadline; an unacked message is redelivered after it.
        max_deliver: Deliveries before a consumer gives up on a message and dead-letters it.
        nak_delay: Delay before a message whose handler failed is redelivered.
        max_ack_pending: Unacked messages a consumer may have out across all its workers.
    """

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | None = None
    connection_name: str = "crmsync"
    connect_timeout: float = 2.0
    initial_connect_timeout: float = 10.0
    reconnect_time_wait: float = 2.0
    max_reconnect_attempts: int = -1
    request_timeout: float = 5.0
    stream_replicas: int = 1
    max_age: float = 7 * _DAY
    dead_letter_max_age: float = 30 * _DAY
    duplicate_window: float = 120.0
    max_msg_size: int = 1024 * 1024
    ack_wait: float = 30.0
    max_deliver: int = 5
    nak_delay: float = 1.0
    max_ack_pending: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.servers, str):
            object.__setattr__(self, "servers", (self.servers,))
        object.__setattr__(self, "servers", tuple(self.servers))
        if not self.servers:
            raise MessagingConfigError("servers: at least one NATS URL is required")
        for url in self.servers:
            if not url.startswith(_URL_SCHEMES):
                raise MessagingConfigError(
                    f"servers: {url!r} must start with one of {', '.join(_URL_SCHEMES)}"
                )
        if (self.user is None) != (self.password is None):
            raise MessagingConfigError("user and password must be set together")
        if self.token is not None and self.user is not None:
            raise MessagingConfigError("set either token or user/password, not both")
        for name in (
            "connect_timeout",
            "initial_connect_timeout",
            "reconnect_time_wait",
            "request_timeout",
            "max_age",
            "dead_letter_max_age",
            "duplicate_window",
            "ack_wait",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise MessagingConfigError(f"{name} must be a positive number of seconds")
        if not math.isfinite(self.nak_delay) or self.nak_delay < 0:
            raise MessagingConfigError("nak_delay must be zero or a positive number of seconds")
        if self.duplicate_window > self.max_age:
            raise MessagingConfigError("duplicate_window cannot be longer than max_age")
        if not 1 <= self.stream_replicas <= 5:
            raise MessagingConfigError("stream_replicas must be between 1 and 5")
        if self.max_msg_size <= 0:
            raise MessagingConfigError("max_msg_size must be a positive number of bytes")
        if self.max_deliver == 0 or self.max_deliver < -1:
            raise MessagingConfigError("max_deliver must be >= 1, or -1 for unlimited")
        if self.max_ack_pending <= 0:
            raise MessagingConfigError("max_ack_pending must be positive")
        if self.max_reconnect_attempts < -1:
            raise MessagingConfigError("max_reconnect_attempts must be >= 0, or -1 for forever")

    @property
    def url(self) -> str:
        """The first server URL (for logs and single-server set-ups)."""
        return self.servers[0]

    def with_overrides(self, **changes: Any) -> NatsConfig:
        """Return a copy with some fields changed (validated again).

        Args:
            **changes: Field names and new values.

        Returns:
            The new config.
        """
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> NatsConfig:
        """Build a config from ``CRMSYNC_NATS_*`` variables; unset ones keep their default.

        ``CRMSYNC_NATS_URL`` (or ``CRMSYNC_NATS_SERVERS``) is a comma-separated list; every
        other field is ``CRMSYNC_NATS_<FIELD>`` in upper case.

        Args:
            environ: The environment, e.g. ``os.environ``.

        Returns:
            The validated config.

        Raises:
            MessagingConfigError: A value cannot be parsed or is out of range.
        """
        values: dict[str, Any] = {}
        urls = environ.get(ENV_PREFIX + "URL") or environ.get(ENV_PREFIX + "SERVERS")
        if urls:
            values["servers"] = tuple(u.strip() for u in urls.split(",") if u.strip())
        for f in fields(cls):
            if f.name == "servers":
                continue
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            # Annotations are strings here (``from __future__ import annotations``).
            try:
                if f.type == "int":
                    values[f.name] = int(raw)
                elif f.type == "float":
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as e:
                raise MessagingConfigError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {f.type}"
                ) from e
        return cls(**values)
