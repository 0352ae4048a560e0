"""The overlay: API changes win over generated rows, persist in SQLite, roll back atomically."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from infra.dynamics_emulator import EmulatorConfig, ManualClock, create_app
from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.errors import EmulatorConfigError

API = "/api/data/v9.2"


def _config(path: Path, seed: int = 3) -> EmulatorConfig:
    return EmulatorConfig(
        seed=seed, counts={"accounts": 20, "contacts": 20}, overlay_path=str(path)
    )


def test_changes_persist_in_sqlite_across_restarts(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "overlay.sqlite"
    first = Emulator(_config(path), clock)
    base = first.generator.guid("accounts", 4)
    first.mutate("update", "accounts", base, {"name": "Überschrieben GmbH"})
    created = str(uuid.uuid4())
    first.mutate("create", "contacts", created, {"lastname": "Núñez"})
    first.mutate("delete", "accounts", first.generator.guid("accounts", 5))
    version = first.dataset.version
    first.close()

    second = Emulator(_config(path), clock)
    row = second.dataset.get("accounts", base)
    assert row is not None and row["name"] == "Überschrieben GmbH"
    contact = second.dataset.get("contacts", created)
    assert contact is not None and contact["fullname"] == "Núñez"
    assert second.dataset.get("accounts", second.generator.guid("accounts", 5)) is None
    assert second.dataset.count("accounts") == 19
    assert second.dataset.version == version
    changes = second.dataset.changes("accounts", 0, version)
    assert [e.guid for e in changes] == [base, second.generator.guid("accounts", 5)]
    second.close()


def test_an_overlay_of_another_dataset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "overlay.sqlite"
    Emulator(_config(path, seed=3)).close()
    with pytest.raises(EmulatorConfigError):
        Emulator(_config(path, seed=4))


def test_transactions_undo_every_write(clock: ManualClock) -> None:
    emulator = Emulator(EmulatorConfig(counts={"accounts": 5}), clock)
    guid = emulator.generator.guid("accounts", 1)
    before = emulator.dataset.get("accounts", guid)
    with pytest.raises(RuntimeError), emulator.overlay.transaction():
        emulator.mutate("update", "accounts", guid, {"name": "Temp"})
        emulator.mutate("create", "accounts", None, {"name": "Temp 2"})
        emulator.mutate("delete", "accounts", emulator.generator.guid("accounts", 2))
        raise RuntimeError("roll back")
    assert emulator.dataset.get("accounts", guid) == before
    assert emulator.dataset.count("accounts") == 5
    assert emulator.dataset.changes("accounts", 0, emulator.dataset.version) == []


async def test_same_seed_serves_the_same_bytes(clock: ManualClock) -> None:
    config = EmulatorConfig(seed=21, counts={"accounts": 30, "contacts": 30})
    bodies = []
    for _ in range(2):
        app = create_app(config, clock=clock)
        async with AsyncTestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {app.state.emulator.issue_token()}"
            response = await client.get(
                f"{API}/contacts",
                headers={"Prefer": 'odata.maxpagesize=10,odata.include-annotations="*"'},
            )
            bodies.append(response.content)
    assert bodies[0] == bodies[1]
    assert len(msgspec.json.decode(bodies[0])["value"]) == 10


async def test_reset_returns_to_the_generated_dataset(clock: ManualClock) -> None:
    app = create_app(EmulatorConfig(counts={"accounts": 5}), clock=clock)
    emulator: Emulator = app.state.emulator
    emulator.mutate("delete", "accounts", emulator.generator.guid("accounts", 0))
    async with AsyncTestClient(app) as client:
        assert (await client.post("/_emulator/reset")).status_code == 204
    assert emulator.dataset.count("accounts") == 5
