"""Token verification: only correctly signed RS256/ES256 tokens with the right claims pass."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt

from backend.auth.dev_signer import DevSigner
from backend.auth.errors import InvalidTokenError, TokenExpiredError
from backend.auth.jwks import KeySetCache, StaticKeySetSource
from backend.auth.tokens import TokenVerifier


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(signer: DevSigner, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "00000000-0000-4000-8000-000000000001",
        "crm_profile": "sales_rep",
        "iss": signer.issuer,
        "aud": signer.audience,
        "iat": now,
        "exp": now + 600,
        **extra,
    }


async def test_valid_token_returns_claims(signer: DevSigner, verifier: TokenVerifier) -> None:
    claims = await verifier.verify(signer.issue("sales_rep"))
    assert claims["crm_profile"] == "sales_rep"
    assert claims["sub"] == "00000000-0000-4000-8000-000000000001"


async def test_expired_token_is_rejected_as_expired(
    signer: DevSigner, verifier: TokenVerifier
) -> None:
    token = signer.issue("sales_rep", now=time.time() - 7200, ttl_s=600)
    with pytest.raises(TokenExpiredError) as e:
        await verifier.verify(token)
    assert e.value.code == "token_expired"
    assert e.value.status == 401


async def test_expiry_within_leeway_is_accepted(signer: DevSigner, verifier: TokenVerifier) -> None:
    token = signer.sign(_claims(signer, exp=int(time.time()) - 2))
    assert (await verifier.verify(token))["sub"]


@pytest.mark.parametrize(
    "override",
    [
        {"iss": "https://evil.example/idp"},
        {"aud": "another-api"},
        {"nbf": int(time.time()) + 3600},
        {"sub": ""},
    ],
    ids=["wrong-issuer", "wrong-audience", "not-yet-valid", "empty-sub"],
)
async def test_wrong_claims_are_rejected(
    signer: DevSigner, verifier: TokenVerifier, override: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTokenError) as e:
        await verifier.verify(signer.sign(_claims(signer, **override)))
    assert e.value.code == "unauthorized"


@pytest.mark.parametrize("missing", ["exp", "iss", "aud", "sub"])
async def test_required_claims_must_be_present(
    signer: DevSigner, verifier: TokenVerifier, missing: str
) -> None:
    claims = _claims(signer)
    del claims[missing]
    with pytest.raises(InvalidTokenError):
        await verifier.verify(signer.sign(claims))


async def test_alg_none_is_rejected(signer: DevSigner, verifier: TokenVerifier) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": signer.kid}).encode())
    payload = _b64(json.dumps(_claims(signer)).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}.c2ln"):
        with pytest.raises(InvalidTokenError):
            await verifier.verify(token)


async def test_hs256_signed_with_the_public_key_is_rejected(
    signer: DevSigner, verifier: TokenVerifier
) -> None:
    # The classic confusion attack: use the published public key as an HMAC secret.
    jwk = signer.jwks()["keys"][0]
    n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big")
    e = int.from_bytes(base64.urlsafe_b64decode(jwk["e"] + "=="), "big")
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    pem = (
        RSAPublicNumbers(e, n)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode())
    payload = _b64(json.dumps(_claims(signer)).encode())
    import hashlib
    import hmac

    for secret in (pem, json.dumps(jwk).encode(), jwk["n"].encode()):
        mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidTokenError):
            await verifier.verify(f"{header}.{payload}.{_b64(mac)}")


async def test_token_from_another_key_with_the_same_kid_is_rejected(
    signer: DevSigner, verifier: TokenVerifier
) -> None:
    impostor = DevSigner.generate(kid=signer.kid)
    with pytest.raises(InvalidTokenError):
        await verifier.verify(impostor.issue("admin"))


async def test_tampered_payload_is_rejected(signer: DevSigner, verifier: TokenVerifier) -> None:
    header, payload, sig = signer.issue("sales_rep").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["crm_profile"] = "admin"
    forged = _b64(json.dumps(claims).encode())
    with pytest.raises(InvalidTokenError):
        await verifier.verify(f"{header}.{forged}.{sig}")


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "x" * 20000, "e30.e30.e30"])
async def test_garbage_is_rejected(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(InvalidTokenError):
        await verifier.verify(token)


async def test_es256_tokens_verify_against_an_ec_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "kid": "ec1",
                "use": "sig",
                "x": _b64(numbers.x.to_bytes(32, "big")),
                "y": _b64(numbers.y.to_bytes(32, "big")),
            }
        ]
    }
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    verifier = TokenVerifier(
        KeySetCache(StaticKeySetSource(jwks)), issuer="https://idp", audience="api"
    )
    now = int(time.time())
    claims = {"sub": "u1", "iss": "https://idp", "aud": "api", "exp": now + 60}
    token = jwt.encode(claims, pem, algorithm="ES256", headers={"kid": "ec1"})
    assert (await verifier.verify(token))["sub"] == "u1"
    # The same key id named with RS256 must not select the EC key.
    rs_header = _b64(json.dumps({"alg": "RS256", "kid": "ec1"}).encode())
    _, body, sig = token.split(".")
    with pytest.raises(InvalidTokenError):
        await verifier.verify(f"{rs_header}.{body}.{sig}")


def test_symmetric_algorithms_cannot_be_configured(signer: DevSigner) -> None:
    keys = KeySetCache(StaticKeySetSource(signer.jwks()))
    for algs in (["HS256"], ["RS256", "none"], []):
        with pytest.raises(ValueError):
            TokenVerifier(keys, issuer="i", audience="a", algorithms=algs)


async def test_audience_list_containing_ours_is_accepted(
    signer: DevSigner, verifier: TokenVerifier
) -> None:
    token = signer.sign(_claims(signer, aud=["other", signer.audience]))
    assert (await verifier.verify(token))["sub"]


def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the full JOSE checks: the tokens ``jwt.decode`` is called with, in order."""
    checks: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        checks.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr("backend.auth.tokens.jwt.decode", counting)
    return checks


async def test_a_verified_token_is_reused_without_a_second_signature_check(
    signer: DevSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    keys = KeySetCache(StaticKeySetSource(signer.jwks()))
    verifier = TokenVerifier(
        keys, issuer=signer.issuer, audience=signer.audience, cache_s=60, clock=lambda: now[0]
    )
    checks = signature_checks(monkeypatch)
    token = signer.issue("sales_rep", ttl_s=600)

    first = await verifier.verify(token)
    first["sub"] = "tampered by the caller"
    second = await verifier.verify(token)
    assert len(checks) == 1
    assert second["sub"] == "00000000-0000-4000-8000-000000000001"  # callers get copies

    now[0] += 61  # past the cache period: the signature is checked again
    await verifier.verify(token)
    assert len(checks) == 2
    # A forged token is never served from the cache of a genuine one.
    with pytest.raises(InvalidTokenError):
        await verifier.verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))


async def test_a_cached_token_is_never_served_past_its_exp(
    signer: DevSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    keys = KeySetCache(StaticKeySetSource(signer.jwks()))
    verifier = TokenVerifier(
        keys,
        issuer=signer.issuer,
        audience=signer.audience,
        leeway_s=5,
        cache_s=3600,
        clock=lambda: now[0],
    )
    checks = signature_checks(monkeypatch)
    token = signer.sign(_claims(signer, exp=int(now[0]) + 100))
    await verifier.verify(token)
    now[0] += 100  # within exp + leeway: still cached
    await verifier.verify(token)
    assert len(checks) == 1
    now[0] += 6  # past exp + leeway: the full check runs again (and would say "expired")
    await verifier.verify(token)
    assert len(checks) == 2
