"""Service protection limits per user over a sliding window, as Dataverse enforces them.

Three limits, each configurable (:class:`~infra.dynamics_emulator.config.LimitsConfig`):

* number of requests in the window (6,000 per 300 s; ``0x80072322``);
* combined execution time in the window (1,200,000 ms; ``0x80072321``);
* concurrent requests (52; ``0x80072326``), which fails immediately.

A refused request gets 429 with ``Retry-After`` (seconds until enough of the window has
passed) and does not count against the window itself. The window uses the injectable clock;
execution time is measured with the real clock (it is what the request actually cost).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from infra.dynamics_emulator.clock import Clock
from infra.dynamics_emulator.config import LimitsConfig
from infra.dynamics_emulator.errors import ServiceProtectionError


@dataclass(slots=True)
class _UserWindow:
    requests: deque[float] = field(default_factory=deque)
    executions: deque[tuple[float, float]] = field(default_factory=deque)
    execution_ms: float = 0.0
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class Admission:
    """A request let through; hand it back to :meth:`ServiceProtection.release`."""

    user: str
    remaining_requests: int
    remaining_execution_ms: float


class ServiceProtection:
    """Tracks every user's window and admits or refuses requests.

    Args:
        limits: The limits (replaceable at runtime with :meth:`configure`).
        clock: Monotonic time for the window.
    """

    def __init__(self, limits: LimitsConfig, clock: Clock) -> None:
        self.limits = limits
        self.clock = clock
        self._users: dict[str, _UserWindow] = {}

    def configure(self, limits: LimitsConfig) -> None:
        """Replace the limits (windows already counted are kept)."""
        self.limits = limits

    def reset(self) -> None:
        """Forget every user's window."""
        self._users.clear()

    def _prune(self, window: _UserWindow, now: float) -> None:
        horizon = now - self.limits.window_s
        while window.requests and window.requests[0] <= horizon:
            window.requests.popleft()
        while window.executions and window.executions[0][0] <= horizon:
            window.execution_ms -= window.executions.popleft()[1]

    def admit(self, user: str) -> Admission:
        """Count a request or refuse it.

        Raises:
            ServiceProtectionError: A limit is exceeded (429 with ``Retry-After``).
        """
        limits = self.limits
        window = self._users.setdefault(user, _UserWindow())
        if not limits.enabled:
            window.in_flight += 1
            return Admission(user, limits.max_requests, float(limits.max_execution_ms))
        now = self.clock.monotonic()
        self._prune(window, now)
        if window.in_flight >= limits.max_concurrent:
            raise _refusal(
                "0x80072326",
                f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}.",
                1,
            )
        if len(window.requests) >= limits.max_requests:
            retry = window.requests[0] + limits.window_s - now
            raise _refusal(
                "0x80072322",
                f"Number of requests exceeded the limit of {limits.max_requests} over time "
                f"window of {_seconds(limits.window_s)} seconds.",
                retry,
            )
        if window.execution_ms >= limits.max_execution_ms:
            # Wait until enough execution time has left the window to go below the limit.
            excess = window.execution_ms - limits.max_execution_ms
            retry = limits.window_s
            for stamp, spent in window.executions:
                excess -= spent
                if excess < 0:
                    retry = stamp + limits.window_s - now
                    break
            raise _refusal(
                "0x80072321",
                "Combined execution time of incoming requests exceeded limit of "
                f"{limits.max_execution_ms:,} milliseconds over time window of "
                f"{_seconds(limits.window_s)} seconds. Decrease number of concurrent requests or "
                "reduce the duration of requests and try again later.",
                retry,
            )
        window.requests.append(now)
        window.in_flight += 1
        return Admission(
            user,
            max(0, limits.max_requests - len(window.requests)),
            max(0.0, limits.max_execution_ms - window.execution_ms),
        )

    def release(self, admission: Admission, execution_ms: float) -> None:
        """Record the end of an admitted request and what it cost."""
        window = self._users.setdefault(admission.user, _UserWindow())
        window.in_flight = max(0, window.in_flight - 1)
        if self.limits.enabled:
            window.executions.append((self.clock.monotonic(), execution_ms))
            window.execution_ms += execution_ms


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _refusal(hex_code: str, message: str, retry_after: float) -> ServiceProtectionError:
    seconds = max(1, math.ceil(retry_after))
    return ServiceProtectionError(
        message, status=429, hex_code=hex_code, headers={"Retry-After": str(seconds)}
    )
