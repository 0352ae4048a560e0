"""The emulator's documentation names every control endpoint and environment variable."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from infra.dynamics_emulator.config import ENV_PREFIX, ENV_VARIABLES

DOC = Path(__file__).resolve().parents[4] / "docs" / "dynamics_emulator.md"


def test_every_control_endpoint_is_documented(app: Litestar) -> None:
    text = DOC.read_text()
    paths = {route.path for route in app.routes if route.path.startswith("/_emulator")}
    assert paths, "no control endpoints found"
    for path in paths:
        assert f"`{path}`" in text or f" {path}`" in text, path


def test_every_environment_variable_is_documented() -> None:
    text = DOC.read_text()
    for variable in ENV_VARIABLES:
        suffix = variable.removeprefix(ENV_PREFIX)
        assert f"`{suffix}`" in text or f"`{suffix} (" in text, variable
