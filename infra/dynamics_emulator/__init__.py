"""Dynamics 365 / Dataverse Web API v9.2 emulator with deterministic generated data.

See ``docs/dynamics_emulator.md``. Entry points: :func:`create_app` (Litestar app),
:func:`run` (uvicorn, foreground), :class:`EmulatorServer` (background thread, tests),
:class:`EmulatorConfig` (configuration, ``CRMSYNC_EMULATOR_*`` env vars) and
:class:`Emulator` (live state: ``mutate``, ``issue_token``, faults, limits).
"""

from infra.dynamics_emulator.app import create_app
from infra.dynamics_emulator.clock import Clock, ManualClock, SystemClock
from infra.dynamics_emulator.config import (
    AuthConfig,
    EmulatorConfig,
    FaultConfig,
    LimitsConfig,
)
from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.errors import EmulatorConfigError, EmulatorError, ODataError
from infra.dynamics_emulator.runner import EmulatorServer, free_port, run

__all__ = [
    "AuthConfig",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "EmulatorConfigError",
    "EmulatorError",
    "EmulatorServer",
    "FaultConfig",
    "LimitsConfig",
    "ManualClock",
    "ODataError",
    "SystemClock",
    "create_app",
    "free_port",
    "run",
]
