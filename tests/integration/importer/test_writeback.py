"""Writeback: device changes reach Dynamics; conflicts merge field-wise; storms lose nothing;
echoes are suppressed; failures go to a dead-letter list admins can retry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.messaging.broker import NatsBroker
from backend.messaging.subjects import OUTBOUND_STREAM
from backend.store.base import RecordStore
from importer.runtime import ImporterRuntime
from importer.state import WritebackDone, done_key
from infra.dynamics_emulator.config import FaultConfig, LimitsConfig
from infra.dynamics_emulator.emulator import Emulator
from sync_protocol.changesets import Mutation
from sync_protocol.records import is_upstream


@pytest.fixture
async def loaded(runtime: ImporterRuntime, await_applied: Any) -> ImporterRuntime:
    for s in (await runtime.full_load()).values():
        await await_applied(s.batch_ids)
    return runtime


@pytest.fixture
async def writeback(loaded: ImporterRuntime, broker: NatsBroker) -> AsyncIterator[ImporterRuntime]:
    """The loaded importer with its writeback consumer running."""
    stop = asyncio.Event()
    task = asyncio.create_task(loaded.writeback.run(broker, stop))
    try:
        yield loaded
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def written(runtime: ImporterRuntime, eventually: Any, *change_ids: str) -> None:
    async def all_done() -> bool:
        for cid in change_ids:
            if await runtime.state.get(done_key(cid), WritebackDone) is None:
                return False
        return True

    await eventually(all_done, within=90, message=f"writeback of {change_ids}")


async def sync_and_apply(runtime: ImporterRuntime, entity: str, await_applied: Any) -> Any:
    stats = (await runtime.tracker.sync([entity]))[entity]
    await await_applied(stats.batch_ids)
    return stats


async def test_device_update_is_written_and_its_echo_changes_nothing(
    writeback: ImporterRuntime,
    store: RecordStore,
    emulator: Emulator,
    broker: NatsBroker,
    push: Any,
    now_clock: Any,
    eventually: Any,
    await_applied: Any,
) -> None:
    row = emulator.generator.row("accounts", 3)
    rid, owner = row["accountid"], row["_ownerid_value"]
    rec = await store.get("account", rid)
    assert rec is not None
    result = await push(
        owner,
        [
            Mutation(
                entity="account",
                id=rid,
                base_version=rec.version,
                clock=now_clock("dev1"),
                fields={"name": "Device Name S.p.A.", "telephone1": "+39 02 1234567"},
            )
        ],
    )
    assert result.results[0].outcome == "applied"
    await written(writeback, eventually, f"{result.changeset_id}/0")
    crm = emulator.dataset.get("accounts", rid)
    assert crm is not None
    assert crm["name"] == "Device Name S.p.A." and crm["telephone1"] == "+39 02 1234567"
    assert crm["address1_city"] == row["address1_city"]

    before = await store.get("account", rid)
    assert before is not None
    stats = await sync_and_apply(writeback, "account", await_applied)
    assert stats.echoes == 1
    after = await store.get("account", rid)
    assert after is not None
    # The echo changed no value; it only gave the store the new ETag and upstream clocks.
    same = {k: v for k, v in before.fields.items() if k != "modifiedon"}
    assert {k: v for k, v in after.fields.items() if k != "modifiedon"} == same
    assert after.upstream_etag == crm["@odata.etag"]
    assert is_upstream(after.clocks["name"]) and is_upstream(after.clocks["telephone1"])
    # No ping-pong: the only outbound message is the device's own change.
    assert (await broker.stream_state(OUTBOUND_STREAM)).messages == 1
    again = await sync_and_apply(writeback, "account", await_applied)
    assert again.records == 0 and again.echoes == 0


async def test_a_concurrent_dynamics_edit_is_merged_field_wise(
    loaded: ImporterRuntime,
    store: RecordStore,
    emulator: Emulator,
    broker: NatsBroker,
    push: Any,
    now_clock: Any,
    eventually: Any,
    await_applied: Any,
) -> None:
    row = emulator.generator.row("contacts", 8)
    rid, owner = row["contactid"], row["_ownerid_value"]
    rec = await store.get("contact", rid)
    assert rec is not None
    result = await push(
        owner,
        [
            Mutation(
                entity="contact",
                id=rid,
                base_version=rec.version,
                clock=now_clock("dev1"),
                fields={"jobtitle": "Direttore tecnico", "address1_city": "Bergamo"},
            )
        ],
    )
    # Meanwhile a CRM user edits another column of the same row: the ETag moves on.
    emulator.mutate("update", "contacts", rid, {"mobilephone": "+39 333 0000000"}, user=5)

    stop = asyncio.Event()
    task = asyncio.create_task(loaded.writeback.run(broker, stop))
    try:
        await written(loaded, eventually, f"{result.changeset_id}/0")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert loaded.writeback.stats.merged == 1  # went through the 412 re-read and merge
    crm = emulator.dataset.get("contacts", rid)
    assert crm is not None
    assert crm["jobtitle"] == "Direttore tecnico" and crm["address1_city"] == "Bergamo"
    assert crm["mobilephone"] == "+39 333 0000000"

    await sync_and_apply(loaded, "contact", await_applied)
    stored = await store.get("contact", rid)
    assert stored is not None
    assert stored.fields["mobilephone"] == "+39 333 0000000"
    assert stored.fields["jobtitle"] == "Direttore tecnico"
    assert stored.fields["address1_city"] == "Bergamo"
    report = await loaded.reconciler.reconcile("contact")
    assert report.differences == 0, report.summary()


async def test_a_device_create_keeps_its_guid_in_dynamics(
    writeback: ImporterRuntime,
    store: RecordStore,
    emulator: Emulator,
    push: Any,
    now_clock: Any,
    eventually: Any,
    await_applied: Any,
) -> None:
    owner = emulator.generator.row("systemusers", 2)["systemuserid"]
    account = emulator.generator.row("accounts", 1)["accountid"]
    new_id = str(uuid.uuid4())
    result = await push(
        owner,
        [
            Mutation(
                entity="contact",
                id=new_id,
                clock=now_clock("dev1"),
                fields={"firstname": "Giulia", "lastname": "Neri", "parentcustomerid": account},
            )
        ],
    )
    assert result.results[0].outcome == "applied"
    await written(writeback, eventually, f"{result.changeset_id}/0")
    crm = emulator.dataset.get("contacts", new_id)
    assert crm is not None and crm["contactid"] == new_id
    assert crm["_parentcustomerid_value"] == account
    assert crm["_ownerid_value"] == owner and crm["fullname"] == "Giulia Neri"

    await sync_and_apply(writeback, "contact", await_applied)
    stored = await store.get("contact", new_id)
    assert stored is not None and stored.fields["fullname"] == "Giulia Neri"
    assert stored.upstream_etag == crm["@odata.etag"]
    report = await writeback.reconciler.reconcile("contact")
    assert report.differences == 0, report.summary()


async def test_a_429_and_5xx_storm_loses_nothing(
    loaded: ImporterRuntime,
    store: RecordStore,
    emulator: Emulator,
    broker: NatsBroker,
    push: Any,
    now_clock: Any,
    eventually: Any,
) -> None:
    rows = [emulator.generator.row("leads", i) for i in range(40)]
    change_ids: list[str] = []
    by_owner: dict[str, list[Mutation]] = {}
    for i, row in enumerate(rows):
        rec = await store.get("lead", row["leadid"])
        assert rec is not None
        by_owner.setdefault(row["_ownerid_value"], []).append(
            Mutation(
                entity="lead",
                id=row["leadid"],
                base_version=rec.version,
                clock=now_clock("dev1"),
                fields={"subject": f"Storm {i}"},
            )
        )
    for owner, mutations in by_owner.items():
        result = await push(owner, mutations)
        change_ids += [f"{result.changeset_id}/{r.index}" for r in result.results]
    assert len(change_ids) == 40

    emulator.faults.configure(FaultConfig(seed=3, error_503_rate=0.3, error_500_rate=0.1))
    emulator.protection.configure(LimitsConfig(window_s=1.0, max_requests=15, max_concurrent=3))
    stop = asyncio.Event()
    task = asyncio.create_task(loaded.writeback.run(broker, stop))
    try:
        await written(loaded, eventually, *change_ids)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    emulator.faults.configure(FaultConfig())
    stats = loaded.client.stats
    assert stats.server_errors + stats.throttled + loaded.writeback.stats.retries > 0
    assert await loaded.writeback.dead_letters() == []
    for i, row in enumerate(rows):
        crm = emulator.dataset.get("leads", row["leadid"])
        assert crm is not None and crm["subject"] == f"Storm {i}"


async def test_failures_go_to_dead_letters_that_admins_can_retry(
    make_runtime: Any,
    applier: Any,
    store: RecordStore,
    emulator: Emulator,
    broker: NatsBroker,
    push: Any,
    now_clock: Any,
    eventually: Any,
    await_applied: Any,
) -> None:
    runtime = make_runtime(writeback_attempts=2)
    await runtime.start()
    for s in (await runtime.full_load()).values():
        await await_applied(s.batch_ids)
    row = emulator.generator.row("contacts", 2)
    rec = await store.get("contact", row["contactid"])
    assert rec is not None
    missing_account = str(uuid.uuid4())  # not in Dynamics (yet)
    result = await push(
        row["_ownerid_value"],
        [
            Mutation(
                entity="contact",
                id=row["contactid"],
                base_version=rec.version,
                clock=now_clock("dev1"),
                fields={"parentcustomerid": missing_account},
            )
        ],
    )
    change_id = f"{result.changeset_id}/0"
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.writeback.run(broker, stop))
    try:

        async def dead() -> bool:
            return len(await runtime.writeback.dead_letters()) == 1

        await eventually(dead, within=60)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    (letter,) = await runtime.writeback.dead_letters()
    assert letter.change.change_id == change_id
    assert letter.code == "importer.dynamics.not_found" and letter.attempts >= 2

    # The referenced account appears in Dynamics; an admin retries the change.
    emulator.mutate("create", "accounts", missing_account, {"name": "Late Account"})
    outcome = await runtime.writeback.retry_dead_letter(change_id)
    assert outcome.status == "written"
    assert await runtime.writeback.dead_letters() == []
    crm = emulator.dataset.get("contacts", row["contactid"])
    assert crm is not None and crm["_parentcustomerid_value"] == missing_account


async def test_done_markers_are_pruned_after_the_redelivery_horizon(
    runtime: ImporterRuntime,
) -> None:
    await runtime.state.put(done_key("old/0"), WritebackDone(at_ms=1_000))
    await runtime.state.put(done_key("new/0"), WritebackDone(at_ms=10_000))
    assert await runtime.writeback.prune_done(5_000) == 1
    assert await runtime.state.get(done_key("old/0"), WritebackDone) is None
    assert await runtime.state.get(done_key("new/0"), WritebackDone) is not None


async def test_a_device_delete_reaches_dynamics_and_its_echo_is_dropped(
    writeback: ImporterRuntime,
    store: RecordStore,
    emulator: Emulator,
    push: Any,
    now_clock: Any,
    eventually: Any,
    await_applied: Any,
) -> None:
    row = emulator.generator.row("leads", 17)
    rec = await store.get("lead", row["leadid"])
    assert rec is not None
    result = await push(
        row["_ownerid_value"],
        [
            Mutation(
                entity="lead",
                id=row["leadid"],
                op="delete",
                base_version=rec.version,
                clock=now_clock("dev1"),
            )
        ],
    )
    assert result.results[0].deleted
    await written(writeback, eventually, f"{result.changeset_id}/0")
    assert emulator.dataset.get("leads", row["leadid"]) is None

    stats = await sync_and_apply(writeback, "lead", await_applied)
    assert (stats.deletes, stats.echoes, stats.batch_ids) == (0, 1, [])
    after = await store.get("lead", row["leadid"])
    assert after is not None and after.deleted and after.version == rec.version + 1
