"""``/v1/devices``: register, list and revoke the caller's own devices."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import JSONBody, PathParameter

from backend.auth.devices import DeviceView, view

from .dependencies import Caller, Runtime


class DeviceRegistration(msgspec.Struct, kw_only=True):
    """A device to register for the caller."""

    device_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
    name: Annotated[str, msgspec.Meta(max_length=100)] = ""
    platform: Annotated[str, msgspec.Meta(max_length=40)] = ""
    app_version: Annotated[str, msgspec.Meta(max_length=40)] = ""


class DeviceController(Controller):
    """The caller's devices. Operators manage everyone's on the admin port."""

    path = "/v1/devices"
    tags = ["devices"]

    @post(
        "/",
        status_code=201,
        summary="Register a device",
        description=(
            "Binds the device to the caller. Another user's device answers 403 "
            "device_not_registered (the same as an unknown one); a revoked device 410."
        ),
        operation_id="registerDevice",
    )
    async def register(
        self, data: JSONBody[DeviceRegistration], runtime: Runtime, principal: Caller
    ) -> DeviceView:
        """Register (or update) a device of the caller."""
        entry = await runtime.devices.register(
            data.device_id,
            principal,
            name=data.name,
            platform=data.platform,
            app_version=data.app_version,
        )
        return view(entry, None)

    @get("/", summary="List my devices", operation_id="listDevices")
    async def list_devices(self, runtime: Runtime, principal: Caller) -> list[DeviceView]:
        """The caller's devices, newest first."""
        return await runtime.devices.list_devices(principal.user)

    @delete(
        "/{device_id:str}",
        status_code=200,
        summary="Revoke one of my devices",
        description="A lost phone: its next request is answered 'wipe'. Idempotent.",
        operation_id="revokeDevice",
    )
    async def revoke(
        self,
        runtime: Runtime,
        principal: Caller,
        device_id: Annotated[str, PathParameter(max_length=64)],
    ) -> DeviceView:
        """Revoke a device the caller owns."""
        return await runtime.devices.revoke(
            device_id, principal.user, owner=principal.user, reason="revoked by its user"
        )
