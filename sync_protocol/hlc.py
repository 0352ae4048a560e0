"""Hybrid logical clocks (Kulkarni et al.) with a bound on clock skew.

An :class:`HLC` orders events like wall time where clocks agree, and stays causal where
they do not: a node that receives a timestamp never issues a smaller one afterwards.
A device whose clock runs ahead must not win every conflict, so the server *bounds*
incoming device timestamps to its own wall time plus ``max_skew_ms`` before they enter
the merge (:func:`bound`).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from .errors import ClockError

_MAX_COUNTER = 0xFFFF


class HLC(msgspec.Struct, frozen=True, order=True, array_like=True, gc=False):
    """A hybrid logical timestamp: ``(wall_ms, counter, node)``, totally ordered.

    Encoded on the wire as a 3-element array. Comparison is lexicographic, so the node id
    breaks ties deterministically and two distinct events never compare equal.
    """

    wall_ms: int
    counter: int
    node: str

    def __str__(self) -> str:
        return f"{self.wall_ms:013d}-{self.counter:05d}-{self.node}"

    @classmethod
    def parse(cls, text: str) -> HLC:
        """Parse the ``str()`` form back into a timestamp.

        Raises:
            ClockError: the text is not a timestamp.
        """
        try:
            wall, counter, node = text.split("-", 2)
            return cls(int(wall), int(counter), node)
        except ValueError as e:
            raise ClockError(f"not an HLC timestamp: {text[:40]!r}") from e


ZERO = HLC(0, 0, "")
"""Smaller than every issued timestamp."""


def validate(ts: HLC) -> HLC:
    """Check a timestamp from the wire.

    Raises:
        ClockError: negative parts, a counter overflow or an empty/oversized node id.
    """
    if ts.wall_ms < 0 or not 0 <= ts.counter <= _MAX_COUNTER:
        raise ClockError("clock parts out of range", wall_ms=ts.wall_ms, counter=ts.counter)
    if not ts.node or len(ts.node) > 64:
        raise ClockError("clock node id must be 1-64 characters")
    return ts


def bound(ts: HLC, now_ms: int, max_skew_ms: int) -> HLC:
    """Clamp a remote timestamp that runs ahead of ``now_ms`` by more than ``max_skew_ms``.

    A phone whose clock is an hour fast would otherwise beat every later server write.
    The clamped value keeps the node id, so ties still break deterministically.
    """
    limit = now_ms + max_skew_ms
    if ts.wall_ms > limit:
        return HLC(limit, ts.counter, ts.node)
    return ts


class Clock:
    """Issues HLC timestamps for one node.

    Args:
        node: this node's id (a device id or a server instance id).
        wall: a function returning wall time in milliseconds (injected: protocol code has
            no I/O, and tests drive time explicitly).
        max_skew_ms: how far ahead of local wall time a received timestamp may be before
            it is clamped.
    """

    def __init__(self, node: str, wall: Callable[[], int], max_skew_ms: int = 60_000) -> None:
        if not node:
            raise ClockError("clock node id must not be empty")
        self.node = node
        self._wall = wall
        self.max_skew_ms = max_skew_ms
        self._last = HLC(0, 0, node)

    @property
    def last(self) -> HLC:
        """The most recent timestamp issued or observed."""
        return self._last

    def now(self) -> HLC:
        """Issue a timestamp greater than every one issued or received before."""
        wall = self._wall()
        last = self._last
        if wall > last.wall_ms:
            ts = HLC(wall, 0, self.node)
        else:
            ts = self._tick(last.wall_ms, last.counter)
        self._last = ts
        return ts

    def receive(self, remote: HLC) -> HLC:
        """Merge a received timestamp (bounded for skew) and issue one after both.

        Returns the new local timestamp, which is greater than ``remote`` after bounding.
        """
        wall = self._wall()
        remote = bound(remote, wall, self.max_skew_ms)
        last = self._last
        top = max(wall, last.wall_ms, remote.wall_ms)
        if top == last.wall_ms and top == remote.wall_ms:
            ts = self._tick(top, max(last.counter, remote.counter))
        elif top == last.wall_ms:
            ts = self._tick(top, last.counter)
        elif top == remote.wall_ms:
            ts = self._tick(top, remote.counter)
        else:
            ts = HLC(top, 0, self.node)
        self._last = ts
        return ts

    def observe(self, remote: HLC) -> None:
        """Advance past a received timestamp without issuing one (e.g. after a pull)."""
        if remote > self._last:
            self.receive(remote)

    def _tick(self, wall_ms: int, counter: int) -> HLC:
        # A counter overflow borrows a millisecond instead of failing: 65k events in one
        # millisecond on one node only happens in bulk loads, where order is what matters.
        if counter >= _MAX_COUNTER:
            return HLC(wall_ms + 1, 0, self.node)
        return HLC(wall_ms, counter + 1, self.node)
