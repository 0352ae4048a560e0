"""Injected faults: 503/500 answers, added latency and dropped connections, at seeded rates.

Each API request rolls the dice once (a seeded :class:`random.Random`, so a storm replays
identically for the same sequence of requests). Rates and the seed can be changed while the
emulator runs (``PUT /_emulator/faults``), which lets tests script a storm and its end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from infra.dynamics_emulator.config import FaultConfig
from infra.dynamics_emulator.errors import InjectedFaultError


class FaultKind(Enum):
    """What happens to a request instead of (or before) normal handling."""

    NONE = "none"
    UNAVAILABLE = "503"
    SERVER_ERROR = "500"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The outcome of one roll: extra latency, then a fault (or none)."""

    latency_ms: int
    kind: FaultKind


class FaultInjector:
    """Decides, per request, which fault to inject.

    Args:
        config: Rates, latency and seed.
    """

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)
        self.injected: dict[str, int] = {kind.value: 0 for kind in FaultKind}

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration and reseed the dice."""
        self.config = config
        self._random = random.Random(config.seed)

    def roll(self) -> FaultDecision:
        """Roll for one request."""
        config = self.config
        latency = 0
        if config.latency_rate > 0 and self._random.random() < config.latency_rate:
            latency = config.latency_ms
        kind = FaultKind.NONE
        draw = self._random.random()
        if draw < config.error_503_rate:
            kind = FaultKind.UNAVAILABLE
        elif draw < config.error_503_rate + config.error_500_rate:
            kind = FaultKind.SERVER_ERROR
        elif draw < config.error_503_rate + config.error_500_rate + config.drop_rate:
            kind = FaultKind.DROP
        self.injected[kind.value] += 1
        return FaultDecision(latency, kind)


def fault_error(kind: FaultKind) -> InjectedFaultError:
    """Return the error an injected 503 or 500 answers with."""
    if kind is FaultKind.UNAVAILABLE:
        return InjectedFaultError(
            "Service Unavailable. The server is busy; retry the request later.",
            status=503,
            hex_code="0x8004A001",
        )
    return InjectedFaultError("An unexpected error occurred.", status=500, hex_code="0x80040216")
