"""The dev signer: a persistent key pair, its JWKS, and tokens for the demo users."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from jose import jwt

from backend.auth.dev_signer import DEMO_BY_PROFILE, DEMO_USERS, DevSigner
from sync_protocol.default_rules import PROFILES, default_rules


def test_load_or_create_keeps_one_key_private(tmp_path: Path) -> None:
    first = DevSigner.load_or_create(tmp_path)
    second = DevSigner.load_or_create(tmp_path)
    assert first.kid == second.kid
    assert first.jwks() == second.jwks()
    mode = stat.S_IMODE((tmp_path / "signer.pem").stat().st_mode)
    assert mode == 0o600
    assert json.loads((tmp_path / "jwks.json").read_text()) == first.jwks()


def test_every_profile_has_a_demo_user_whose_claims_resolve() -> None:
    rules = default_rules()
    assert set(DEMO_BY_PROFILE) == set(PROFILES)
    for user in DEMO_USERS.values():
        grants = rules.grants_for(user.claims())
        assert grants.profile.name == user.profile
        assert f"owner:{user.sub}" in grants.channels


def test_issue_by_login_or_profile() -> None:
    signer = DevSigner.generate()
    token = signer.issue("anna.kowalska", ttl_s=120)
    claims = jwt.get_unverified_claims(token)
    assert claims["preferred_username"] == "anna.kowalska"
    assert claims["exp"] - claims["iat"] == 120
    assert jwt.get_unverified_header(token)["kid"] == signer.kid
    assert jwt.get_unverified_claims(signer.issue("admin"))["crm_profile"] == "admin"
