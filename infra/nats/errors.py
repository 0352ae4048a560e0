"""Typed errors for the local nats-server launcher.

Every error carries a stable string ``code`` that logs, tests and operators can match on;
the message text is for humans and may change.
"""

from __future__ import annotations


class NatsServerError(Exception):
    """Base class of every launcher error."""

    code: str = "nats_server.error"


class NatsServerNotFoundError(NatsServerError):
    """The nats-server binary is not installed where we look for it."""

    code = "nats_server.binary_not_found"


class NatsServerStartError(NatsServerError):
    """The nats-server process exited or refused its arguments while starting."""

    code = "nats_server.start_failed"


class NatsServerReadyTimeoutError(NatsServerError):
    """The nats-server process did not become ready before the deadline."""

    code = "nats_server.ready_timeout"


class NatsServerStateError(NatsServerError):
    """An operation was asked of a server in the wrong state (e.g. url before start)."""

    code = "nats_server.invalid_state"
