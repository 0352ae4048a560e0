"""Hybrid logical clock: monotonic, causal, bounded against skew."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.errors import ClockError
from sync_protocol.hlc import HLC, Clock, bound, validate


class FakeWall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_now_is_strictly_increasing_even_when_wall_time_stands_still() -> None:
    wall = FakeWall(1000)
    c = Clock("n1", wall)
    a, b = c.now(), c.now()
    assert b > a and b.wall_ms == 1000 and b.counter == a.counter + 1


def test_now_survives_wall_clock_going_backwards() -> None:
    wall = FakeWall(5000)
    c = Clock("n1", wall)
    a = c.now()
    wall.ms = 1000
    assert c.now() > a


def test_receive_orders_after_the_remote_timestamp() -> None:
    c = Clock("n1", FakeWall(1000))
    remote = HLC(1500, 7, "n2")
    assert c.receive(remote) > remote
    assert c.now() > remote


def test_receive_bounds_a_remote_clock_running_far_ahead() -> None:
    c = Clock("srv", FakeWall(1000), max_skew_ms=60_000)
    ts = c.receive(HLC(1000 + 3_600_000, 0, "phone"))
    assert ts.wall_ms == 61_000


def test_bound_leaves_clocks_within_skew_alone() -> None:
    assert bound(HLC(1010, 0, "a"), 1000, 60_000) == HLC(1010, 0, "a")
    assert bound(HLC(10**9, 3, "a"), 1000, 10) == HLC(1010, 3, "a")


def test_counter_overflow_borrows_a_millisecond() -> None:
    c = Clock("n1", FakeWall(1000))
    c.receive(HLC(1000, 0xFFFF, "x"))
    assert c.now().wall_ms >= 1001


@given(st.integers(0, 2**45), st.integers(0, 0xFFFF), st.text(min_size=1, max_size=20))
def test_str_round_trips(wall: int, counter: int, node: str) -> None:
    ts = HLC(wall, counter, node)
    assert HLC.parse(str(ts)) == ts


@pytest.mark.parametrize(
    "bad", [HLC(-1, 0, "a"), HLC(1, 70_000, "a"), HLC(1, 0, ""), HLC(1, 0, "x" * 65)]
)
def test_validate_rejects_out_of_range_parts(bad: HLC) -> None:
    with pytest.raises(ClockError):
        validate(bad)


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ClockError):
        HLC.parse("yesterday")
