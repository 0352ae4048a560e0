"""Principals: bearer parsing and claims resolved into grants through the sync rules."""

from __future__ import annotations

import pytest

from backend.auth.dev_signer import DevSigner
from backend.auth.errors import MissingTokenError, ProfileError
from backend.auth.principal import Authenticator, bearer_token
from backend.auth.tokens import TokenVerifier
from sync_protocol.default_rules import default_rules
from sync_protocol.errors import ChannelLimitError


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_bearer_token_requires_the_bearer_scheme(header: str | None) -> None:
    with pytest.raises(MissingTokenError):
        bearer_token(header)


def test_bearer_token_is_case_insensitive_on_the_scheme() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"


async def test_claims_become_grants(signer: DevSigner, verifier: TokenVerifier) -> None:
    auth = Authenticator(verifier, default_rules())
    p = await auth.authenticate("Bearer " + signer.issue("claire.martin"))
    assert p.profile == "dealer_manager"
    assert p.channels == {
        "owner:00000000-0000-4000-8000-000000000004",
        "territory:FR-IDF",
        "territory:FR-ARA",
    }
    assert p.expires_at > 0


async def test_unknown_or_missing_profile_is_forbidden(
    signer: DevSigner, verifier: TokenVerifier
) -> None:
    auth = Authenticator(verifier, default_rules())
    for extra in ({"crm_profile": "superuser"}, {"crm_profile": None}):
        with pytest.raises(ProfileError) as e:
            await auth.token(signer.issue("sales_rep", **extra))
        assert e.value.status == 403


async def test_too_many_channels_is_refused(signer: DevSigner, verifier: TokenVerifier) -> None:
    auth = Authenticator(verifier, default_rules())
    territories = [f"T{i}" for i in range(300)]
    with pytest.raises(ChannelLimitError):
        await auth.token(signer.issue("jonas.weber", territories=territories))
