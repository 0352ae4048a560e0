"""Typed errors of the Dynamics 365 Web API emulator.

Two families:

* :class:`ODataError` and its subclasses are *service* errors: the emulator turns them into the
  Dataverse error body ``{"error":{"code":"0x...","message":"..."}}`` with the HTTP status the real
  service uses. ``hex_code`` is the Dataverse error code, ``code`` a stable emulator string code.
* :class:`EmulatorConfigError` is raised when a configuration cannot be loaded; it never reaches
  HTTP.

The message texts of the documented errors are copied from the Dataverse documentation so that
clients matching on them behave as they would against the real service.
"""

from __future__ import annotations


class EmulatorError(Exception):
    """Base class of every emulator error."""

    code: str = "dynamics_emulator.error"


class EmulatorConfigError(EmulatorError):
    """The emulator configuration (env vars or arguments) is invalid."""

    code = "dynamics_emulator.config_invalid"


class ODataError(EmulatorError):
    """An error the Web API reports to its caller as a Dataverse error body."""

    code = "dynamics_emulator.odata_error"
    status: int = 400
    hex_code: str = "0x80040216"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        hex_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if hex_code is not None:
            self.hex_code = hex_code
        self.headers: dict[str, str] = dict(headers or {})


class BadRequestError(ODataError):
    """A query option, URL or header the service rejects (400)."""

    code = "dynamics_emulator.bad_request"
    status = 400
    hex_code = "0x80060888"


class PayloadError(ODataError):
    """The request body is not valid JSON or names unknown or mistyped properties (400)."""

    code = "dynamics_emulator.invalid_payload"
    status = 400
    hex_code = "0x80048d19"


class ValidationError(ODataError):
    """A value breaks a column rule such as its maximum length (400)."""

    code = "dynamics_emulator.validation_failed"
    status = 400
    hex_code = "0x80044331"


class InvalidArgumentError(ODataError):
    """A value is well-formed but not allowed, e.g. an unknown option set value (400)."""

    code = "dynamics_emulator.invalid_argument"
    status = 400
    hex_code = "0x80040203"


class ResourceNotFoundError(ODataError):
    """The URL names an entity set or segment that does not exist (404)."""

    code = "dynamics_emulator.resource_not_found"
    status = 404
    hex_code = "0x8006088a"

    def __init__(self, segment: str) -> None:
        super().__init__(f"Resource not found for the segment '{segment}'.")


class RecordNotFoundError(ODataError):
    """The addressed record does not exist (404)."""

    code = "dynamics_emulator.record_not_found"
    status = 404
    hex_code = "0x80040217"

    def __init__(self, logical_name: str, record_id: str) -> None:
        super().__init__(f"{logical_name} With Id = {record_id} Does Not Exist")


class VersionMismatchError(ODataError):
    """``If-Match`` carried an ETag that is no longer the record's version (412)."""

    code = "dynamics_emulator.version_mismatch"
    status = 412
    hex_code = "0x80060882"

    def __init__(self) -> None:
        super().__init__(
            "The version of the existing record doesn't match the RowVersion property provided."
        )


class DuplicateRecordError(ODataError):
    """A create addressed a key that already exists (412)."""

    code = "dynamics_emulator.duplicate_record"
    status = 412
    hex_code = "0x80040237"

    def __init__(self) -> None:
        super().__init__("A record with matching key values already exists.")


class ExpiredVersionStampError(ODataError):
    """A delta token is older than the change-tracking retention window."""

    code = "dynamics_emulator.expired_version_stamp"
    hex_code = "0x80044352"

    def __init__(self, status: int) -> None:
        super().__init__(
            "Version stamp associated with the client has expired. Please perform a full sync.",
            status=status,
        )


class ChangeTrackingQueryError(BadRequestError):
    """A query option that change tracking does not allow was combined with it (400)."""

    code = "dynamics_emulator.change_tracking_query_option"

    def __init__(self, option: str) -> None:
        super().__init__(
            f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.'
        )


class AuthenticationError(ODataError):
    """The bearer token is missing, malformed or expired (401)."""

    code = "dynamics_emulator.unauthenticated"
    status = 401
    hex_code = "0x80040220"


class ServiceProtectionError(ODataError):
    """A service protection limit was exceeded (429)."""

    code = "dynamics_emulator.service_protection_limit"
    status = 429


class InjectedFaultError(ODataError):
    """A fault injected on purpose (503/500) to exercise client retry logic."""

    code = "dynamics_emulator.injected_fault"


class MethodNotAllowedError(ODataError):
    """The HTTP method is not supported on this resource (405)."""

    code = "dynamics_emulator.method_not_allowed"
    status = 405
    hex_code = "0x80060888"
