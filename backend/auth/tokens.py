"""Bearer token verification: JWTs signed by the identity provider, checked strictly.

Only the configured asymmetric algorithms are accepted (RS256, ES256). The algorithm is
checked on the unverified header *before* any key is chosen, so ``alg: none`` and the
classic "HS256 signed with the public key" forgery are refused outright; the key must
also be of the algorithm's family. Issuer, audience, expiry and not-before are enforced
with a small leeway for clock skew, and ``sub`` must be present.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

from .errors import InvalidTokenError, TokenExpiredError
from .jwks import KEY_TYPES, KeySetCache

DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_MAX_TOKEN_CHARS = 16 * 1024
_CACHE_ENTRIES = 20_000


class TokenVerifier:
    """Verifies bearer tokens against a JWKS and returns their claims.

    Args:
        keys: the key-set cache.
        issuer: the required ``iss``.
        audience: the required ``aud`` (a token may list several audiences).
        algorithms: accepted algorithms; only asymmetric ones from :data:`KEY_TYPES`.
        leeway_s: allowed clock skew for ``exp``/``nbf``/``iat``.
        cache_s: how long a verified token's claims are reused without checking the
            signature again (never past the token's ``exp``); 0 turns the cache off. A
            device sends the same token with every request until it is refreshed, and
            the RSA check and JOSE parsing were a tenth of a push's gateway CPU. A key
            removed from the JWKS stops being honoured for cached tokens after at most
            this long.
        clock: wall time in seconds (injected so tests drive time).

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
        cache_s: float = 60.0,
        clock: Callable[[], float] = time.time,
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
        self.cache_s = cache_s
        self.clock = clock
        # token -> (reuse until, claims); insertion order is age order for eviction.
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}

    async def verify(self, token: str) -> dict[str, Any]:
        """Verify ``token`` and return its claims.

        Raises:
            InvalidTokenError: malformed, wrong algorithm, unknown key, bad signature,
                wrong issuer or audience, not yet valid, or without ``sub``.
            TokenExpiredError: ``exp`` is in the past (beyond the leeway).
            KeySetUnavailableError: no key set could be loaded.
        """
        now = self.clock()
        hit = self._verified.get(token)
        if hit is not None:
            if now < hit[0]:
                return dict(hit[1])
            del self._verified[token]
        claims = await self._verify_signed(token)
        if self.cache_s > 0:
            exp = claims.get("exp")
            until = now + self.cache_s
            if isinstance(exp, int | float):
                until = min(until, float(exp) + self.leeway_s)
            if len(self._verified) >= _CACHE_ENTRIES:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = (until, dict(claims))
        return claims

    async def _verify_signed(self, token: str) -> dict[str, Any]:
        """The full check: header, pinned algorithm, key, signature and claims."""
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
