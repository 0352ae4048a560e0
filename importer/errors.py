"""Typed importer errors with stable codes.

Every error the importer raises derives from :class:`ImporterError` and carries a stable
``code`` (``importer.<family>.<what>``, never renamed) that logs, the dead-letter list, the
reject report and the CLI show. The Dynamics client translates httpx exceptions and Web API
error bodies here at the boundary (``raise ... from e``); nothing from httpx leaks out.
"""

from __future__ import annotations

from typing import ClassVar


class ImporterError(Exception):
    """Base class of every importer error."""

    code: ClassVar[str] = "importer.error"

    def __init__(self, message: str = "") -> None:
        self.message = message
        super().__init__(f"{self.code}: {message}" if message else self.code)


# ------------------------------------------------------------------ configuration


class ImporterConfigError(ImporterError):
    """The importer configuration is invalid (raised when it is loaded)."""

    code = "importer.config_invalid"


# ------------------------------------------------------------------ Dynamics Web API


class DynamicsError(ImporterError):
    """A Dynamics Web API call failed."""

    code = "importer.dynamics.error"

    def __init__(
        self,
        message: str = "",
        *,
        status: int = 0,
        dynamics_code: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.dynamics_code = dynamics_code
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        """True when sending the same request again later may succeed."""
        return False


class AuthenticationError(DynamicsError):
    """No access token could be obtained, or Dynamics refused it twice in a row."""

    code = "importer.dynamics.auth_failed"


class TransportError(DynamicsError):
    """The connection failed or timed out before Dynamics answered."""

    code = "importer.dynamics.transport"

    @property
    def retryable(self) -> bool:
        """Connection problems are transient."""
        return True


class ThrottledError(DynamicsError):
    """429: a service protection limit was hit (``Retry-After`` says when to come back)."""

    code = "importer.dynamics.throttled"

    @property
    def retryable(self) -> bool:
        """Throttling ends."""
        return True


class ServerError(DynamicsError):
    """5xx: the service is busy or unavailable."""

    code = "importer.dynamics.server_error"

    @property
    def retryable(self) -> bool:
        """Busy servers recover."""
        return True


class BadRequestError(DynamicsError):
    """400: Dynamics rejected the request (bad column, bad value, unsupported query)."""

    code = "importer.dynamics.bad_request"


class RecordNotFoundError(DynamicsError):
    """404: the record (or entity set) does not exist."""

    code = "importer.dynamics.not_found"


class PreconditionFailedError(DynamicsError):
    """412: ``If-Match`` met a newer row version, or ``If-None-Match: *`` met an existing row."""

    code = "importer.dynamics.precondition_failed"


class DuplicateRecordError(DynamicsError):
    """A create met an existing record with the same key."""

    code = "importer.dynamics.duplicate"


class DeltaTokenExpiredError(DynamicsError):
    """The change-tracking token is older than the retention: a full sync is required."""

    code = "importer.dynamics.delta_token_expired"


class UnexpectedResponseError(DynamicsError):
    """Dynamics answered with a status or body the client does not understand."""

    code = "importer.dynamics.unexpected_response"


class BatchFormatError(DynamicsError):
    """A ``$batch`` request could not be built or its multipart response not parsed."""

    code = "importer.dynamics.batch_format"


# ------------------------------------------------------------------ mapping


class MappingError(ImporterError):
    """A Dynamics row or one of our records cannot be translated to the other side."""

    code = "importer.mapping.invalid"


# ------------------------------------------------------------------ publishing and state


class PublishError(ImporterError):
    """Changes could not be handed to the applier (NATS)."""

    code = "importer.publish_failed"


class StateCorruptError(ImporterError):
    """A stored checkpoint, token or dead letter cannot be decoded."""

    code = "importer.state_corrupt"


class DeadLetterNotFoundError(ImporterError):
    """No dead letter with that id."""

    code = "importer.dead_letter_not_found"


# ------------------------------------------------------------------ file import


class FileImportError(ImporterError):
    """A file cannot be imported at all (as opposed to single bad rows)."""

    code = "importer.file.error"


class UnsupportedFileFormatError(FileImportError):
    """The file is neither CSV nor JSONL."""

    code = "importer.file.unsupported_format"


class FileHeaderError(FileImportError):
    """The header names unknown columns, repeats one, or lacks the record id."""

    code = "importer.file.bad_header"


class FileReadError(FileImportError):
    """The file cannot be read or decoded (missing, not UTF-8)."""

    code = "importer.file.unreadable"


# ------------------------------------------------------------------ reconcile


class ReconcileError(ImporterError):
    """Reconciliation could not complete."""

    code = "importer.reconcile.failed"
