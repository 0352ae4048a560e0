"""Checksums: equal exactly when replica contents are equal; order and increments don't matter."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol.checksum import EMPTY, checksum_of, record_hash

ids = st.uuids().map(str)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.text(max_size=12),
    st.floats(allow_nan=False, allow_infinity=False),
)
records = st.dictionaries(
    ids,
    st.tuples(
        st.integers(1, 50),
        st.dictionaries(st.sampled_from(["name", "city", "phone"]), values, max_size=3),
    ),
    max_size=12,
)

Replica = dict[str, tuple[int, dict[str, Any]]]


def checksum(replica: Replica) -> Any:
    return checksum_of(record_hash("account", i, v, f) for i, (v, f) in replica.items())


@st.composite
def replica_pairs(draw: st.DrawFn) -> tuple[Replica, Replica]:
    a = draw(records)
    b = dict(a)
    action = draw(st.sampled_from(["same", "drop", "bump", "edit", "add"]))
    if action == "drop" and b:
        b.pop(draw(st.sampled_from(sorted(b))))
    elif action == "bump" and b:
        k = draw(st.sampled_from(sorted(b)))
        b[k] = (b[k][0] + 1, b[k][1])
    elif action == "edit" and b:
        k = draw(st.sampled_from(sorted(b)))
        b[k] = (b[k][0], {**b[k][1], "name": draw(st.text(min_size=1, max_size=5)) + "!"})
    elif action == "add":
        k = draw(ids)
        b[k] = (1, {})
    return a, b


@settings(max_examples=500)
@given(replica_pairs())
def test_checksums_equal_exactly_when_contents_equal(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    assert (checksum(a) == checksum(b)) == (a == b)


@settings(max_examples=200)
@given(records, st.randoms())
def test_checksum_does_not_depend_on_order(replica: Replica, rnd: Any) -> None:
    items = list(replica.items())
    rnd.shuffle(items)
    assert checksum(dict(items)) == checksum(replica)


@settings(max_examples=200)
@given(records, records)
def test_incremental_updates_match_a_full_recompute(before: Replica, after: Replica) -> None:
    c = checksum(before)
    for i, (v, f) in before.items():
        if i not in after:
            c = c.remove(record_hash("account", i, v, f))
        elif after[i] != (v, f):
            c = c.replace(record_hash("account", i, v, f), record_hash("account", i, *after[i]))
    for i, (v, f) in after.items():
        if i not in before:
            c = c.add(record_hash("account", i, v, f))
    assert c == checksum(after)


def test_empty_replica_has_the_empty_checksum() -> None:
    assert checksum({}) == EMPTY
