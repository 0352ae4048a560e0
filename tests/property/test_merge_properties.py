"""Merge properties: convergence in any order, idempotence, bounded clock skew.

Convergence holds for the ``lww`` and ``upstream_wins`` policies and every delete policy
(``manual`` is first-arrival by design: a person decides). Writers' clocks follow the
hybrid-logical-clock rule that a writer's clock is ahead of what it has observed, here:
ahead of the base record's clocks.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol.changesets import Mutation
from sync_protocol.hlc import HLC
from sync_protocol.merge import MergeContext, merge
from sync_protocol.policy import EntityPolicy
from sync_protocol.records import Record
from tests.support.protocol import ACCOUNT_ID, NOW

FIELDS = ("name", "telephone1", "address1_city", "accountnumber", "description")
NODES = ("dev-a", "dev-b", "dev-c", "upstream:dynamics")


def base() -> Record:
    fields = {f: f"base-{f}" for f in FIELDS}
    return Record(
        entity="account",
        id=ACCOUNT_ID,
        version=1,
        seq=1,
        fields=fields,
        clocks={f: HLC(NOW, 0, "upstream:dynamics") for f in FIELDS},
        field_versions=dict.fromkeys(FIELDS, 1),
    )


@st.composite
def mutations(draw: st.DrawFn) -> tuple[Mutation, str]:
    node = draw(st.sampled_from(NODES))
    clock = HLC(NOW + draw(st.integers(1, 50)), draw(st.integers(0, 3)), node)
    if draw(st.integers(0, 5)) == 0:
        return Mutation(
            entity="account", id=ACCOUNT_ID, op="delete", base_version=1, clock=clock
        ), node
    names = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
    values = {n: draw(st.sampled_from(["x", "y", "z", None])) for n in names}
    return Mutation(
        entity="account", id=ACCOUNT_ID, base_version=1, fields=values, clock=clock
    ), node


policies = st.builds(
    EntityPolicy,
    default=st.sampled_from(["lww", "upstream_wins"]),
    fields=st.dictionaries(
        st.sampled_from(FIELDS), st.sampled_from(["lww", "upstream_wins"]), max_size=3
    ),
    delete=st.sampled_from(["lww", "delete_wins", "update_wins"]),
)


def context(node: str, policy: EntityPolicy) -> MergeContext:
    source: Any = "upstream" if node.startswith("upstream:") else "device"
    return MergeContext(source=source, origin=node, policy=policy, now_ms=NOW + 100)


def apply_all(ms: list[tuple[Mutation, str]], policy: EntityPolicy) -> Record:
    rec = base()
    for m, node in ms:
        r = merge(rec, m, context(node, policy))
        assert r.result.outcome != "rejected", r.result
        assert r.record is not None
        rec = r.record
    return rec


def _unique_clocks(ms: list[tuple[Mutation, str]]) -> bool:
    return len({m.clock for m, _ in ms}) == len(ms)


@settings(max_examples=300, deadline=None)
@given(st.lists(mutations(), min_size=2, max_size=5), policies, st.randoms())
def test_replicas_converge_in_any_order(
    ms: list[tuple[Mutation, str]], policy: EntityPolicy, rnd: Any
) -> None:
    if not _unique_clocks(ms):
        return  # two events never share a clock (HLC node ids are unique per writer)
    reference = apply_all(ms, policy).content()
    for _ in range(4):
        order = list(ms)
        rnd.shuffle(order)
        assert apply_all(order, policy).content() == reference


@settings(max_examples=300, deadline=None)
@given(st.lists(mutations(), min_size=1, max_size=5), policies, st.data())
def test_applying_a_mutation_twice_changes_nothing(
    ms: list[tuple[Mutation, str]], policy: EntityPolicy, data: st.DataObject
) -> None:
    if not _unique_clocks(ms):
        return
    rec = apply_all(ms, policy)
    m, node = data.draw(st.sampled_from(ms))
    again = merge(rec, m, context(node, policy))
    assert again.record is not None
    assert not again.changed
    assert again.record.content() == rec.content()
    assert again.record.version == rec.version


@settings(max_examples=200, deadline=None)
@given(
    skew_ms=st.integers(60_001, 7 * 24 * 3_600_000),
    later_by=st.integers(60_001, 3_600_000),
    device_first=st.booleans(),
    field=st.sampled_from(FIELDS),
)
def test_a_fast_device_clock_does_not_beat_a_later_server_write(
    skew_ms: int, later_by: int, device_first: bool, field: str
) -> None:
    """A phone an hour (or a week) ahead is bounded to server time + max skew on arrival."""
    policy = EntityPolicy()
    arrival = NOW + 1_000
    max_skew = 60_000
    fast = Mutation(
        entity="account",
        id=ACCOUNT_ID,
        base_version=1,
        fields={field: "phone"},
        clock=HLC(arrival + skew_ms, 0, "dev-fast"),
    )
    server = Mutation(
        entity="account",
        id=ACCOUNT_ID,
        base_version=1,
        fields={field: "server"},
        clock=HLC(arrival + max_skew + later_by, 0, "dev-office"),
    )
    dev_ctx = MergeContext(policy=policy, now_ms=arrival, max_skew_ms=max_skew)
    srv_ctx = MergeContext(
        policy=policy, now_ms=arrival + max_skew + later_by, max_skew_ms=max_skew
    )
    rec = base()
    steps = [(fast, dev_ctx), (server, srv_ctx)]
    if not device_first:
        steps.reverse()
    for m, c in steps:
        r = merge(rec, m, c)
        assert r.record is not None
        rec = r.record
    assert rec.fields[field] == "server"
