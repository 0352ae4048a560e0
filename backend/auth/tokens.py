"""Bearer token verification: JWTs signed by the identity provider, checked strictly.

Only the configured asymmetric algorithms are accepted (RS256, ES256). The algorithm is
checked on the unverified header *before* any key is chosen, so ``alg: none`` and the
classic "HS256 signed with the public key" forgery are refused outright; the key must
also be of the algorithm's family. Issuer, audience, expiry and not-before are enforced
with a small leeway for clock skew, and ``sub`` must be present.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

from .errors import InvalidTokenError, TokenExpiredError
from .jwks import KEY_TYPES, KeySetCache

DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_MAX_TOKEN_CHARS = 16 * 1024


class TokenVerifier:
    """Verifies bearer tokens against a JWKS and returns their claims.

    Args:
        keys: the key-set cache.
        issuer: the required ``iss``.
        audience: the required ``aud`` (a token may list several audiences).
        algorithms: accepted algorithms; only asymmetric ones from :data:`KEY_TYPES`.
        leeway_s: allowed clock skew for ``exp``/``nbf``/``iat``.

    Raises:
        ValueError: an algorithm is not one this verifier can pin.
    """

    def __init__(
        self,
        keys: KeySetCache,
        *,
        issuer: str,
        audience: str,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway_s: int = 30,
    ) -> None:
        algs = tuple(algorithms)
        unsupported = [a for a in algs if a not in KEY_TYPES]
        if not algs or unsupported:
            raise ValueError(f"unsupported token algorithms {unsupported}; use RS256/ES256")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = frozenset(algs)
        self.leeway_s = leeway_s

    async def verify(self, token: str) -> dict[str, Any]:
        """Verify ``token`` and return its claims.

        Raises:
            InvalidTokenError: malformed, wrong algorithm, unknown key, bad signature,
                wrong issuer or audience, not yet valid, or without ``sub``.
            TokenExpiredError: ``exp`` is in the past (beyond the leeway).
            KeySetUnavailableError: no key set could be loaded.
        """
        if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidTokenError("not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as e:
            raise InvalidTokenError("unreadable token header") from e
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidTokenError("token algorithm not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidTokenError("token kid is not a string")
        key = await self.keys.key_for(kid, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require_exp": True,
                    "require_iss": True,
                    "require_aud": True,
                    "require_sub": True,
                    "verify_at_hash": False,
                    "leeway": self.leeway_s,
                },
            )
        except ExpiredSignatureError as e:
            raise TokenExpiredError("token expired") from e
        except JWTClaimsError as e:
            raise InvalidTokenError("token claims rejected") from e
        except (JOSEError, ValueError, TypeError) as e:
            raise InvalidTokenError("token signature or format rejected") from e
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 128:
            raise InvalidTokenError("token subject missing or too long")
        return claims
