"""Typed messaging errors with stable codes, and the one place nats-py exceptions are translated.

Callers match on the class or on ``code`` (a stable string, safe for logs, metrics and API
payloads); the message text is for humans. The NATS adapter never lets a nats-py exception
escape: :func:`translate_nats_error` maps it here and the adapter raises ``... from e``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import nats.errors
import nats.js.errors


class MessagingError(Exception):
    """Base class of every messaging error."""

    code: str = "messaging.error"


# ------------------------------------------------------------------ configuration and input


class MessagingConfigError(MessagingError):
    """The messaging configuration is invalid (raised when it is loaded)."""

    code = "messaging.config_invalid"


class SubjectTokenError(MessagingError):
    """A name cannot be turned into (or read back from) a NATS subject token."""

    code = "messaging.invalid_subject_token"


class InvalidNameError(MessagingError):
    """A stream or consumer name contains characters NATS does not accept."""

    code = "messaging.invalid_name"


# ------------------------------------------------------------------ connection


class NotConnectedError(MessagingError):
    """An operation needs a connection and the broker is not connected (or was closed)."""

    code = "messaging.not_connected"


class ConnectFailedError(MessagingError):
    """No NATS server could be reached before the connect deadline."""

    code = "messaging.connect_failed"


class AuthFailedError(MessagingError):
    """The NATS server refused our credentials or permissions."""

    code = "messaging.auth_failed"


class ConnectionLostError(MessagingError):
    """The connection closed or went stale while an operation was in flight."""

    code = "messaging.connection_lost"


# ------------------------------------------------------------------ operations


class BrokerTimeoutError(MessagingError):
    """The server (or a responder) did not answer in time."""

    code = "messaging.timeout"


class NoRespondersError(MessagingError):
    """A core request found nobody subscribed to answer it."""

    code = "messaging.no_responders"


class NoStreamError(MessagingError):
    """A JetStream publish matched no stream (streams not ensured, or a wrong subject)."""

    code = "messaging.no_stream"


class PayloadTooLargeError(MessagingError):
    """A message is larger than the server or stream allows."""

    code = "messaging.payload_too_large"


class InvalidSubjectError(MessagingError):
    """A subject was rejected by the client or the server."""

    code = "messaging.invalid_subject"


class StreamNotFoundError(MessagingError):
    """A stream or consumer named in a request does not exist."""

    code = "messaging.not_found"


class StreamConfigConflictError(MessagingError):
    """A stream or consumer exists with a configuration that cannot be updated to ours."""

    code = "messaging.config_conflict"


class DeliveryLimitError(MessagingError):
    """A message reached max_deliver without an ack (its workers crashed or timed out)."""

    code = "messaging.max_deliveries_exceeded"


class JetStreamUnavailableError(MessagingError):
    """JetStream is not enabled or temporarily unavailable (no quorum, no leader)."""

    code = "messaging.jetstream_unavailable"


class JetStreamApiError(MessagingError):
    """Any other JetStream API error; ``err_code`` is the server's JetStream error code."""

    code = "messaging.jetstream_api"

    def __init__(self, message: str, *, err_code: int | None = None) -> None:
        super().__init__(message)
        self.err_code = err_code


# JetStream API error codes (nats-server ``server/errors.json``) that deserve their own type.
_JS_ERR_STREAM_NAME_IN_USE = 10058
_JS_ERR_MSG_TOO_LARGE = 10054
_JS_ERR_STREAM_UPDATE = 10052
_JS_ERR_NOT_ENABLED = (10039, 10076)


def translate_nats_error(error: BaseException) -> MessagingError:
    """Map a nats-py (or socket) exception to the matching :class:`MessagingError`.

    Args:
        error: The exception raised by nats-py.

    Returns:
        The typed error to raise ``from error``. Unknown exceptions become a plain
        :class:`MessagingError` with the original type in the message.
    """
    if isinstance(error, MessagingError):
        return error
    text = f"{type(error).__name__}: {error}"
    match error:
        case nats.js.errors.NoStreamResponseError():
            return NoStreamError("no stream matches the subject (are the streams ensured?)")
        case nats.js.errors.NotFoundError():
            return StreamNotFoundError(text)
        case nats.js.errors.ServiceUnavailableError():
            return JetStreamUnavailableError(text)
        case nats.js.errors.APIError():
            err_code = error.err_code
            if err_code == _JS_ERR_MSG_TOO_LARGE:
                return PayloadTooLargeError(text)
            if err_code in (_JS_ERR_STREAM_NAME_IN_USE, _JS_ERR_STREAM_UPDATE):
                return StreamConfigConflictError(text)
            if err_code in _JS_ERR_NOT_ENABLED:
                return JetStreamUnavailableError(text)
            return JetStreamApiError(text, err_code=err_code)
        case nats.errors.NoRespondersError():
            return NoRespondersError("no responders for the request")
        case nats.errors.AuthorizationError():
            return AuthFailedError(text)
        case nats.errors.MaxPayloadError():
            return PayloadTooLargeError(text)
        case nats.errors.BadSubjectError():
            return InvalidSubjectError(text)
        case nats.errors.ConnectionClosedError() | nats.errors.ConnectionDrainingError():
            return NotConnectedError(text)
        case nats.errors.StaleConnectionError() | nats.errors.ConnectionReconnectingError():
            return ConnectionLostError(text)
        case nats.errors.NoServersError():
            return ConnectFailedError(text)
        case nats.errors.TimeoutError() | asyncio.TimeoutError():
            return BrokerTimeoutError(f"timed out: {text}")
        case ConnectionError() | OSError():
            return ConnectionLostError(text)
    return MessagingError(text)


@contextlib.contextmanager
def mapped_nats_errors() -> Iterator[None]:
    """Re-raise any nats-py exception raised in the block as a :class:`MessagingError`.

    Raises:
        MessagingError: The translated error, chained to the original.
    """
    try:
        yield
    except MessagingError:
        raise
    except (TimeoutError, nats.errors.Error, OSError) as e:
        raise translate_nats_error(e) from e
