"""CrmClient.open: key choice, device binding, wiring of local writes to the sync loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_sdk.client import CrmClient
from client_sdk.errors import (
    ClientConfigError,
    DeviceIdMismatchError,
    InvalidDeviceIdError,
    InvalidKekError,
    WrongKeystoreKeyError,
)
from client_sdk.transport import HttpTransport

KEY = b"\x11" * 32


def open_client(path: Path, device_id: str = "phone-1", key: bytes = KEY) -> CrmClient:
    return CrmClient.open(
        path,
        keystore_key=key,
        server_url="http://127.0.0.1:9",
        token_provider=lambda: "t",
        device_id=device_id,
    )


async def test_open_creates_then_reopens_the_same_replica(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    client = open_client(path)
    assert isinstance(client.engine.transport, HttpTransport)
    view = client.upsert("lead", None, {"subject": "Fiera"})
    await client.aclose()
    again = open_client(path)
    try:
        assert again.get("lead", view.id) == view
        assert [e.id for e in again.pending()] == [view.id]
    finally:
        await again.aclose()


async def test_a_replica_is_bound_to_its_device_and_its_key(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    await open_client(path).aclose()
    with pytest.raises(DeviceIdMismatchError):
        open_client(path, device_id="phone-2")
    with pytest.raises(WrongKeystoreKeyError):
        open_client(path, key=b"\x22" * 32)
    await open_client(path).aclose()  # nothing was left locked or half-open


@pytest.mark.parametrize("device_id", ["", "has space", "x" * 65, "a:b"])
def test_bad_device_ids_are_refused(tmp_path: Path, device_id: str) -> None:
    with pytest.raises(InvalidDeviceIdError):
        open_client(tmp_path / "crm.db", device_id=device_id)
    assert not (tmp_path / "crm.db").exists()


def test_exactly_one_kek_and_a_server_are_needed(tmp_path: Path) -> None:
    with pytest.raises(InvalidKekError):
        CrmClient.open(tmp_path / "a.db", device_id="d", server_url="http://x", token_provider=str)
    with pytest.raises(InvalidKekError):
        CrmClient.open(
            tmp_path / "a.db",
            passphrase="p",
            keystore_key=KEY,
            device_id="d",
            server_url="http://x",
            token_provider=str,
        )
    with pytest.raises(ClientConfigError):
        CrmClient.open(tmp_path / "a.db", keystore_key=KEY, device_id="d")


async def test_local_writes_are_wired_to_wake_the_sync_loop(tmp_path: Path) -> None:
    client = open_client(tmp_path / "crm.db")
    try:
        assert client.local.on_write == client.engine.notify_local_write
        assert client.engine.events is client.events
    finally:
        await client.aclose()
