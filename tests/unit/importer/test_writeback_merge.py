"""Writeback's field-wise merge after a 412, per-record ordering, and upstream batch splitting."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from backend.applier.messages import OutboundChange
from importer.dynamics.writeback import _rounds, merge_with_dynamics
from importer.errors import PublishError
from importer.publisher import UpstreamPublisher, content_digest
from sync_protocol.changesets import Mutation, UpstreamBatch
from sync_protocol.hlc import HLC
from sync_protocol.policy import EntityPolicy

ID = "11111111-2222-4333-8444-555555555555"
DEVICE = "device:d1"
UP = "upstream:dynamics"


def test_without_base_the_device_value_goes_in() -> None:
    # Dynamics keeps one modifiedon per row: a CRM edit of another column must not make
    # the device lose its own columns.
    to_write, lost = merge_with_dynamics(
        "account",
        ID,
        {"name": "Device name", "telephone1": "+39 1"},
        {"name": HLC(2000, 0, DEVICE), "telephone1": HLC(500, 0, DEVICE)},
        {"name": "Dynamics name", "telephone1": "+39 2"},
        HLC(1000, 3, UP),
        EntityPolicy(),
        now_ms=3000,
    )
    assert to_write == {"name": "Device name", "telephone1": "+39 1"}
    assert lost == {}


def test_three_way_merge_decides_real_conflicts_by_clock_under_lww() -> None:
    to_write, lost = merge_with_dynamics(
        "account",
        ID,
        {"name": "Device name", "telephone1": "+39 1", "address1_city": "Roma"},
        {k: HLC(500, 0, DEVICE) for k in ("name", "telephone1", "address1_city")}
        | {"name": HLC(2000, 0, DEVICE)},
        {"name": "CRM name", "telephone1": "+39 2", "address1_city": "Milano"},
        HLC(1000, 3, UP),
        EntityPolicy(),
        now_ms=3000,
        base={"name": "Old", "telephone1": "+39 0", "address1_city": "Milano"},
    )
    # city: untouched in Dynamics -> device; name: both changed, device newer -> device;
    # telephone: both changed, Dynamics newer -> Dynamics.
    assert to_write == {"name": "Device name", "address1_city": "Roma"}
    assert lost == {"telephone1": "+39 1"}


def test_upstream_wins_and_manual_keep_dynamics_values_in_real_conflicts() -> None:
    policy = EntityPolicy(fields={"accountnumber": "upstream_wins", "description": "manual"})
    to_write, lost = merge_with_dynamics(
        "account",
        ID,
        {"accountnumber": "D-1", "description": "device notes", "name": "N"},
        {k: HLC(9000, 0, DEVICE) for k in ("accountnumber", "description", "name")},
        {"accountnumber": "UP-1", "description": "crm notes", "name": "old"},
        HLC(1000, 0, UP),
        policy,
        now_ms=10_000,
        base={"accountnumber": "A-0", "description": "notes", "name": "old"},
    )
    assert to_write == {"name": "N"}
    assert lost == {"accountnumber": "D-1", "description": "device notes"}


def test_equal_values_need_no_write() -> None:
    assert merge_with_dynamics(
        "account", ID, {"name": "same"}, {}, {"name": "same"}, HLC(1, 0, UP), EntityPolicy(), 5
    ) == ({}, {})


def test_rounds_keep_one_change_per_record_in_order() -> None:
    def c(n: int, rid: str) -> OutboundChange:
        return OutboundChange(change_id=f"c{n}", entity="account", id=rid, op="upsert")

    rounds = _rounds([c(1, "a"), c(2, "b"), c(3, "a"), c(4, "a"), c(5, "c")])
    assert [[x.change_id for x in r] for r in rounds] == [["c1", "c2", "c5"], ["c3"], ["c4"]]


def _no_broker() -> Any:
    """Encoding needs no broker."""
    return None


def _mutations(n: int, size: int) -> list[Mutation]:
    return [
        Mutation(
            entity="account",
            id=f"{i:08d}-0000-4000-8000-000000000000",
            clock=HLC(1, 0, UP),
            fields={"name": "x" * size},
        )
        for i in range(n)
    ]


def test_publisher_splits_by_count_and_by_size_deterministically() -> None:
    pub = UpstreamPublisher(
        _no_broker(), source="dynamics", batch_mutations=100, max_message_bytes=64 * 1024
    )
    messages = pub.encode("account", _mutations(250, 10), "b1")
    assert [bid for bid, _ in messages] == ["b1/0", "b1/1", "b1/2"]
    decoded = [msgspec.msgpack.decode(body, type=UpstreamBatch) for _, body in messages]
    assert [len(b.mutations) for b in decoded] == [100, 100, 50]
    assert all(b.source == "dynamics" for b in decoded)

    big = pub.encode("account", _mutations(100, 1500), "b2")
    assert len(big) > 1 and all(len(body) <= 60 * 1024 for _, body in big)
    assert sum(len(msgspec.msgpack.decode(b, type=UpstreamBatch).mutations) for _, b in big) == 100
    assert big == pub.encode("account", _mutations(100, 1500), "b2")  # same split on a retry
    assert pub.encode("account", _mutations(1, 10), "one")[0][0] == "one"


def test_a_single_oversized_change_is_a_typed_error() -> None:
    pub = UpstreamPublisher(_no_broker(), source="dynamics", max_message_bytes=64 * 1024)
    with pytest.raises(PublishError):
        pub.encode("account", _mutations(1, 70_000), "b")


def test_content_digest_is_stable_and_sensitive() -> None:
    assert content_digest("a", b"b") == content_digest("a", b"b")
    assert content_digest("a", "b") != content_digest("ab")
