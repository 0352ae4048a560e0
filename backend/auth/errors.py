"""Authentication and device errors with stable codes (mapped to HTTP in one place).

Each class carries a stable ``code`` (the key of its message in
:mod:`sync_protocol.messages`) and the HTTP ``status`` the gateway answers with. Messages
never say *why* a token failed beyond "expired" versus "not valid": a probing client
learns nothing about the issuer, audience or keys the server expects.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AuthError(Exception):
    """Base of every authentication and device error."""

    code: ClassVar[str] = "unauthorized"
    status: ClassVar[int] = 401

    def __init__(self, detail: str = "", **params: Any) -> None:
        self.detail = detail
        self.params = params
        super().__init__(f"{self.code}: {detail}" if detail else self.code)


# -- tokens -----------------------------------------------------------------------------


class MissingTokenError(AuthError):
    """No bearer token was sent."""


class InvalidTokenError(AuthError):
    """The token is malformed, unsigned, signed with a wrong key or algorithm, or has
    a wrong issuer, audience or subject."""


class TokenExpiredError(AuthError):
    """The token's ``exp`` has passed (beyond the allowed clock skew)."""

    code = "token_expired"


class KeySetUnavailableError(AuthError):
    """The JWKS could not be loaded, so no token can be verified right now."""

    code = "service_unavailable"
    status = 503


class KeySetConfigError(AuthError):
    """The JWKS source is misconfigured or its content is not a valid key set."""

    code = "service_unavailable"
    status = 503


class ProfileError(AuthError):
    """A valid token whose claims map to no profile (or too many channels)."""

    code = "forbidden"
    status = 403


class NotAdminError(AuthError):
    """The admin API needs a token with the admin profile."""

    code = "forbidden"
    status = 403


# -- devices ----------------------------------------------------------------------------


class DeviceError(AuthError):
    """A device cannot sync."""

    code = "device_not_registered"
    status = 403


class InvalidDeviceIdError(DeviceError):
    """The device id is not 1 to 64 characters of letters, digits, ``_`` and ``-``."""

    code = "invalid_payload"
    status = 400


class DeviceNotRegisteredError(DeviceError):
    """The device is unknown, or registered to another user (deliberately the same answer)."""

    code = "device_not_registered"
    status = 403


class DeviceRevokedError(DeviceError):
    """The device was revoked: the client must crypto-shred its replica (``wipe``)."""

    code = "device_revoked"
    status = 410
    wipe: ClassVar[bool] = True
