"""ASGI middleware: request counts and latencies by route template and status."""

from __future__ import annotations

from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from backend.observability import Metrics, monotonic


def metrics_middleware(metrics: Metrics) -> Callable[[ASGIApp], ASGIApp]:
    """A Litestar middleware factory recording every HTTP request in ``metrics``."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            start = monotonic()
            status = 500

            async def capture(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                route = scope.get("path_template") or "unmatched"
                method = str(scope.get("method", "?"))
                metrics.observe_request(route, method, status, monotonic() - start)

        return middleware

    return factory
