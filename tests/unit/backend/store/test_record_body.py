"""The compact stored body: every record survives the round trip, whatever its bookkeeping."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from backend.store.record_body import decode_change, decode_record, encode_body
from sync_protocol.hlc import HLC
from sync_protocol.records import Record

NAMES = ("name", "city", "revenue", "ownerid", "gone")
clocks = st.builds(
    HLC,
    st.integers(1_700_000_000_000, 1_700_000_000_009),
    st.integers(0, 2),
    st.sampled_from(["upstream:dynamics", "dev-a", "dev-b"]),
)
values = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=8)
)


@st.composite
def records(draw: st.DrawFn) -> Record:
    fields = draw(st.dictionaries(st.sampled_from(NAMES[:4]), values))
    # Bookkeeping may cover fewer names than ``fields``, or names it no longer has.
    clock_names = draw(st.sets(st.sampled_from(NAMES)))
    version_names = draw(st.sets(st.sampled_from(NAMES)))
    deleted = draw(st.booleans())
    return Record(
        entity="account",
        id="7d1c7f4e-0000-4000-8000-000000000001",
        version=draw(st.integers(1, 9)),
        seq=draw(st.integers(1, 10**9)),
        fields=fields,
        clocks={n: draw(clocks) for n in sorted(clock_names)},
        field_versions={n: draw(st.integers(0, 9)) for n in sorted(version_names)},
        deleted=deleted,
        deleted_clock=draw(st.one_of(st.none(), clocks)),
        channels=draw(st.lists(st.sampled_from(["owner:u1", "country:IT", "territory:IT-1"]))),
        origin=draw(st.sampled_from(["", "device:d1", "upstream:dynamics"])),
        upstream_etag=draw(st.one_of(st.none(), st.just('W/"42"'))),
        updated_ms=draw(st.integers(0, 2**40)),
    )


@given(records())
def test_a_record_round_trips_exactly(rec: Record) -> None:
    assert decode_record(encode_body(rec), rec.entity, rec.id, rec.seq) == rec


@given(records())
def test_the_feed_form_is_what_devices_receive(rec: Record) -> None:
    change = decode_change(encode_body(rec), rec.entity, rec.id, rec.seq)
    assert change == rec.to_change()


@given(records())
def test_bodies_written_as_whole_records_still_decode(rec: Record) -> None:
    legacy = msgspec.msgpack.encode(rec)
    clock = msgspec.msgpack.encode(rec.max_clock())
    assert decode_record(legacy, rec.entity, rec.id, rec.seq) == rec
    assert decode_change(legacy, rec.entity, rec.id, rec.seq, clock) == rec.to_change()
    assert decode_change(legacy, rec.entity, rec.id, rec.seq) == rec.to_change()


def test_an_upstream_record_stores_one_clock_and_no_per_field_bookkeeping() -> None:
    clock = HLC(1_700_000_000_000, 0, "upstream:dynamics")
    fields = {f"field{i}": f"value {i}" for i in range(18)}
    rec = Record(
        entity="account",
        id="7d1c7f4e-0000-4000-8000-000000000001",
        version=1,
        fields=fields,
        clocks=dict.fromkeys(fields, clock),
        field_versions=dict.fromkeys(fields, 1),
        channels=["owner:u1"],
    )
    body = encode_body(rec)
    whole = msgspec.msgpack.encode(rec)
    assert body.count(b"upstream:dynamics") == 1
    assert len(body) < len(whole) // 2
