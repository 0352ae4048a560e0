"""Property-based run over the OpenAPI document with Schemathesis: no 5xx, ever.

The gateway runs for real (store, NATS, applier, uvicorn); Schemathesis loads
``/schema/openapi.json`` and generates requests (positive and negative) for every
operation, with a sales rep's token. Besides "no server error" it checks that statuses,
content types, headers and bodies match the document and that auth is never ignored.

Checks left out, on purpose: ``positive_data_acceptance`` (opaque checkpoints and resume
tokens are schema-valid strings the server rightly refuses, and devices the run revoked
are answered 410), ``negative_data_rejection`` (an unsupported protocol version is
answered 426 Upgrade Required, which the check does not list), and
``allow_header_conformance`` (Litestar's automatic OPTIONS lists one handler's methods).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from .conftest import AuthHeaders, Gateway

CHECKS = "all"
EXCLUDED = "positive_data_acceptance,negative_data_rejection,allow_header_conformance"


async def schemathesis(
    schema_url: str, token: str, workdir: Path, *, examples: int, phases: str
) -> tuple[int, str]:
    st = Path(sys.executable).with_name("st")
    proc = await asyncio.create_subprocess_exec(
        str(st),
        "run",
        schema_url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--exclude-checks",
        EXCLUDED,
        "--max-examples",
        str(examples),
        "--phases",
        phases,
        "--seed",
        "20240601",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        "--request-timeout",
        "20",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_quick_run_finds_no_server_errors(
    gateway: Gateway, auth: AuthHeaders, tmp_path: Path
) -> None:
    token = auth("marco.rossi")["Authorization"].split()[1]
    code, out = await schemathesis(
        f"{gateway.url}/schema/openapi.json",
        token,
        tmp_path,
        examples=10,
        phases="fuzzing",
    )
    assert code == 0, out[-6000:]
    assert "Tested: 15" in out or "15 selected" in out, out[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CRMSYNC_SLOW") != "1", reason="slow: set CRMSYNC_SLOW=1")
@pytest.mark.parametrize("login", ["marco.rossi", "lucia.garcia"])
async def test_thorough_run_finds_no_server_errors(
    gateway: Gateway, auth: AuthHeaders, tmp_path: Path, login: str
) -> None:
    token = auth(login)["Authorization"].split()[1]
    for url in (gateway.url, gateway.admin_url):
        code, out = await schemathesis(
            f"{url}/schema/openapi.json",
            token,
            tmp_path,
            examples=40,
            phases="coverage,fuzzing,stateful",
        )
        assert code == 0, out[-6000:]
