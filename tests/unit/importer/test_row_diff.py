"""Reducing a Dynamics row to what is news for the stored record."""

from __future__ import annotations

from importer.dynamics.row_diff import etag_version, reduce_row
from sync_protocol.changesets import Mutation
from sync_protocol.hlc import HLC
from sync_protocol.records import Record

ID = "11111111-2222-4333-8444-555555555555"
UP_OLD = HLC(1000, 1, "upstream:dynamics")
ROW = HLC(5000, 2, "upstream:dynamics")
DEV = HLC(3000, 0, "device:d1")


def stored(**extra_clocks: HLC) -> Record:
    fields = {"name": "Old", "telephone1": "1", "address1_city": "Roma", "modifiedon": "t1"}
    clocks = {k: UP_OLD for k in fields} | extra_clocks
    return Record(
        entity="account", id=ID, version=3, fields=fields, clocks=clocks, upstream_etag='W/"10"'
    )


def row(**values: object) -> Mutation:
    fields = {
        "name": "Old",
        "telephone1": "1",
        "address1_city": "Roma",
        "modifiedon": "t2",
    } | values
    return Mutation(entity="account", id=ID, clock=ROW, fields=fields, etag='W/"20"')


def test_unknown_record_gets_the_whole_row() -> None:
    m = row()
    assert reduce_row(m, None) is m


def test_only_columns_dynamics_changed_go_out() -> None:
    out = reduce_row(row(telephone1="2"), stored())
    assert out is not None
    assert out.fields == {"telephone1": "2", "modifiedon": "t2"}
    assert out.clock == ROW and out.etag == 'W/"20"'


def test_a_pending_device_edit_is_not_overridden_by_a_crm_edit_of_another_column() -> None:
    rec = stored(name=DEV)
    rec.fields["name"] = "Device"
    out = reduce_row(row(telephone1="2"), rec)  # Dynamics still has the old name
    assert out is not None and "name" not in out.fields
    assert out.fields["telephone1"] == "2"


def test_our_own_write_is_re_stamped_and_a_later_crm_change_goes_out() -> None:
    rec = stored(name=DEV, address1_city=DEV)
    rec.fields.update(name="Device", address1_city="Torino")
    out = reduce_row(
        row(name="Device", address1_city="Napoli"),
        rec,
        written={"name": "Device", "address1_city": "Torino"},
    )
    assert out is not None
    assert out.fields["name"] == "Device"  # same value, re-stamped upstream
    assert out.fields["address1_city"] == "Napoli"  # CRM changed it after our write
    assert out.clock > DEV and out.clock >= ROW


def test_re_stamp_lifts_the_clock_above_a_device_clock_that_runs_ahead() -> None:
    ahead = HLC(9000, 7, "device:d1")
    rec = stored(name=ahead)
    rec.fields["name"] = "Device"
    out = reduce_row(row(name="Device"), rec, written={"name": "Device"})
    assert out is not None and out.clock > ahead and out.clock.node == "upstream:dynamics"


def test_a_newer_device_edit_is_kept_over_our_earlier_write() -> None:
    rec = stored(name=DEV)
    rec.fields["name"] = "Newer device value"
    out = reduce_row(row(name="Device"), rec, written={"name": "Device"})
    assert out is not None and "name" not in out.fields


def test_nothing_new_is_none_but_a_new_etag_alone_is_news() -> None:
    rec = stored()
    same = Mutation(entity="account", id=ID, clock=ROW, fields=dict(rec.fields), etag='W/"10"')
    assert reduce_row(same, rec) is None
    only_etag = reduce_row(row(modifiedon="t1"), rec)
    assert only_etag is not None and only_etag.fields == {} and only_etag.etag == 'W/"20"'


def test_etag_versions() -> None:
    assert etag_version('W/"915244"') == 915244
    assert etag_version("opaque") is None
    assert etag_version(None) is None


def test_a_null_the_store_never_had_is_no_news() -> None:
    rec = stored()
    assert reduce_row(row(jobtitle=None), rec, None) is not None  # new ETag only
    out = reduce_row(row(jobtitle=None), rec)
    assert out is not None and "jobtitle" not in out.fields
