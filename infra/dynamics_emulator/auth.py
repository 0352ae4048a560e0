"""OAuth2 client credentials, like Microsoft Entra ID in front of Dataverse.

``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, ``client_id``,
``client_secret`` and ``scope=<org url>/.default`` returns a bearer token with an expiry.
Tokens are HS256 JWTs signed with the configured key (real Entra tokens are RS256; clients
must treat both as opaque). The token endpoint answers errors in Entra's format
(``{"error": "...", "error_description": "AADSTS...: ..."}``), the Web API answers a missing,
invalid or expired token with 401 and a ``WWW-Authenticate: Bearer`` challenge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import msgspec

from infra.dynamics_emulator.clock import Clock
from infra.dynamics_emulator.config import AuthConfig
from infra.dynamics_emulator.errors import AuthenticationError, EmulatorError

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


class TokenRequestError(EmulatorError):
    """The token endpoint refuses a request (answered in Entra's error format)."""

    code = "dynamics_emulator.token_request_invalid"

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, Any]:
        """Return the Entra-style error body."""
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token and its lifetime."""

    access_token: str
    expires_in: int
    subject: str

    def body(self) -> dict[str, Any]:
        """Return the token endpoint's JSON response."""
        return {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": self.access_token,
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenService:
    """Issues and validates access tokens.

    Args:
        config: Registered clients, lifetime and signing key.
        clock: Wall time for ``iat``/``exp``.
    """

    def __init__(self, config: AuthConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._key = config.signing_key.encode()

    def issue_for(
        self, subject: str, *, tenant: str = "emulator", lifetime_s: int | None = None
    ) -> IssuedToken:
        """Issue a token for a subject without checking credentials (tests, tools).

        Returns:
            The token (an :class:`IssuedToken`).
        """
        lifetime = self.config.token_lifetime_s if lifetime_s is None else lifetime_s
        now = int(self.clock.now().timestamp())
        claims = {
            "aud": "dynamics-emulator",
            "iss": f"https://login.microsoftonline.com/{tenant}/v2.0",
            "sub": subject,
            "appid": subject,
            "tid": tenant,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": secrets.token_hex(8),
        }
        header = _b64(_encoder.encode({"alg": "HS256", "typ": "JWT"}))
        payload = _b64(_encoder.encode(claims))
        signature = _b64(
            hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        return IssuedToken(f"{header}.{payload}.{signature}", lifetime, subject)

    def issue(self, tenant: str, form: dict[str, str]) -> IssuedToken:
        """Handle a client-credentials token request.

        Args:
            tenant: Tenant segment of the URL.
            form: The form fields.

        Raises:
            TokenRequestError: Unsupported grant, unknown client, bad secret or scope.
        """
        grant = form.get("grant_type")
        if grant != "client_credentials":
            raise TokenRequestError(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type "
                f"'{grant or ''}'. The emulator supports client_credentials.",
            )
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        if not client_id or client_id not in self.config.clients:
            raise TokenRequestError(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant}'.",
            )
        if secret is None or not hmac.compare_digest(secret, self.config.clients[client_id]):
            raise TokenRequestError(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                f"the request is the client secret value, not the client secret ID, for a secret "
                f"added to app '{client_id}'.",
            )
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            raise TokenRequestError(
                400,
                "invalid_scope",
                f"AADSTS1002012: The provided value for scope {scope or '(none)'} is not valid. "
                "Client credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        return self.issue_for(client_id, tenant=tenant)

    def validate(self, authorization: str | None) -> str:
        """Return the subject of a valid ``Authorization: Bearer`` header.

        Raises:
            AuthenticationError: Missing, malformed, badly signed or expired token.
        """
        if not authorization:
            raise AuthenticationError("The request does not carry a bearer token.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("The Authorization header must use the Bearer scheme.")
        parts = token.strip().split(".")
        if len(parts) != 3:
            raise AuthenticationError("The bearer token is malformed.")
        header, payload, signature = parts
        expected = _b64(
            hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        if not hmac.compare_digest(signature, expected):
            raise AuthenticationError("The bearer token signature is invalid.")
        try:
            claims = _decoder.decode(_unb64(payload))
        except (msgspec.DecodeError, ValueError) as e:
            raise AuthenticationError("The bearer token is malformed.") from e
        now = self.clock.now().timestamp()
        if now >= float(claims.get("exp", 0)):
            raise AuthenticationError("The access token has expired.")
        subject: str = str(claims.get("sub", "unknown"))
        return subject


def challenge(base_url: str, error: AuthenticationError | None = None) -> str:
    """Return the ``WWW-Authenticate`` header value Dataverse sends with a 401."""
    value = (
        "Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, "
        f"resource_id={base_url}/"
    )
    if error is not None and "does not carry" not in error.message:
        value = f'Bearer error="invalid_token", error_description="{error.message}", ' + value[7:]
    return value
