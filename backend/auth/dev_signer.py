"""A development identity provider: an RSA key pair, its JWKS, and demo tokens per profile.

For the local stack and tests only. The key pair lives under ``var/dev-keys/`` (private
key readable by the owner only) or in memory; the gateway trusts it through the same
JWKS path as a real identity provider, so nothing about verification is special-cased.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

DEV_ISSUER = "https://crmsync.local/dev-idp"
DEV_AUDIENCE = "crmsync"
DEFAULT_KEY_DIR = Path("var/dev-keys")
_PRIVATE_FILE = "signer.pem"
_JWKS_FILE = "jwks.json"


@dataclass(frozen=True, slots=True)
class DemoUser:
    """A demo user of the dealer network (claims as a real IdP would issue them)."""

    login: str
    sub: str
    profile: str
    territories: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    language: str = "en"

    def claims(self) -> dict[str, Any]:
        """The user's identity claims (without the registered JWT claims)."""
        return {
            "sub": self.sub,
            "preferred_username": self.login,
            "crm_profile": self.profile,
            "territories": list(self.territories),
            "countries": list(self.countries),
            "locale": self.language,
        }


DEMO_USERS: dict[str, DemoUser] = {
    u.login: u
    for u in (
        DemoUser(
            "marco.rossi",
            "00000000-0000-4000-8000-000000000001",
            "sales_rep",
            ("IT-NW",),
            ("IT",),
            "it",
        ),
        DemoUser(
            "anna.kowalska",
            "00000000-0000-4000-8000-000000000002",
            "sales_rep",
            ("PL-MZ",),
            ("PL",),
            "pl",
        ),
        DemoUser(
            "jonas.weber",
            "00000000-0000-4000-8000-000000000003",
            "service_technician",
            ("DE-BY",),
            ("DE",),
            "de",
        ),
        DemoUser(
            "claire.martin",
            "00000000-0000-4000-8000-000000000004",
            "dealer_manager",
            ("FR-IDF", "FR-ARA"),
            ("FR",),
            "fr",
        ),
        DemoUser(
            "lucia.garcia",
            "00000000-0000-4000-8000-000000000005",
            "admin",
            (),
            ("ES", "IT", "DE", "FR", "PL"),
            "es",
        ),
    )
}
"""Demo users, two sales reps (to show isolation) and one of every other profile."""

DEMO_BY_PROFILE: dict[str, DemoUser] = {}
for _u in DEMO_USERS.values():
    DEMO_BY_PROFILE.setdefault(_u.profile, _u)


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class DevSigner:
    """Signs demo tokens with an RSA key and publishes the matching JWKS.

    Args:
        private_key: the RSA signing key.
        kid: key id put in every token header and in the JWKS.
        issuer: ``iss`` of issued tokens.
        audience: ``aud`` of issued tokens.
    """

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        *,
        kid: str | None = None,
        issuer: str = DEV_ISSUER,
        audience: str = DEV_AUDIENCE,
    ) -> None:
        self._key = private_key
        self._pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        numbers = private_key.public_key().public_numbers()
        self.kid = kid or "dev-" + uuid.UUID(int=numbers.n % (1 << 128)).hex[:16]
        self.issuer = issuer
        self.audience = audience
        self._public_jwk = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64(numbers.n),
            "e": _b64(numbers.e),
        }

    @classmethod
    def generate(cls, **kwargs: Any) -> DevSigner:
        """A signer with a fresh in-memory 2048-bit key (tests)."""
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), **kwargs)

    @classmethod
    def load_or_create(cls, directory: Path = DEFAULT_KEY_DIR, **kwargs: Any) -> DevSigner:
        """The signer whose key is kept in ``directory``, creating it on first use.

        Also writes ``jwks.json`` next to it, so a gateway can be pointed at the file.
        """
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / _PRIVATE_FILE
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            signer = cls(loaded, **kwargs)
        else:
            signer = cls.generate(**kwargs)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(signer._pem)
        (directory / _JWKS_FILE).write_text(json.dumps(signer.jwks(), indent=2))
        return signer

    def jwks(self) -> dict[str, Any]:
        """The public key set (``{"keys": [...]}``)."""
        return {"keys": [dict(self._public_jwk)]}

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary claims as given (tests use it to forge bad tokens)."""
        token: str = jwt.encode(
            dict(claims),
            self._pem.decode(),
            algorithm="RS256",
            headers={"kid": self.kid, **(headers or {})},
        )
        return token

    def issue(
        self,
        user: DemoUser | str,
        *,
        ttl_s: int = 3600,
        now: float | None = None,
        **extra: Any,
    ) -> str:
        """A valid token for a demo user (by login or profile name) or a given user.

        Args:
            user: a :class:`DemoUser`, a demo login, or a profile name.
            ttl_s: lifetime in seconds.
            now: issue time (epoch seconds); the current time by default.
            **extra: claims to add or override.

        Raises:
            KeyError: no demo user by that login or profile.
        """
        if isinstance(user, str):
            user = DEMO_USERS.get(user) or DEMO_BY_PROFILE[user]
        issued = int(time.time() if now is None else now)
        claims = {
            **user.claims(),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_s,
            "jti": uuid.uuid4().hex,
            **extra,
        }
        return self.sign(claims)
