"""Fixtures of the auth unit tests: an in-memory dev signer and a verifier trusting it."""

from __future__ import annotations

import pytest

from backend.auth.dev_signer import DevSigner
from backend.auth.jwks import KeySetCache, StaticKeySetSource
from backend.auth.tokens import TokenVerifier


@pytest.fixture(scope="session")
def signer() -> DevSigner:
    """One RSA dev signer for the session (key generation is the slow part)."""
    return DevSigner.generate()


@pytest.fixture
def verifier(signer: DevSigner) -> TokenVerifier:
    """A verifier that trusts ``signer``, with the dev issuer and audience."""
    keys = KeySetCache(StaticKeySetSource(signer.jwks()))
    return TokenVerifier(keys, issuer=signer.issuer, audience=signer.audience, leeway_s=5)
