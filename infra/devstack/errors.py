"""Typed errors of the local stack, with stable codes."""

from __future__ import annotations


class DevStackError(Exception):
    """Base of every local-stack error."""

    code: str = "devstack.error"


class PortInUseError(DevStackError):
    """A port the stack needs is taken by another process."""

    code = "devstack.port_in_use"


class ServiceStartError(DevStackError):
    """A service (gateway, applier) exited or did not become ready while starting."""

    code = "devstack.service_failed"


class DemoDataError(DevStackError):
    """The demo records could not be loaded through the applier."""

    code = "devstack.demo_data_failed"
