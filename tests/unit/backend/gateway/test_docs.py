"""docs/gateway.md documents every endpoint of both apps and every gateway config field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from litestar import Litestar

from backend.admin.app import create_admin_app
from backend.config import GatewayConfig
from backend.gateway.runtime import GatewayRuntime

DOC = Path(__file__).resolve().parents[4] / "docs" / "gateway.md"


def endpoints(app: Litestar) -> set[str]:
    out = set()
    for route in app.routes:
        path = route.path_format
        if path.startswith("/schema"):
            continue
        methods = getattr(route, "methods", None)
        if not methods:
            out.add(f"WebSocket `{path}`")
            continue
        for method in methods - {"OPTIONS", "HEAD"}:
            out.add(f"{method} {path}")
    return out


def test_every_endpoint_is_documented(app: Litestar, runtime: GatewayRuntime) -> None:
    text = DOC.read_text()
    routes = endpoints(app) | endpoints(create_admin_app(runtime))
    assert len(routes) >= 20
    missing = sorted(r for r in routes if r not in text)
    assert not missing, f"undocumented in {DOC.name}: {missing}"


def test_every_config_field_is_documented() -> None:
    text = DOC.read_text()
    missing = [f.name for f in dataclasses.fields(GatewayConfig) if f"`{f.name}`" not in text]
    assert not missing, missing
