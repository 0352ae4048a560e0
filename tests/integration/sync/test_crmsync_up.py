"""``crmsync up`` as a user runs it: start, push and pull with a printed token, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time

import httpx
import psutil


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_crmsync_up_serves_the_demo_and_stops_cleanly_on_ctrl_c(tmp_path) -> None:
    port, admin_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.cli",
        "up",
        "--port",
        str(port),
        "--admin-port",
        str(admin_port),
        "--nats-port",
        "0",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while not lines or "Ctrl-C stops everything." not in lines[-1]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no banner in time:\n" + "\n".join(lines)
            raw = await asyncio.wait_for(proc.stdout.readline(), remaining)
            assert raw, "crmsync up exited:\n" + "\n".join(lines)
            lines.append(raw.decode().rstrip("\n"))
        banner = "\n".join(lines)
        assert f"Sync API   http://127.0.0.1:{port}" in banner
        assert f"Admin API  http://127.0.0.1:{admin_port}" in banner
        assert "OpenAPI" in banner
        assert "Demo data  324 records" in banner
        token_line = next(line for line in lines if line.strip().startswith("sales_rep"))
        token = token_line.split()[-1]
        assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token)
        for profile in ("service_technician", "dealer_manager", "admin"):
            assert any(line.strip().startswith(profile) for line in lines)
        # The printed curl lines are the ones the README shows; run their requests.
        assert any("/v1/sync/push" in line for line in lines)
        info = json.loads((tmp_path / "var" / "devstack.json").read_text())

        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "protocol": 1,
            "changeset_id": "up-test:1",
            "device_id": "up-test",
            "mutations": [
                {
                    "entity": "lead",
                    "id": "7d0c5a8e-3f1b-4c2d-9e6a-1b2c3d4e5f60",
                    "op": "upsert",
                    "base_version": 0,
                    "clock": [1767225600000, 0, "up-test"],
                    "fields": {"subject": "Nuovo contatto in fiera", "lastname": "Verdi"},
                }
            ],
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            pushed = await client.post("/v1/sync/push", json=body, headers=headers)
            assert pushed.status_code == 200, pushed.text
            assert pushed.json()["results"][0]["outcome"] == "applied"
            pulled = await client.get(
                "/v1/sync/pull", params={"device_id": "up-test"}, headers=headers
            )
        assert pulled.status_code == 200, pulled.text
        changes = pulled.json()["changes"]
        entities = {c["entity"] for c in changes}
        assert {"account", "contact", "lead", "opportunity", "appointment"} <= entities
        assert any(c["id"] == body["mutations"][0]["id"] for c in changes)  # type: ignore[index]
        # marco.rossi sees his own records only, never his colleague's in the same territory.
        marco = "00000000-0000-4000-8000-000000000001"
        assert all(c["fields"]["ownerid"] == marco for c in changes if not c.get("deleted"))

        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0
        pids = [info["nats_pid"], *info["service_pids"].values()]
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in pids):
            assert time.monotonic() < deadline, "a child process outlived crmsync up"
            await asyncio.sleep(0.05)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
