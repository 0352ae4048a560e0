"""Full load from the emulator through NATS and the applier into SQLite."""

from __future__ import annotations

from typing import Any

from backend.store.base import RecordStore
from importer.runtime import ImporterRuntime
from importer.state import EntitySync, sync_key
from infra.dynamics_emulator.emulator import Emulator
from sync_protocol.entities import validate_fields


async def test_full_load_equals_the_source(
    runtime: ImporterRuntime, store: RecordStore, emulator: Emulator, await_applied: Any
) -> None:
    stats = await runtime.full_load()
    for entity, s in stats.items():
        expected = emulator.generator.count(runtime.maps[entity].entity_set)
        assert s.records == expected, entity
        assert s.pages >= expected // 100
        await await_applied(s.batch_ids)
        st = await runtime.state.get(sync_key(entity), EntitySync)
        assert st is not None and st.phase == "delta" and st.delta_link is not None
        assert "$deltatoken=" in st.delta_link

    reports = await runtime.reconciler.reconcile_all(list(stats))
    for entity, report in reports.items():
        assert report.differences == 0, report.summary()
        assert report.dynamics_count == report.store_count == stats[entity].records

    # Spot-check a record: mapped fields, scope, clock and ETag as Dynamics has them.
    row = emulator.generator.row("accounts", 7)
    rec = await store.get("account", row["accountid"])
    assert rec is not None and rec.version == 1 and not rec.deleted
    assert rec.fields["name"] == row["name"]
    assert rec.fields["ownerid"] == row["_ownerid_value"]
    assert rec.fields["revenue"] == row["revenue"]
    assert rec.upstream_etag == row["@odata.etag"]
    assert rec.fields["country"] in {"IT", "DE", "FR", "ES", "PL"}
    assert f"country:{rec.fields['country']}" in rec.channels
    assert all(c.node == "upstream:dynamics" for c in rec.clocks.values())
    validate_fields("account", rec.fields, allow_system=True)


async def test_a_second_load_is_a_no_op_and_restart_changes_nothing(
    runtime: ImporterRuntime, store: RecordStore, await_applied: Any
) -> None:
    first = await runtime.full_load()
    for s in first.values():
        await await_applied(s.batch_ids)
    head = await store.head_seq()
    again = await runtime.full_load()
    assert all(s.already_loaded and s.records == 0 for s in again.values())
    restarted = await runtime.full_load(restart=True)
    for s in restarted.values():
        await await_applied(s.batch_ids)
    # A reload is reduced against the store: nothing changed in Dynamics, nothing written.
    assert await store.head_seq() == head


async def test_reconcile_reports_missing_extra_and_divergent_and_repairs_them(
    runtime: ImporterRuntime, store: RecordStore, emulator: Emulator, await_applied: Any
) -> None:
    import time

    from sync_protocol.changesets import Mutation
    from sync_protocol.hlc import HLC

    for s in (await runtime.full_load(["lead"])).values():
        await await_applied(s.batch_ids)
    gen = emulator.generator
    drifted, gone = gen.row("leads", 1)["leadid"], gen.row("leads", 2)["leadid"]
    # Dynamics changes behind our back (no delta sync runs in between) ...
    emulator.mutate("delete", "leads", gone)
    created = emulator.mutate(
        "create", "leads", None, {"subject": "Fiera Milano", "lastname": "Bassi"}
    )
    assert created is not None
    # ... and the store drifts from Dynamics.
    now = int(time.time() * 1000)
    bad = Mutation(
        entity="lead", id=drifted, clock=HLC(now, 0, "upstream:test"), fields={"subject": "drift"}
    )
    await await_applied(await runtime.publisher.publish("lead", [bad], "test-drift"))

    report = await runtime.reconciler.reconcile("lead")
    assert report.missing == [created["leadid"]]
    assert report.extra == [gone]
    assert report.divergent == {drifted: ["subject"]}
    assert report.dynamics_count == report.store_count == gen.count("leads")

    repaired = await runtime.reconciler.reconcile("lead", repair=True)
    assert repaired.repaired == 3
    await await_applied(repaired.repair_batch_ids)
    assert (await runtime.reconciler.reconcile("lead")).differences == 0
    rec = await store.get("lead", drifted)
    assert rec is not None and rec.fields["subject"] == gen.row("leads", 1)["subject"]
