"""Litestar app factory of the Dynamics 365 Web API emulator.

Routes:

* ``/api/data/v9.2/...``: the Web API (an ASGI mount, see :mod:`.gateway`);
* ``POST /{tenant}/oauth2/v2.0/token``: OAuth2 client credentials (see :mod:`.auth`);
* ``/_emulator/...``: control endpoints for tests and operators (no auth, never rate
  limited): health, faults, limits, mutations "as a Dynamics user", clock, reset.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl

import msgspec
from litestar import Controller, Litestar, MediaType, Request, Response, asgi, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from infra.dynamics_emulator.auth import TokenRequestError
from infra.dynamics_emulator.clock import Clock, ManualClock
from infra.dynamics_emulator.config import EmulatorConfig, FaultConfig, LimitsConfig
from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.errors import BadRequestError, EmulatorError, ODataError
from infra.dynamics_emulator.gateway import ApiGateway
from infra.dynamics_emulator.service import API_ROOT


class MutationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /_emulator/mutate``.

    Attributes:
        op: ``create``, ``update`` or ``delete``.
        entity_set: Table, e.g. ``accounts``.
        id: Record GUID (optional for ``create``).
        fields: Column values in Web API payload form.
        user: Acting system user, by index or GUID (default: the integration user).
    """

    op: Literal["create", "update", "delete"]
    entity_set: str
    id: str | None = None
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    user: int | str | None = None


class ClockAdvance(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /_emulator/clock/advance``."""

    seconds: float = 0.0
    days: float = 0.0


class TokenGrant(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /_emulator/token``."""

    client_id: str = "crmsync-importer"
    lifetime_s: int | None = None


def _emulator(state: State) -> Emulator:
    emulator: Emulator = state.emulator
    return emulator


def _merge(current: msgspec.Struct, changes: dict[str, Any]) -> Any:
    try:
        merged = msgspec.structs.asdict(current) | changes
        return msgspec.convert(merged, type(current))
    except (msgspec.ValidationError, EmulatorError, TypeError) as e:
        raise BadRequestError(f"Invalid configuration: {e}") from e


class ControlController(Controller):
    """``/_emulator``: drive the emulator from tests."""

    path = "/_emulator"

    @get("/health")
    async def health(self, state: State) -> dict[str, Any]:
        """Report that the emulator runs, with its dataset and change high-water mark."""
        emulator = _emulator(state)
        return {
            "status": "ok",
            "seed": emulator.config.seed,
            "counts": {name: emulator.generator.count(name) for name in emulator.generator.counts},
            "version": emulator.dataset.version,
            "faults_injected": emulator.faults.injected,
        }

    @get("/faults")
    async def get_faults(self, state: State) -> FaultConfig:
        """Return the current fault configuration."""
        return _emulator(state).faults.config

    @put("/faults", status_code=HTTP_200_OK)
    async def put_faults(self, state: State, data: JSONBody[dict[str, Any]]) -> FaultConfig:
        """Change fault rates at runtime (fields not sent keep their value); reseeds the dice."""
        emulator = _emulator(state)
        config: FaultConfig = _merge(emulator.faults.config, data)
        emulator.faults.configure(config)
        return config

    @get("/limits")
    async def get_limits(self, state: State) -> LimitsConfig:
        """Return the current service protection limits."""
        return _emulator(state).protection.limits

    @put("/limits", status_code=HTTP_200_OK)
    async def put_limits(self, state: State, data: JSONBody[dict[str, Any]]) -> LimitsConfig:
        """Change service protection limits at runtime (fields not sent keep their value)."""
        emulator = _emulator(state)
        limits: LimitsConfig = _merge(emulator.protection.limits, data)
        emulator.protection.configure(limits)
        return limits

    @post("/mutate", status_code=HTTP_200_OK)
    async def mutate(self, state: State, data: JSONBody[MutationRequest]) -> Response[Any]:
        """Create, update or delete a record as a Dynamics user (a concurrent CRM edit)."""
        row = _emulator(state).mutate(
            data.op, data.entity_set, data.id, data.fields, user=data.user
        )
        if row is None:
            return Response(content=None, status_code=HTTP_204_NO_CONTENT)
        return Response(content=row, status_code=HTTP_200_OK)

    @post("/clock/advance", status_code=HTTP_200_OK)
    async def advance_clock(self, state: State, data: JSONBody[ClockAdvance]) -> dict[str, str]:
        """Move a manual clock forward (only when the app was created with one)."""
        clock = _emulator(state).clock
        if not isinstance(clock, ManualClock):
            raise BadRequestError("The emulator runs on the system clock; it cannot be advanced.")
        clock.advance(data.seconds, days=data.days)
        return {"now": clock.now().isoformat()}

    @post("/reset", status_code=HTTP_204_NO_CONTENT)
    async def reset(self, state: State) -> None:
        """Forget every API change and rate window."""
        _emulator(state).reset()

    @post("/token", status_code=HTTP_200_OK)
    async def token(self, state: State, data: JSONBody[TokenGrant]) -> dict[str, Any]:
        """Mint a bearer token without client credentials (test convenience)."""
        issued = _emulator(state).tokens.issue_for(data.client_id, lifetime_s=data.lifetime_s)
        body: dict[str, Any] = issued.body()
        return body


@post("/{tenant:str}/oauth2/v2.0/token", status_code=HTTP_200_OK)
async def oauth_token(
    tenant: FromPath[str], request: Request[Any, Any, Any], state: State
) -> Response[Any]:
    """OAuth2 client-credentials token endpoint (Microsoft Entra ID's shape)."""
    body = await request.body()
    form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    issued = _emulator(state).tokens.issue(tenant, form)
    return Response(content=issued.body(), status_code=HTTP_200_OK, media_type=MediaType.JSON)


def _odata_error_handler(_: Request[Any, Any, Any], error: ODataError) -> Response[Any]:
    return Response(
        content={"error": {"code": error.hex_code, "message": error.message}},
        status_code=error.status,
        headers=error.headers,
        media_type=MediaType.JSON,
    )


def _token_error_handler(_: Request[Any, Any, Any], error: TokenRequestError) -> Response[Any]:
    return Response(content=error.body(), status_code=error.status, media_type=MediaType.JSON)


def create_app(config: EmulatorConfig | None = None, *, clock: Clock | None = None) -> Litestar:
    """Build the emulator app.

    Args:
        config: Configuration (default: :meth:`EmulatorConfig.from_env`).
        clock: Time source; pass a :class:`ManualClock` to control expiry in tests.

    Returns:
        The Litestar app; its ``state.emulator`` is the :class:`Emulator`.
    """
    emulator = Emulator(config or EmulatorConfig.from_env(), clock)
    gateway = ApiGateway(emulator)

    @asgi(API_ROOT, is_mount=True, copy_scope=True)
    async def web_api(scope: Any, receive: Any, send: Any) -> None:
        await gateway(scope, receive, send)

    return Litestar(
        route_handlers=[web_api, oauth_token, ControlController],
        state=State({"emulator": emulator}),
        exception_handlers={
            ODataError: _odata_error_handler,
            TokenRequestError: _token_error_handler,
        },
        on_shutdown=[lambda: emulator.close()],
        openapi_config=None,
        debug=False,
    )
