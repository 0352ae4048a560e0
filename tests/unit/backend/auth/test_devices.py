"""The device registry: binding to a user, revocation, scopes, over the real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.auth.devices import DeviceRegistry
from backend.auth.errors import DeviceNotRegisteredError, DeviceRevokedError, InvalidDeviceIdError
from backend.auth.principal import Principal
from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from sync_protocol.default_rules import default_rules


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    s = create_store(StoreConfig(sqlite_path=str(tmp_path / "db.sqlite")))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def principal(sub: str, profile: str = "sales_rep") -> Principal:
    grants = default_rules().grants_for({"sub": sub, "crm_profile": profile})
    return Principal(user=sub, grants=grants, claims={"sub": sub}, expires_at=0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


async def test_auto_registration_binds_the_device_to_its_first_user(store: RecordStore) -> None:
    devices = DeviceRegistry(store)
    entry = await devices.check("phone-1", principal("u1"))
    assert entry.user == "u1"
    assert (await devices.check("phone-1", principal("u1"))).user == "u1"
    with pytest.raises(DeviceNotRegisteredError) as e:
        await devices.check("phone-1", principal("u2"))
    assert e.value.status == 403


async def test_without_auto_registration_unknown_devices_are_refused(store: RecordStore) -> None:
    devices = DeviceRegistry(store, auto_register=False)
    with pytest.raises(DeviceNotRegisteredError):
        await devices.check("phone-1", principal("u1"))
    await devices.register("phone-1", principal("u1"), name="Anna's phone", platform="ios")
    entry = await devices.check("phone-1", principal("u1"))
    assert (entry.name, entry.platform) == ("Anna's phone", "ios")


@pytest.mark.parametrize("bad", ["", "a b", "a.b", "x" * 65, "é", "dev:1"])
async def test_malformed_ids_are_refused(store: RecordStore, bad: str) -> None:
    with pytest.raises(InvalidDeviceIdError):
        await DeviceRegistry(store).check(bad, principal("u1"))


async def test_revoked_device_must_wipe_and_cannot_reregister(store: RecordStore) -> None:
    devices = DeviceRegistry(store)
    await devices.check("phone-1", principal("u1"))
    view = await devices.revoke("phone-1", "admin-1", reason="lost")
    assert view.revoked and view.revoked_by == "admin-1"
    with pytest.raises(DeviceRevokedError) as e:
        await devices.check("phone-1", principal("u1"))
    assert e.value.status == 410 and e.value.wipe
    with pytest.raises(DeviceRevokedError):
        await devices.register("phone-1", principal("u1"))
    # Another user still learns nothing beyond "not registered".
    with pytest.raises(DeviceNotRegisteredError):
        await devices.check("phone-1", principal("u2"))
    again = await devices.revoke("phone-1", "admin-2")
    assert again.revoked_by == "admin-1"  # idempotent: the first revocation stands


async def test_a_stale_entry_write_cannot_undo_a_revocation(store: RecordStore) -> None:
    devices = DeviceRegistry(store, touch_interval_ms=0)
    entry = await devices.check("phone-1", principal("u1"))
    await devices.revoke("phone-1", "admin")
    # A pull that read the entry before the revocation writes it back afterwards.
    await devices.remember_scope(entry, 42, frozenset({"owner:u1"}))
    with pytest.raises(DeviceRevokedError):
        await devices.check("phone-1", principal("u1"))


async def test_self_service_revoke_needs_ownership(store: RecordStore) -> None:
    devices = DeviceRegistry(store)
    await devices.check("phone-1", principal("u1"))
    with pytest.raises(DeviceNotRegisteredError):
        await devices.revoke("phone-1", "u2", owner="u2")
    with pytest.raises(DeviceNotRegisteredError):
        await devices.revoke("nope", "u1", owner="u1")
    assert (await devices.revoke("phone-1", "u1", owner="u1")).revoked


async def test_listing_filters_by_user_newest_first(store: RecordStore) -> None:
    clock = Clock()
    devices = DeviceRegistry(store, clock=clock)
    for n, user in enumerate(["u1", "u2", "u1"]):
        clock.now += 10
        await devices.check(f"d{n}", principal(user))
    await devices.revoke("d0", "admin")
    mine = await devices.list_devices("u1")
    assert [d.device_id for d in mine] == ["d2", "d0"]
    assert [d.revoked for d in mine] == [False, True]
    assert len(await devices.list_devices()) == 3


async def test_last_seen_is_written_at_most_once_per_interval(store: RecordStore) -> None:
    clock = Clock()
    devices = DeviceRegistry(store, touch_interval_ms=60_000, clock=clock)
    await devices.check("d", principal("u1"))
    clock.now += 1_000
    await devices.check("d", principal("u1"))
    assert (await devices.get("d")).last_seen_ms == 1_000_000  # type: ignore[union-attr]
    clock.now += 60_000
    await devices.check("d", principal("u1"))
    assert (await devices.get("d")).last_seen_ms == 1_061_000  # type: ignore[union-attr]


async def test_scopes_are_remembered_and_bounded(store: RecordStore) -> None:
    devices = DeviceRegistry(store)
    entry = await devices.check("d", principal("u1"))
    for n in range(6):
        await devices.remember_scope(entry, n, frozenset({f"c{n}"}))
    entry = await devices.get("d")
    assert entry is not None
    assert devices.known_scope(entry, 5) == {"c5"}
    assert devices.known_scope(entry, 0) is None  # the oldest fell off
    assert len(entry.scopes) == 4
