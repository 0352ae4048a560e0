"""Incremental sync: deltas carry creates, updates and deletes; expired tokens fall back."""

from __future__ import annotations

from typing import Any

import pytest

from backend.store.base import RecordStore
from importer.runtime import ImporterRuntime
from importer.state import EntitySync, sync_key
from infra.dynamics_emulator import ManualClock
from infra.dynamics_emulator.emulator import Emulator

NEW_ACCOUNT = "0a0a0a0a-1111-4222-8333-444455556666"


@pytest.fixture
def emulator_clock() -> ManualClock:
    """The emulator runs on a clock the test moves (token expiry)."""
    return ManualClock()


async def loaded(runtime: ImporterRuntime, await_applied: Any) -> None:
    for s in (await runtime.full_load()).values():
        await await_applied(s.batch_ids)


async def test_delta_carries_creates_updates_and_deletes(
    runtime: ImporterRuntime, store: RecordStore, emulator: Emulator, await_applied: Any
) -> None:
    await loaded(runtime, await_applied)
    gen = emulator.generator
    owner = gen.row("systemusers", 3)["systemuserid"]
    contact = gen.row("contacts", 5)
    lead = gen.row("leads", 9)
    emulator.mutate(
        "create",
        "accounts",
        NEW_ACCOUNT,
        {"name": "Neue Kunden GmbH", "ownerid@odata.bind": f"/systemusers({owner})"},
        user=3,
    )
    emulator.mutate("update", "contacts", contact["contactid"], {"jobtitle": "CTO"}, user=4)
    emulator.mutate("delete", "leads", lead["leadid"])

    stats = await runtime.tracker.sync()
    assert stats["account"].records == 1
    assert stats["contact"].records == 1
    assert stats["lead"].deletes == 1
    assert stats["opportunity"].records == stats["opportunity"].deletes == 0
    for s in stats.values():
        await await_applied(s.batch_ids)

    created = await store.get("account", NEW_ACCOUNT)
    assert created is not None and created.fields["name"] == "Neue Kunden GmbH"
    assert created.fields["ownerid"] == owner and created.fields["country"]
    updated = await store.get("contact", contact["contactid"])
    assert updated is not None and updated.fields["jobtitle"] == "CTO"
    assert updated.fields["firstname"] == contact["firstname"]
    assert updated.version == 2
    deleted = await store.get("lead", lead["leadid"])
    assert deleted is not None and deleted.deleted

    # The new delta link was stored: a second sync finds nothing.
    again = await runtime.tracker.sync()
    assert all(s.records == 0 and s.deletes == 0 for s in again.values())
    reports = await runtime.reconciler.reconcile_all(["account", "contact", "lead"])
    assert all(r.differences == 0 for r in reports.values()), [
        r.summary() for r in reports.values()
    ]


async def test_an_expired_token_falls_back_to_a_full_load_and_reconcile(
    runtime: ImporterRuntime,
    store: RecordStore,
    emulator: Emulator,
    emulator_clock: ManualClock,
    await_applied: Any,
    eventually: Any,
) -> None:
    await loaded(runtime, await_applied)
    before = await runtime.state.get(sync_key("quote"), EntitySync)
    assert before is not None and before.full_loads == 1
    quote = emulator.generator.row("quotes", 4)
    emulator.mutate("delete", "quotes", quote["quoteid"])
    emulator_clock.advance(days=8)  # past the 7-day change-tracking retention

    stats = await runtime.tracker.sync(["quote"])
    assert runtime.tracker.fallbacks == 1
    await await_applied(stats["quote"].batch_ids)
    after = await runtime.state.get(sync_key("quote"), EntitySync)
    assert after is not None and after.full_loads == 2 and after.phase == "delta"
    assert after.delta_link != before.delta_link

    # The reload could not see the delete; the reconcile that follows it repairs it.
    async def deleted() -> bool:
        rec = await store.get("quote", quote["quoteid"])
        return rec is not None and rec.deleted

    await eventually(deleted, within=60)
    report = await runtime.reconciler.reconcile("quote")
    assert report.differences == 0, report.summary()


async def test_run_loads_then_follows_changes_until_stopped(
    runtime: ImporterRuntime, store: RecordStore, emulator: Emulator, eventually: Any
) -> None:
    import asyncio

    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        last = emulator.generator.row("appointments", 299)

        async def loaded() -> bool:
            return await store.get("appointment", last["activityid"]) is not None

        await eventually(loaded, within=60, message="full load through run()")
        emulator.mutate("update", "appointments", last["activityid"], {"location": "Sala B"})

        async def followed() -> bool:
            rec = await store.get("appointment", last["activityid"])
            return rec is not None and rec.fields.get("location") == "Sala B"

        await eventually(followed, within=60, message="delta through run()")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert task.exception() is None
