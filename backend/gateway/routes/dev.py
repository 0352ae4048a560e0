"""``/dev``: the dev signer's JWKS and demo tokens. Mounted only with ``dev_auth``."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody

from backend.auth.dev_signer import DEMO_BY_PROFILE, DEMO_USERS, DemoUser

from ..errors import NotFoundError
from .dependencies import Runtime


class TokenRequest(msgspec.Struct, kw_only=True):
    """Which demo user to issue a token for: a login or a profile name."""

    user: Annotated[str, msgspec.Meta(max_length=64)] = ""
    profile: Annotated[str, msgspec.Meta(max_length=64)] = ""
    ttl_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3600


class TokenResponse(msgspec.Struct, kw_only=True):
    """An OAuth2-style token answer."""

    access_token: str
    token_type: str
    expires_in: int
    user: str
    profile: str


class DevController(Controller):
    """A development identity provider. Never mounted in production."""

    path = "/dev"
    tags = ["dev"]
    security = []

    @get("/jwks.json", summary="Dev signer JWKS", operation_id="devJwks")
    async def jwks(self, runtime: Runtime) -> dict[str, object]:
        """The dev signer's public keys."""
        assert runtime.dev_signer is not None
        return runtime.dev_signer.jwks()

    @get("/users", summary="Demo users", operation_id="devUsers")
    async def users(self) -> list[DemoUser]:
        """The demo users tokens can be issued for."""
        return list(DEMO_USERS.values())

    @post("/token", status_code=200, summary="Issue a demo token", operation_id="devToken")
    async def token(self, data: JSONBody[TokenRequest], runtime: Runtime) -> TokenResponse:
        """A signed token for a demo user (by login, else the first of a profile)."""
        assert runtime.dev_signer is not None
        user = DEMO_USERS.get(data.user) if data.user else DEMO_BY_PROFILE.get(data.profile)
        if user is None:
            raise NotFoundError("no such demo user")
        return TokenResponse(
            access_token=runtime.dev_signer.issue(user, ttl_s=data.ttl_s),
            token_type="Bearer",
            expires_in=data.ttl_s,
            user=user.login,
            profile=user.profile,
        )
