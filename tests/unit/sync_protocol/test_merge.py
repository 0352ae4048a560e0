"""Every merge outcome, one test each."""

from __future__ import annotations

from sync_protocol.merge import merge
from sync_protocol.policy import EntityPolicy, WritePermission
from sync_protocol.records import Record
from tests.support.protocol import ACCOUNT_ID, ctx, mut, ts, up


def test_create_is_applied() -> None:
    r = merge(None, mut({"name": "Neu GmbH"}, base=0), ctx())
    assert r.result.outcome == "applied"
    assert r.changed and r.record is not None
    assert r.record.version == 1 and r.record.fields == {"name": "Neu GmbH"}
    assert r.record.origin == "device:dev-a"


def test_fast_forward(base_record: Record) -> None:
    r = merge(base_record, mut({"telephone1": "+39 02 9999"}, base=1), ctx())
    assert r.result.outcome == "applied"
    assert r.result.field_outcomes == {"telephone1": "applied"}
    assert r.record is not None and r.record.version == 2
    assert r.record.fields["telephone1"] == "+39 02 9999"
    assert r.record.field_versions["telephone1"] == 2


def test_fast_forward_lifts_a_trailing_clock(base_record: Record) -> None:
    # The device never observed the server clock; its write still wins and sorts after.
    r = merge(base_record, mut({"name": "Rossi Srl"}, clock=ts(-5_000)), ctx())
    assert r.result.outcome == "applied" and r.record is not None
    assert r.record.clocks["name"] > base_record.clocks["name"]


def test_disjoint_field_merge(base_record: Record) -> None:
    server = merge(base_record, mut({"name": "Rossi Srl"}, clock=up(5)), ctx(source="upstream"))
    assert server.record is not None and server.record.version == 2
    device = merge(server.record, mut({"telephone1": "+39 333"}, base=1, clock=ts(3)), ctx())
    assert device.result.outcome == "merged"
    assert device.record is not None
    assert device.record.fields["name"] == "Rossi Srl"
    assert device.record.fields["telephone1"] == "+39 333"


def test_lww_conflict_later_clock_wins(base_record: Record) -> None:
    other = merge(base_record, mut({"address1_city": "Torino"}, clock=ts(5, "dev-b")), ctx())
    assert other.record is not None
    late = merge(other.record, mut({"address1_city": "Genova"}, base=1, clock=ts(9)), ctx())
    assert late.result.outcome == "merged"
    assert late.result.fields == {"address1_city": "Genova"}
    early = merge(other.record, mut({"address1_city": "Genova"}, base=1, clock=ts(2)), ctx())
    assert early.result.outcome == "conflict"
    assert early.result.code == "conflict_overridden"
    assert early.result.field_outcomes == {"address1_city": "overridden"}
    assert early.result.fields == {"address1_city": "Torino"}
    assert not early.changed
    assert [c.status for c in early.conflicts] == ["auto_resolved"]


def test_upstream_wins_beats_a_later_device_clock(base_record: Record) -> None:
    policy = EntityPolicy(fields={"accountnumber": "upstream_wins"})
    server = merge(
        base_record, mut({"accountnumber": "IT-002"}, clock=up(5)), ctx(policy, source="upstream")
    )
    assert server.record is not None
    device = merge(
        server.record, mut({"accountnumber": "IT-XXX"}, base=1, clock=ts(50)), ctx(policy)
    )
    assert device.result.outcome == "conflict"
    assert device.record is not None and device.record.fields["accountnumber"] == "IT-002"


def test_upstream_wins_field_fast_forwards_when_not_concurrent(base_record: Record) -> None:
    policy = EntityPolicy(fields={"accountnumber": "upstream_wins"})
    r = merge(base_record, mut({"accountnumber": "IT-777"}, base=1), ctx(policy))
    assert r.result.outcome == "applied"
    assert r.record is not None and r.record.fields["accountnumber"] == "IT-777"


def test_manual_conflict_holds_the_device_value(base_record: Record) -> None:
    policy = EntityPolicy(fields={"description": "manual"})
    server = merge(
        base_record,
        mut({"description": "Nota del back office"}, clock=up(5)),
        ctx(policy, source="upstream"),
    )
    assert server.record is not None
    device = merge(
        server.record,
        mut({"description": "Nota dal campo", "name": "Rossi 2"}, base=1, clock=ts(9)),
        ctx(policy),
    )
    assert device.result.outcome == "conflict"
    assert device.result.code == "conflict_held"
    assert device.result.field_outcomes == {"description": "held", "name": "applied"}
    assert device.record is not None
    assert device.record.fields["description"] == "Nota del back office"
    assert device.record.fields["name"] == "Rossi 2"
    [conflict] = device.conflicts
    assert (conflict.status, conflict.device_value, conflict.server_value) == (
        "open",
        "Nota dal campo",
        "Nota del back office",
    )


def test_update_after_delete_lww_delete_newer(base_record: Record) -> None:
    deleted = merge(base_record, mut(op="delete", base=1, clock=ts(20, "dev-b")), ctx())
    assert deleted.record is not None and deleted.record.deleted
    update = merge(deleted.record, mut({"name": "Zombie"}, base=1, clock=ts(10)), ctx())
    assert update.result.outcome == "conflict"
    assert update.result.code == "record_deleted"
    assert update.record is not None and update.record.deleted


def test_update_after_delete_lww_update_newer_resurrects(base_record: Record) -> None:
    deleted = merge(base_record, mut(op="delete", base=1, clock=ts(5, "dev-b")), ctx())
    assert deleted.record is not None
    update = merge(deleted.record, mut({"name": "Vivo"}, base=1, clock=ts(10)), ctx())
    assert update.record is not None and not update.record.deleted
    assert update.record.fields["name"] == "Vivo"
    assert update.result.outcome == "merged"


def test_update_after_delete_with_delete_wins(base_record: Record) -> None:
    policy = EntityPolicy(delete="delete_wins")
    deleted = merge(base_record, mut(op="delete", base=1, clock=ts(5, "dev-b")), ctx(policy))
    assert deleted.record is not None
    update = merge(deleted.record, mut({"name": "Vivo"}, base=1, clock=ts(10)), ctx(policy))
    assert update.result.outcome == "conflict" and update.result.code == "record_deleted"
    assert update.record is not None and update.record.deleted


def test_update_after_delete_with_update_wins(base_record: Record) -> None:
    policy = EntityPolicy(delete="update_wins")
    deleted = merge(base_record, mut(op="delete", base=1, clock=ts(20, "dev-b")), ctx(policy))
    assert deleted.record is not None
    update = merge(deleted.record, mut({"name": "Vivo"}, base=1, clock=ts(10)), ctx(policy))
    assert update.record is not None and not update.record.deleted
    assert update.record.deleted_clock is None


def test_delete_after_update_lww(base_record: Record) -> None:
    updated = merge(base_record, mut({"name": "Nuovo"}, clock=ts(20, "dev-b")), ctx())
    assert updated.record is not None
    stale_delete = merge(updated.record, mut(op="delete", base=1, clock=ts(10)), ctx())
    assert stale_delete.result.outcome == "conflict"
    assert stale_delete.result.code == "record_updated"
    assert stale_delete.record is not None and not stale_delete.record.deleted
    newer_delete = merge(updated.record, mut(op="delete", base=1, clock=ts(30)), ctx())
    assert newer_delete.record is not None and newer_delete.record.deleted


def test_delete_after_update_update_wins(base_record: Record) -> None:
    policy = EntityPolicy(delete="update_wins")
    updated = merge(base_record, mut({"name": "Nuovo"}, clock=ts(20, "dev-b")), ctx(policy))
    assert updated.record is not None
    d = merge(updated.record, mut(op="delete", base=1, clock=ts(90)), ctx(policy))
    assert d.result.outcome == "conflict"
    assert d.record is not None and not d.record.deleted


def test_upstream_delete_always_wins(base_record: Record) -> None:
    d = merge(base_record, mut(op="delete", base=0, clock=up(1)), ctx(source="upstream"))
    assert d.record is not None and d.record.deleted
    u = merge(d.record, mut({"name": "x"}, base=1, clock=ts(500)), ctx())
    assert u.record is not None and u.record.deleted
    assert u.result.code == "record_deleted"


def test_stale_base_ahead_of_server_is_rejected(base_record: Record) -> None:
    r = merge(base_record, mut({"name": "x"}, base=7), ctx())
    assert r.result.outcome == "rejected" and r.result.code == "invalid_base_version"
    assert r.record is None and not r.changed


def test_stale_base_behind_merges_per_field(base_record: Record) -> None:
    v2 = merge(base_record, mut({"name": "A"}, base=1, clock=ts(5, "dev-b")), ctx())
    assert v2.record is not None
    v3 = merge(v2.record, mut({"name": "B"}, base=2, clock=ts(6, "dev-b")), ctx())
    assert v3.record is not None and v3.record.version == 3
    # Based on version 1: concurrent with both name writes, untouched phone fast-forwards.
    r = merge(v3.record, mut({"name": "C", "telephone1": "1"}, base=1, clock=ts(4)), ctx())
    assert r.result.field_outcomes == {"name": "overridden", "telephone1": "applied"}
    assert r.record is not None and r.record.fields["name"] == "B"


def test_unknown_entity_is_rejected() -> None:
    r = merge(None, mut({"name": "x"}, base=0, entity="invoice"), ctx())
    assert r.result.outcome == "rejected" and r.result.code == "unknown_entity"


def test_unknown_field_is_rejected(base_record: Record) -> None:
    r = merge(base_record, mut({"shoe_size": 44}), ctx())
    assert r.result.outcome == "rejected" and r.result.code == "unknown_field"


def test_wrongly_typed_field_is_rejected(base_record: Record) -> None:
    r = merge(base_record, mut({"numberofemployees": "many"}), ctx())
    assert r.result.code == "invalid_field_value"
    r = merge(base_record, mut({"industrycode": 999}), ctx())
    assert r.result.code == "invalid_field_value"


def test_system_field_is_rejected_for_devices(base_record: Record) -> None:
    r = merge(base_record, mut({"modifiedon": "2026-01-01T00:00:00Z"}), ctx())
    assert r.result.code == "invalid_field_value"
    up_r = merge(
        base_record,
        mut({"modifiedon": "2026-01-01T00:00:00Z"}, clock=up(3)),
        ctx(source="upstream"),
    )
    assert up_r.result.outcome == "applied"


def test_field_not_writable_by_profile(base_record: Record) -> None:
    perm = WritePermission(create=True, update=True, fields=frozenset({"telephone1"}))
    r = merge(base_record, mut({"telephone1": "1", "name": "x"}), ctx(permission=perm))
    assert r.result.outcome == "rejected" and r.result.code == "field_not_writable"
    assert r.record is None


def test_create_and_delete_need_permission(base_record: Record) -> None:
    perm = WritePermission(update=True)
    assert merge(None, mut({"name": "x"}, base=0), ctx(permission=perm)).result.code == (
        "operation_not_allowed"
    )
    assert merge(base_record, mut(op="delete"), ctx(permission=perm)).result.code == (
        "operation_not_allowed"
    )


def test_bad_record_id_is_rejected() -> None:
    r = merge(None, mut({"name": "x"}, base=0, id="not-a-uuid"), ctx())
    assert r.result.code == "invalid_record_id"


def test_update_of_missing_record_is_rejected() -> None:
    r = merge(None, mut({"name": "x"}, base=3), ctx())
    assert r.result.code == "record_not_found"


def test_same_mutation_twice_changes_nothing(base_record: Record) -> None:
    m = mut({"name": "Uno", "telephone1": "2"}, clock=ts(7))
    first = merge(base_record, m, ctx())
    assert first.record is not None
    second = merge(first.record, m, ctx())
    assert not second.changed
    assert second.record is not None and second.record.content() == first.record.content()
    assert second.record.version == first.record.version


def test_upstream_etag_is_recorded(base_record: Record) -> None:
    m = mut({"name": "Dyn"}, clock=up(4))
    m.etag = 'W/"1234"'
    r = merge(base_record, m, ctx(source="upstream"))
    assert r.record is not None and r.record.upstream_etag == 'W/"1234"'
    assert r.record.origin == "upstream:dynamics"


def test_result_carries_identity(base_record: Record) -> None:
    r = merge(base_record, mut({"name": "x"}), ctx(), index=4)
    assert (r.result.index, r.result.entity, r.result.id) == (4, "account", ACCOUNT_ID)
