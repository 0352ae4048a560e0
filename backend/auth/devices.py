"""The device registry: devices bound to the user who registered them, and revocation.

Entries live in the store's durable state, so every gateway replica sees the same
registry. A device is bound to the first user that registers it (explicitly, or on its
first sync when auto-registration is on); any other user presenting that device id gets
the same answer as for an unknown device. A revoked device is answered "wipe" on its next
request and the SDK crypto-shreds its replica.

Revocation is written under its own key (``device-revoked:<id>``) that registration and
bookkeeping never rewrite, so a concurrent pull cannot resurrect a revoked device by
writing back an entry it read just before the revocation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import msgspec

from backend.store.base import RecordStore

from .errors import DeviceNotRegisteredError, DeviceRevokedError, InvalidDeviceIdError
from .principal import Principal

DEVICE_PREFIX = "device:"
REVOKED_PREFIX = "device-revoked:"
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_MAX_SCOPES = 4


def now_ms() -> int:
    """Server wall time in milliseconds."""
    return int(time.time() * 1000)


class DeviceEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A registered device.

    Attributes:
        device_id: the SDK's device id (also the prefix of its changeset ids).
        user: the user it is bound to.
        profile: the user's profile when it registered.
        name: a display name the user gave it.
        platform: ``ios``, ``android``, ``web`` ...
        app_version: the app version at the last registration.
        registered_ms: when it was registered.
        last_seen_ms: last sync request (updated at most once a minute).
        scopes: recent channel sets checkpoints were issued for, by scope hash, newest
            last; lets a pull work out a grant diff from a checkpoint's scope hash.
    """

    device_id: str
    user: str
    registered_ms: int
    profile: str = ""
    name: str = ""
    platform: str = ""
    app_version: str = ""
    last_seen_ms: int = 0
    scopes: dict[int, list[str]] = {}


class Revocation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The revocation of a device."""

    device_id: str
    revoked_ms: int
    revoked_by: str
    reason: str = ""


class DeviceView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A device as the API lists it."""

    device_id: str
    user: str
    profile: str = ""
    name: str = ""
    platform: str = ""
    app_version: str = ""
    registered_ms: int = 0
    last_seen_ms: int = 0
    revoked: bool = False
    revoked_ms: int = 0
    revoked_by: str = ""


_entry_decoder = msgspec.msgpack.Decoder(DeviceEntry)
_revocation_decoder = msgspec.msgpack.Decoder(Revocation)
_encode = msgspec.msgpack.Encoder().encode


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if well formed.

    Raises:
        InvalidDeviceIdError: not 1-64 letters, digits, ``_`` or ``-``.
    """
    if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
        raise InvalidDeviceIdError("device id must be 1-64 characters [A-Za-z0-9_-]")
    return device_id


def view(entry: DeviceEntry, revocation: Revocation | None) -> DeviceView:
    """The listing form of a device."""
    return DeviceView(
        device_id=entry.device_id,
        user=entry.user,
        profile=entry.profile,
        name=entry.name,
        platform=entry.platform,
        app_version=entry.app_version,
        registered_ms=entry.registered_ms,
        last_seen_ms=entry.last_seen_ms,
        revoked=revocation is not None,
        revoked_ms=revocation.revoked_ms if revocation else 0,
        revoked_by=revocation.revoked_by if revocation else "",
    )


class DeviceRegistry:
    """Registration, checks and revocation of devices over the store's durable state.

    Args:
        store: the record store (its ``get_state``/``put_state``/``list_state``).
        auto_register: bind an unknown device to the caller on its first sync request.
        touch_interval_ms: how often ``last_seen_ms`` is written back at most.
        clock: wall time in ms (injectable for tests).
    """

    def __init__(
        self,
        store: RecordStore,
        *,
        auto_register: bool = True,
        touch_interval_ms: int = 60_000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.auto_register = auto_register
        self.touch_interval_ms = touch_interval_ms
        self.clock = clock

    async def get(self, device_id: str) -> DeviceEntry | None:
        """The entry of a device, or ``None``."""
        raw = await self.store.get_state(DEVICE_PREFIX + device_id)
        return _entry_decoder.decode(raw) if raw is not None else None

    async def revocation(self, device_id: str) -> Revocation | None:
        """The revocation of a device, or ``None`` if it is not revoked."""
        raw = await self.store.get_state(REVOKED_PREFIX + device_id)
        return _revocation_decoder.decode(raw) if raw is not None else None

    async def _put(self, entry: DeviceEntry) -> None:
        await self.store.put_state(DEVICE_PREFIX + entry.device_id, _encode(entry))

    async def _entry_and_revocation(
        self, device_id: str
    ) -> tuple[DeviceEntry | None, Revocation | None]:
        """A device's entry and revocation in one store read (every sync request needs both)."""
        entry_key, revoked_key = DEVICE_PREFIX + device_id, REVOKED_PREFIX + device_id
        found = await self.store.get_states([entry_key, revoked_key])
        raw_entry, raw_revocation = found.get(entry_key), found.get(revoked_key)
        return (
            _entry_decoder.decode(raw_entry) if raw_entry is not None else None,
            _revocation_decoder.decode(raw_revocation) if raw_revocation is not None else None,
        )

    async def _save(
        self,
        device_id: str,
        principal: Principal,
        entry: DeviceEntry | None,
        name: str = "",
        platform: str = "",
        app_version: str = "",
    ) -> DeviceEntry:
        """Write the caller's (new or updated) entry, seen now."""
        now = self.clock()
        if entry is None:
            entry = DeviceEntry(
                device_id=device_id,
                user=principal.user,
                profile=principal.profile,
                registered_ms=now,
            )
        entry.profile = principal.profile
        entry.name = name[:100] or entry.name
        entry.platform = platform[:40] or entry.platform
        entry.app_version = app_version[:40] or entry.app_version
        entry.last_seen_ms = now
        await self._put(entry)
        return entry

    async def register(
        self,
        device_id: str,
        principal: Principal,
        *,
        name: str = "",
        platform: str = "",
        app_version: str = "",
    ) -> DeviceEntry:
        """Register (or re-register, updating its details) a device for the caller.

        Raises:
            InvalidDeviceIdError: malformed id.
            DeviceNotRegisteredError: the device is bound to another user.
            DeviceRevokedError: the device was revoked (it must wipe; a fresh install
                registers under a new id).
        """
        check_device_id(device_id)
        entry, revocation = await self._entry_and_revocation(device_id)
        if entry is not None and entry.user != principal.user:
            raise DeviceNotRegisteredError("device is bound to another user")
        if revocation is not None:
            raise DeviceRevokedError("device revoked")
        return await self._save(device_id, principal, entry, name, platform, app_version)

    async def check(self, device_id: str, principal: Principal) -> DeviceEntry:
        """The caller's device for a sync request, registering it if allowed.

        Raises:
            InvalidDeviceIdError: malformed id.
            DeviceNotRegisteredError: unknown (with auto-registration off) or another
                user's device; the two are deliberately indistinguishable.
            DeviceRevokedError: revoked: the response tells the device to wipe.
        """
        check_device_id(device_id)
        entry, revocation = await self._entry_and_revocation(device_id)
        if entry is None:
            if not self.auto_register:
                raise DeviceNotRegisteredError("device not registered")
            if revocation is not None:
                raise DeviceRevokedError("device revoked")
            return await self._save(device_id, principal, None)
        if entry.user != principal.user:
            raise DeviceNotRegisteredError("device is bound to another user")
        if revocation is not None:
            raise DeviceRevokedError("device revoked")
        now = self.clock()
        if now - entry.last_seen_ms >= self.touch_interval_ms:
            entry.last_seen_ms = now
            await self._put(entry)
        return entry

    async def revoke(
        self, device_id: str, by: str, *, owner: str | None = None, reason: str = ""
    ) -> DeviceView:
        """Revoke a device; its next request is answered "wipe". Idempotent.

        Args:
            device_id: the device.
            by: who revokes (user id, for the record).
            owner: if given, the device must belong to this user (self-service revoke).
            reason: free text for operators.

        Raises:
            InvalidDeviceIdError: malformed id.
            DeviceNotRegisteredError: no such device (or not the owner's).
        """
        check_device_id(device_id)
        entry, revocation = await self._entry_and_revocation(device_id)
        if entry is None or (owner is not None and entry.user != owner):
            raise DeviceNotRegisteredError("no such device")
        if revocation is None:
            revocation = Revocation(
                device_id=device_id, revoked_ms=self.clock(), revoked_by=by, reason=reason[:200]
            )
            await self.store.put_state(REVOKED_PREFIX + device_id, _encode(revocation))
        return view(entry, revocation)

    async def list_devices(self, user: str | None = None) -> list[DeviceView]:
        """Devices (of one user, or all), most recently registered first."""
        entries = await self.store.list_state(DEVICE_PREFIX)
        revoked = {
            k[len(REVOKED_PREFIX) :]: _revocation_decoder.decode(v)
            for k, v in (await self.store.list_state(REVOKED_PREFIX)).items()
        }
        out = []
        for raw in entries.values():
            entry = _entry_decoder.decode(raw)
            if user is None or entry.user == user:
                out.append(view(entry, revoked.get(entry.device_id)))
        out.sort(key=lambda d: (-d.registered_ms, d.device_id))
        return out

    def known_scope(self, entry: DeviceEntry, scope: int) -> frozenset[str] | None:
        """The channel set a checkpoint with scope hash ``scope`` was issued for, if known."""
        channels = entry.scopes.get(scope)
        return frozenset(channels) if channels is not None else None

    async def remember_scope(
        self, entry: DeviceEntry, scope: int, channels: frozenset[str]
    ) -> None:
        """Record that checkpoints for this device are now issued for ``channels``."""
        if scope in entry.scopes:
            return
        scopes = dict(entry.scopes)
        scopes[scope] = sorted(channels)
        while len(scopes) > _MAX_SCOPES:
            scopes.pop(next(iter(scopes)))
        entry.scopes = scopes
        await self._put(entry)
