"""``/healthz`` (the process is alive) and ``/readyz`` (the store and NATS answer)."""

from __future__ import annotations

from litestar import Controller, Response, get

from .dependencies import Runtime


class HealthController(Controller):
    """Liveness and readiness, on both ports, without authentication."""

    path = "/"
    tags = ["health"]
    security = []

    @get("/healthz", summary="Liveness", operation_id="healthz")
    async def healthz(self) -> dict[str, str]:
        """Always ``ok`` while the process serves requests."""
        return {"status": "ok"}

    @get("/readyz", summary="Readiness", operation_id="readyz")
    async def readyz(self, runtime: Runtime) -> Response[dict[str, object]]:
        """200 when the store and NATS answer, else 503 with what failed."""
        checks = await runtime.readiness()
        return Response(content=checks, status_code=200 if checks["ready"] else 503)
