"""OAuth2 client credentials and bearer checks on the Web API."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.dynamics_emulator import EmulatorConfig, ManualClock, create_app
from infra.dynamics_emulator.config import AuthConfig

API = "/api/data/v9.2"
TOKEN_URL = "/contoso-tenant/oauth2/v2.0/token"
FORM = {
    "grant_type": "client_credentials",
    "client_id": "crmsync-importer",
    "client_secret": "emulator-secret",
    "scope": "https://org.crm4.dynamics.com/.default",
}


async def test_client_credentials_token_then_401_after_expiry_then_refresh(
    app: Litestar, clock: ManualClock
) -> None:
    async with AsyncTestClient(app) as client:
        anonymous = await client.get(f"{API}/accounts")
        assert anonymous.status_code == 401
        challenge = anonymous.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer authorization_uri=https://login.microsoftonline.com/")
        assert "resource_id=http://testserver.local/" in challenge
        assert anonymous.json()["error"]["code"].startswith("0x")
        granted = await client.post(TOKEN_URL, data=FORM)
        assert granted.status_code == 200
        token = granted.json()
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert (await client.get(f"{API}/accounts?$top=1", headers=headers)).status_code == 200
        clock.advance(3_600)
        expired = await client.get(f"{API}/accounts?$top=1", headers=headers)
        assert expired.status_code == 401
        assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
        assert "expired" in expired.json()["error"]["message"]
        refreshed = (await client.post(TOKEN_URL, data=FORM)).json()["access_token"]
        again = await client.get(
            f"{API}/accounts?$top=1", headers={"Authorization": f"Bearer {refreshed}"}
        )
        assert again.status_code == 200


async def test_token_endpoint_errors_use_the_entra_format(app: Litestar) -> None:
    async with AsyncTestClient(app) as client:
        bad_secret = await client.post(TOKEN_URL, data={**FORM, "client_secret": "nope"})
        assert bad_secret.status_code == 401
        assert bad_secret.json()["error"] == "invalid_client"
        assert bad_secret.json()["error_description"].startswith("AADSTS7000215")
        unknown = await client.post(TOKEN_URL, data={**FORM, "client_id": "who"})
        assert unknown.status_code == 400 and unknown.json()["error"] == "unauthorized_client"
        grant = await client.post(TOKEN_URL, data={**FORM, "grant_type": "password"})
        assert grant.json()["error"] == "unsupported_grant_type"
        scope = await client.post(TOKEN_URL, data={**FORM, "scope": "https://org.crm.dynamics.com"})
        assert scope.json()["error"] == "invalid_scope"


async def test_tampered_and_malformed_tokens_are_401(app: Litestar, emulator: Any) -> None:
    token = emulator.issue_token()
    header, payload, signature = token.split(".")
    async with AsyncTestClient(app) as client:
        for value in (
            f"Bearer {header}.{payload}x.{signature}",
            "Bearer abc",
            f"Basic {token}",
            "Bearer ",
        ):
            response = await client.get(f"{API}/accounts", headers={"Authorization": value})
            assert response.status_code == 401, value


async def test_token_lifetime_is_configurable_and_auth_can_be_off(clock: ManualClock) -> None:
    config = EmulatorConfig(counts={"accounts": 3}, auth=AuthConfig(token_lifetime_s=60))
    app = create_app(config, clock=clock)
    async with AsyncTestClient(app) as client:
        token = (await client.post(TOKEN_URL, data=FORM)).json()
        assert token["expires_in"] == 60
    open_app = create_app(
        EmulatorConfig(counts={"accounts": 3}, auth=AuthConfig(required=False)), clock=clock
    )
    async with AsyncTestClient(open_app) as client:
        assert (await client.get(f"{API}/accounts")).status_code == 200
