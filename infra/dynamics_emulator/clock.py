"""Injectable clocks, so tests can expire delta tokens and slide rate windows without sleeping.

The emulator reads wall time (``modifiedon``, delta-token timestamps, token expiry) and
monotonic time (service-protection windows) only through a :class:`Clock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of wall and monotonic time."""

    def now(self) -> datetime:
        """Return the current wall time as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic time in seconds (only differences are meaningful)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current wall time as an aware UTC datetime."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; both times advance together."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)).astimezone(UTC)
        self._monotonic = 1_000.0

    def now(self) -> datetime:
        """Return the current (manual) wall time."""
        return self._now

    def monotonic(self) -> float:
        """Return the current (manual) monotonic time."""
        return self._monotonic

    def advance(self, seconds: float = 0.0, *, days: float = 0.0) -> None:
        """Move both times forward.

        Args:
            seconds: Seconds to add.
            days: Days to add (on top of ``seconds``).
        """
        delta = seconds + days * 86_400.0
        if delta < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += timedelta(seconds=delta)
        self._monotonic += delta
