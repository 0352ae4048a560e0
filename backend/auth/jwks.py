"""JSON Web Key Sets: where token-verification keys come from, cached and refreshed.

A :class:`KeySetCache` holds the parsed set and refreshes it when it is older than its
TTL or when a token names a key id the set does not hold (the identity provider rotated
its keys). Refreshes on unknown ids are rate-limited, so a flood of tokens with made-up
``kid`` values cannot make the gateway hammer the identity provider. When a refresh fails
the last good set keeps serving; only with no set at all is verification unavailable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from jose import jwk
from jose.backends.base import Key
from jose.exceptions import JOSEError

from .errors import InvalidTokenError, KeySetConfigError, KeySetUnavailableError

logger = logging.getLogger("crmsync.auth.jwks")

KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
}
"""Algorithm -> (JWK ``kty``, required ``crv``): a key only verifies its own family."""

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MAX_JWKS_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class KeySet:
    """A parsed JWKS: public signing keys by key id.

    Attributes:
        keys: JWK dicts (public members only) by ``kid``.
    """

    keys: dict[str, dict[str, Any]]
    _constructed: dict[tuple[str, str], Key] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: bytes | str | Mapping[str, Any]) -> KeySet:
        """Parse a JWKS document (``{"keys": [...]}``).

        Keys of unsupported types are skipped (an identity provider may publish
        encryption keys too); private members are dropped.

        Raises:
            KeySetConfigError: not JSON, no ``keys`` list, or a key without a ``kid``.
        """
        if isinstance(data, bytes | str):
            try:
                doc = json.loads(data)
            except ValueError as e:
                raise KeySetConfigError("JWKS is not valid JSON") from e
        else:
            doc = data
        raw_keys = doc.get("keys") if isinstance(doc, Mapping) else None
        if not isinstance(raw_keys, list):
            raise KeySetConfigError("JWKS has no 'keys' list")
        keys: dict[str, dict[str, Any]] = {}
        for raw in raw_keys:
            if not isinstance(raw, Mapping):
                raise KeySetConfigError("JWKS key is not an object")
            kid = raw.get("kid")
            if not isinstance(kid, str) or not kid:
                raise KeySetConfigError("JWKS key without a 'kid'")
            if raw.get("kty") not in ("RSA", "EC") or raw.get("use", "sig") != "sig":
                continue
            keys[kid] = {k: v for k, v in raw.items() if k not in _PRIVATE_MEMBERS}
        return cls(keys)

    def find(self, kid: str | None, alg: str) -> Key | None:
        """The verification key for a token header's ``kid`` and ``alg``, if any.

        A key matches only if its type (and curve) fits ``alg`` and its own ``alg``, when
        published, equals it. Without a ``kid`` the single matching key is used, if there
        is exactly one.
        """
        family = KEY_TYPES.get(alg)
        if family is None:
            return None
        if kid is None:
            matching = [k for k, v in self.keys.items() if _fits(v, alg, family)]
            if len(matching) != 1:
                return None
            kid = matching[0]
        raw = self.keys.get(kid)
        if raw is None or not _fits(raw, alg, family):
            return None
        cached = self._constructed.get((kid, alg))
        if cached is not None:
            return cached
        try:
            key = jwk.construct(raw, alg)
        except (JOSEError, ValueError, TypeError) as e:
            logger.warning("JWKS key %s cannot be used: %s", kid[:40], type(e).__name__)
            return None
        self._constructed[(kid, alg)] = key
        return key


def _fits(raw: Mapping[str, Any], alg: str, family: tuple[str, str | None]) -> bool:
    kty, crv = family
    if raw.get("kty") != kty or (crv is not None and raw.get("crv") != crv):
        return False
    return bool(raw.get("alg", alg) == alg)


class KeySetSource(Protocol):
    """Where a JWKS is read from."""

    async def fetch(self) -> KeySet:
        """Read and parse the current key set.

        Raises:
            KeySetUnavailableError: the source cannot be read right now.
            KeySetConfigError: the content is not a key set.
        """
        ...


@dataclass(frozen=True, slots=True)
class StaticKeySetSource:
    """A key set held in memory (the dev signer, tests)."""

    document: Mapping[str, Any]

    async def fetch(self) -> KeySet:
        """The key set, parsed."""
        return KeySet.parse(self.document)


@dataclass(frozen=True, slots=True)
class FileKeySetSource:
    """A JWKS file on disk (re-read on refresh, so a rotated file is picked up)."""

    path: Path

    async def fetch(self) -> KeySet:
        """Read and parse the file.

        Raises:
            KeySetUnavailableError: the file cannot be read.
        """
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
        except OSError as e:
            raise KeySetUnavailableError(f"cannot read JWKS file: {type(e).__name__}") from e
        return KeySet.parse(data)


@dataclass(frozen=True, slots=True)
class UrlKeySetSource:
    """A JWKS served over HTTP(S), e.g. an OIDC provider's ``jwks_uri``."""

    url: str
    timeout_s: float = 5.0
    transport: httpx.AsyncBaseTransport | None = None

    async def fetch(self) -> KeySet:
        """Download and parse the key set.

        Raises:
            KeySetUnavailableError: network failure, non-200 answer or oversized body.
        """
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_s, transport=self.transport, follow_redirects=False
            ) as client:
                response = await client.get(self.url, headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise KeySetUnavailableError(f"JWKS download failed: {type(e).__name__}") from e
        if response.status_code != 200:
            raise KeySetUnavailableError(f"JWKS download answered {response.status_code}")
        if len(response.content) > _MAX_JWKS_BYTES:
            raise KeySetUnavailableError("JWKS document is too large")
        return KeySet.parse(response.content)


class KeySetCache:
    """The current key set, refreshed on expiry and (rate-limited) on unknown key ids.

    Args:
        source: where to read the set.
        ttl_s: refresh a set older than this.
        min_refresh_interval_s: never refresh more often than this.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        source: KeySetSource,
        *,
        ttl_s: float = 3600.0,
        min_refresh_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._min_interval_s = min_refresh_interval_s
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key_for(self, kid: str | None, alg: str) -> Key:
        """The key that verifies a token with header ``kid``/``alg``.

        Raises:
            InvalidTokenError: no key in the (refreshed) set matches.
            KeySetUnavailableError: no key set could ever be loaded.
        """
        keys = await self._current()
        key = keys.find(kid, alg)
        if key is None and self._clock() - self._attempted_at >= self._min_interval_s:
            keys = await self._refresh(force=True)
            key = keys.find(kid, alg)
        if key is None:
            raise InvalidTokenError("no key matches the token's kid and alg")
        return key

    async def _current(self) -> KeySet:
        if self._keys is None or self._clock() - self._fetched_at >= self._ttl_s:
            return await self._refresh(force=False)
        return self._keys

    async def _refresh(self, *, force: bool) -> KeySet:
        attempted = self._attempted_at
        async with self._lock:
            # Another request refreshed while we waited for the lock: use its result.
            if self._attempted_at != attempted and self._keys is not None:
                return self._keys
            if not force and self._keys is not None and not self._stale():
                return self._keys
            self._attempted_at = self._clock()
            try:
                keys = await self._source.fetch()
            except (KeySetUnavailableError, KeySetConfigError) as e:
                if self._keys is None:
                    raise
                logger.warning("JWKS refresh failed, keeping the last set: %s", e.code)
                return self._keys
            self.fetches += 1
            self._keys = keys
            self._fetched_at = self._clock()
            return keys

    def _stale(self) -> bool:
        return self._clock() - self._fetched_at >= self._ttl_s
