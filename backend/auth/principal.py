"""The authenticated caller: verified claims resolved into a profile and channel grants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_protocol.errors import ChannelLimitError, RulesError
from sync_protocol.rules import Grants, SyncRules

from .errors import MissingTokenError, ProfileError
from .tokens import TokenVerifier


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling and what they may see and do.

    Attributes:
        user: the token's ``sub`` (the Dynamics systemuser GUID).
        grants: profile and channels resolved through the sync rules.
        claims: the verified token claims.
        expires_at: the token's ``exp`` (epoch seconds).
    """

    user: str
    grants: Grants
    claims: Mapping[str, Any]
    expires_at: float

    @property
    def profile(self) -> str:
        """The profile name (``sales_rep`` ...)."""
        return self.grants.profile.name

    @property
    def channels(self) -> frozenset[str]:
        """The channels the caller may read."""
        return self.grants.channels


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Raises:
        MissingTokenError: no header, another scheme, or an empty token.
    """
    if not authorization:
        raise MissingTokenError("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MissingTokenError("Authorization is not a bearer token")
    return token


class Authenticator:
    """Turns a bearer token into a :class:`Principal`.

    Args:
        verifier: verifies signatures and registered claims.
        rules: maps claims to a profile and channel grants.
    """

    def __init__(self, verifier: TokenVerifier, rules: SyncRules) -> None:
        self.verifier = verifier
        self.rules = rules

    async def authenticate(self, authorization: str | None) -> Principal:
        """Authenticate an ``Authorization`` header value.

        Raises:
            MissingTokenError, InvalidTokenError, TokenExpiredError: see :meth:`token`.
            ProfileError: the claims name no known profile.
            ChannelLimitError: the grants exceed the rules' channel cap.
        """
        return await self.token(bearer_token(authorization))

    async def token(self, token: str) -> Principal:
        """Authenticate a raw token (e.g. from a WebSocket ``access_token`` parameter).

        Raises:
            InvalidTokenError, TokenExpiredError, KeySetUnavailableError: from the verifier.
            ProfileError: the claims name no known profile.
            ChannelLimitError: the grants exceed the rules' channel cap.
        """
        claims = await self.verifier.verify(token)
        try:
            grants = self.rules.grants_for(claims)
        except ChannelLimitError:
            raise
        except RulesError as e:
            raise ProfileError("token claims map to no profile") from e
        exp = claims.get("exp")
        return Principal(
            user=grants.user,
            grants=grants,
            claims=claims,
            expires_at=float(exp) if isinstance(exp, int | float) else 0.0,
        )
