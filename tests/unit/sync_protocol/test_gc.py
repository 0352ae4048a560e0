"""Wire types that opt out of the cyclic GC cannot form cycles, and decoded pages stay untracked.

``gc=False`` on a struct is only safe if no instance can be part of a reference cycle (a
cycle through an untracked object is never collected). These tests walk the declared
field types of every ``gc=False`` wire struct and refuse anything that could refer back:
a GC-tracked struct type, or a container of one. They also pin the property the decode
speed depends on: after decoding a page, nothing in its records is left for the
collector to visit.
"""

from __future__ import annotations

import gc
from typing import Any

import msgspec
import pytest

from sync_protocol.changesets import Mutation, MutationResult, PushRequest
from sync_protocol.checksum import ChannelChecksum
from sync_protocol.codec import decode, encode
from sync_protocol.hlc import HLC
from sync_protocol.pull import PullResponse, Removal
from sync_protocol.records import RecordChange

UNTRACKED = [HLC, RecordChange, Removal, Mutation, MutationResult, ChannelChecksum]

_LEAVES = (
    msgspec.inspect.AnyType,
    msgspec.inspect.NoneType,
    msgspec.inspect.BoolType,
    msgspec.inspect.IntType,
    msgspec.inspect.FloatType,
    msgspec.inspect.StrType,
    msgspec.inspect.LiteralType,
)


def _reachable_types(t: msgspec.inspect.Type, seen: set[type]) -> None:
    """Check that nothing under ``t`` can hold a GC-tracked struct."""
    if isinstance(t, _LEAVES):
        return
    if isinstance(t, msgspec.inspect.StructType):
        assert t.cls.__struct_config__.gc is False, f"{t.cls.__name__} is GC-tracked"
        if t.cls not in seen:
            seen.add(t.cls)
            for f in t.fields:
                _reachable_types(f.type, seen)
        return
    if isinstance(t, msgspec.inspect.UnionType):
        for u in t.types:
            _reachable_types(u, seen)
        return
    if isinstance(t, msgspec.inspect.DictType):
        _reachable_types(t.key_type, seen)
        _reachable_types(t.value_type, seen)
        return
    if isinstance(t, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        _reachable_types(t.item_type, seen)
        return
    raise AssertionError(f"unexpected field type {t!r}: decide whether it can form a cycle")


@pytest.mark.parametrize("cls", UNTRACKED, ids=lambda c: c.__name__)
def test_untracked_wire_types_hold_only_values_that_cannot_refer_back(cls: Any) -> None:
    # ``Any`` only appears as dict values of record fields: JSON values (decoded trees are
    # acyclic, and validate_fields admits only atoms).
    assert cls.__struct_config__.gc is False
    _reachable_types(msgspec.inspect.type_info(cls), set())


def test_pages_and_requests_themselves_stay_tracked() -> None:
    # One per message and holding lists of structs: nothing to gain, so left to the GC.
    assert PullResponse.__struct_config__.gc is True
    assert PushRequest.__struct_config__.gc is True


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_a_decoded_page_leaves_nothing_for_the_collector(fmt: str) -> None:
    page = PullResponse(
        protocol=1,
        checkpoint="x",
        has_more=False,
        changes=[
            RecordChange(
                entity="account",
                id=f"id-{i}",
                version=3,
                seq=i + 1,
                fields={"name": f"Azienda {i}", "revenue": 1.5, "statecode": 0, "x": None},
                clock=HLC(1_800_000_000_000, 0, "upstream:dynamics"),
                channels=("country:IT", "territory:IT-NW"),
            )
            for i in range(50)
        ],
        removals=[Removal(entity="contact", id="c1")],
        checksums={"country:IT": ChannelChecksum(50, 7)},
    )
    got = decode(encode(page, fmt), PullResponse, fmt)  # type: ignore[arg-type]
    assert got == page
    gc.collect()  # tuples of atoms are untracked by the first collection that sees them
    for c in got.changes:
        assert not gc.is_tracked(c)
        assert not gc.is_tracked(c.fields)
        assert type(c.channels) is tuple and not gc.is_tracked(c.channels)
    assert not gc.is_tracked(got.removals[0])
    assert not gc.is_tracked(got.checksums["country:IT"])


def test_channels_of_an_old_encoding_decode_as_a_tuple() -> None:
    raw = b'{"entity":"account","id":"a","version":1,"channels":["c:a","c:b"]}'
    assert decode(raw, RecordChange).channels == ("c:a", "c:b")
    assert encode(decode(raw, RecordChange)) == raw
