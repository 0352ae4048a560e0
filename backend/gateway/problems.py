"""The one place errors become HTTP: ``application/problem+json`` with a stable code.

Every exception that leaves a handler (protocol, store, messaging, auth and gateway
errors, Litestar's own validation/404/405/413 errors, and anything unexpected) is
classified into a stable ``code`` and an HTTP status, and answered as an RFC 9457
problem whose ``detail`` is the code's message in the caller's language
(``Accept-Language``). Unexpected exceptions become a 500 ``internal_error`` with no
trace in the body. Messages never carry record data, so an error about a record outside
the caller's scope reveals nothing about it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from backend.auth.errors import AuthError, DeviceRevokedError
from backend.messaging.errors import MessagingError
from backend.messaging.errors import PayloadTooLargeError as MessageTooLargeError
from backend.observability import Metrics
from backend.store.errors import StoreError
from sync_protocol.errors import PayloadError, ProtocolError, RulesError, SchemaError
from sync_protocol.messages import message, negotiate_language

from .errors import GatewayError, InvalidParameterError

logger = logging.getLogger("crmsync.gateway")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:crmsync:problem:"


class MutationProblem(msgspec.Struct, kw_only=True):
    """Why one mutation of a refused changeset was refused (no record data)."""

    index: int
    code: str


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem document.

    Attributes:
        type: ``urn:crmsync:problem:<code>``.
        title: the code's message in English (stable, for logs and developers).
        status: the HTTP status.
        code: the stable error code clients branch on.
        detail: the message in the caller's language.
        reason: for errors about the caller's own input only: which part was wrong.
        wipe: the device was revoked and must crypto-shred its replica.
        errors: per-mutation codes when a whole changeset is refused.
    """

    type: str
    title: str
    status: int
    code: str
    detail: str
    reason: str | None = None
    wipe: bool = False
    errors: list[MutationProblem] = []


@dataclass(frozen=True, slots=True)
class Classified:
    """An exception reduced to what the client may see."""

    code: str
    status: int
    reason: str | None = None
    wipe: bool = False
    errors: list[MutationProblem] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


_HTTP_CODES = {
    400: "invalid_payload",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}


def classify(exc: BaseException) -> Classified:
    """Map any exception to its stable code, status and client-safe extras."""
    if isinstance(exc, AuthError):
        headers = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return Classified(
            exc.code, exc.status, wipe=isinstance(exc, DeviceRevokedError), headers=headers
        )
    if isinstance(exc, RulesError) and exc.status >= 500:
        return Classified("internal_error", 500)
    if isinstance(exc, ProtocolError):
        own_input = isinstance(exc, PayloadError | SchemaError)
        raw_errors = exc.params.get("errors")
        errors: list[Any] = raw_errors if isinstance(raw_errors, list) else []
        return Classified(
            exc.code,
            exc.status,
            reason=exc.detail[:300] if own_input and exc.detail else None,
            errors=[e for e in errors if isinstance(e, MutationProblem)],
        )
    if isinstance(exc, GatewayError):
        reason = exc.detail[:300] if isinstance(exc, InvalidParameterError) else None
        headers = {str(k): str(v) for k, v in exc.params.get("headers", {}).items()}
        return Classified(exc.code, exc.status, reason=reason, headers=headers)
    if isinstance(exc, StoreError):
        if exc.status >= 500:
            return Classified("service_unavailable", 503, headers={"Retry-After": "5"})
        return Classified(exc.code, exc.status)
    if isinstance(exc, MessageTooLargeError):
        return Classified("payload_too_large", 413)
    if isinstance(exc, MessagingError):
        return Classified("service_unavailable", 503, headers={"Retry-After": "5"})
    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status >= 500:
            return Classified("internal_error", 500)
        reason = None
        if isinstance(exc, ValidationException):
            reason = _validation_reason(exc)
        exc_headers = exc.headers or {}
        headers = {k: v for k, v in exc_headers.items() if k.lower() == "allow"}
        return Classified(
            _HTTP_CODES.get(status, "invalid_payload"), status, reason, headers=headers
        )
    return Classified("internal_error", 500)


def _validation_reason(exc: ValidationException) -> str:
    extra: Any = exc.extra
    if isinstance(extra, list):
        parts = []
        for item in extra[:5]:
            if isinstance(item, dict):
                where = item.get("source", "")
                key = item.get("key", "")
                parts.append(f"{where} {key}: {item.get('message', '')}".strip())
        if parts:
            return "; ".join(parts)[:300]
    return str(exc.detail)[:300]


def problem_for(exc: BaseException, language: str) -> tuple[Problem, dict[str, str]]:
    """The problem document (and extra headers) for ``exc`` in ``language``."""
    c = classify(exc)
    problem = Problem(
        type=PROBLEM_TYPE_PREFIX + c.code,
        title=message(c.code, "en"),
        status=c.status,
        code=c.code,
        detail=message(c.code, language),
        reason=c.reason,
        wipe=c.wipe,
        errors=c.errors,
    )
    return problem, c.headers


_encode = msgspec.json.Encoder().encode


def problem_response(
    request: Request[Any, Any, Any], exc: Exception, metrics: Metrics | None = None
) -> Response[bytes]:
    """The ``application/problem+json`` response for ``exc``."""
    language = negotiate_language(request.headers.get("accept-language"))
    problem, headers = problem_for(exc, language)
    if problem.status >= 500:
        logger.error(
            "request failed: %s %s -> %s (%s)",
            request.method,
            request.scope.get("path_template", "?"),
            problem.code,
            type(exc).__name__,
            exc_info=problem.code == "internal_error",
        )
    if metrics is not None:
        metrics.errors.labels(problem.code, str(problem.status)).inc()
        if isinstance(exc, AuthError) and exc.status == 401:
            metrics.auth_failures.labels(problem.code).inc()
    return Response(
        content=_encode(problem),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={"Content-Language": language, "Cache-Control": "no-store", **headers},
    )


def exception_handlers(metrics: Metrics | None) -> dict[type[Exception] | int, Any]:
    """The app's whole exception-handler map: one handler for everything."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        return problem_response(request, exc, metrics)

    return {Exception: handle}


__all__ = ["PROBLEM_MEDIA_TYPE", "Problem", "classify", "exception_handlers"]
