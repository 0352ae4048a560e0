"""Gateway errors with stable codes, beside the protocol, store, messaging and auth ones.

Every error the gateway raises carries ``code`` (stable, snake_case; the key of its
message in :mod:`sync_protocol.messages` where one exists) and the HTTP ``status``;
:mod:`backend.gateway.problems` turns any of them into ``application/problem+json``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of the gateway's own errors."""

    code: ClassVar[str] = "protocol_error"
    status: ClassVar[int] = 400

    def __init__(self, detail: str = "", **params: Any) -> None:
        self.detail = detail
        self.params = params
        super().__init__(f"{self.code}: {detail}" if detail else self.code)


class NotFoundError(GatewayError):
    """Nothing here for the caller: unknown, or not in the caller's scope (same answer)."""

    code = "not_found"
    status = 404


class InvalidParameterError(GatewayError):
    """A query or path parameter is malformed."""

    code = "invalid_payload"
    status = 400


class BlobHashMismatchError(GatewayError):
    """The uploaded bytes do not hash to the sha256 in the URL."""

    code = "blob_hash_mismatch"
    status = 422


class BlobExistsError(GatewayError):
    """The same content is already attached to another record."""

    code = "blob_exists"
    status = 409


class ServiceUnavailableError(GatewayError):
    """A dependency (store, NATS) is not ready."""

    code = "service_unavailable"
    status = 503


class TooManyConnectionsError(GatewayError):
    """The process holds as many WebSocket connections as it is configured for."""

    code = "rate_limited"
    status = 429
