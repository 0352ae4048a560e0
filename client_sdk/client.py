"""The SDK's front door: ``CrmClient.open(...)`` gives an app its offline replica and sync.

```python
client = CrmClient.open(
    "crm.db",
    passphrase="correct horse battery staple",   # or keystore_key=<32 bytes>
    server_url="http://127.0.0.1:8080",
    token_provider=get_token,                     # () -> str | Awaitable[str]
    device_id="phone-8f3a",
)
client.events.subscribe(print)
lead = client.upsert("lead", None, {"subject": "Fiera di Milano", "lastname": "Verdi"})
await client.sync()        # or client.start() for background sync
```

Everything the app reads and writes is local and works offline; :meth:`CrmClient.sync`
(or the background loop) exchanges it with the server.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from client_sdk.database import DEFAULT_CACHE_KIB, LocalDatabase
from client_sdk.errors import (
    ClientConfigError,
    DeviceIdMismatchError,
    InvalidDeviceIdError,
    InvalidKekError,
)
from client_sdk.events import EventBus, Listener, SyncCompleted
from client_sdk.keys import DEFAULT_SCRYPT, Kek, KeystoreKey, Passphrase, ScryptParams
from client_sdk.local import DeviceClock, LocalStore, Page, RecordView, Where
from client_sdk.outbox import OutboxEntry
from client_sdk.search import SearchHit
from client_sdk.sync import REPLICA_MIGRATIONS, SyncConfig, SyncEngine
from client_sdk.transport import HttpTransport, TokenProvider, Transport

DEVICE_ID_RE: Final = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
DEVICE_KEY: Final = "device.id"


def open_replica(
    path: str | os.PathLike[str], kek: Kek, *, cache_kib: int = DEFAULT_CACHE_KIB
) -> LocalDatabase:
    """Open the encrypted replica at ``path`` (creating it on first run) with the sync
    layer's tables migrated in.

    Raises:
        WrongPassphraseError / WrongKeystoreKeyError: the KEK does not unlock it.
        LocalDatabaseError: and subclasses, see :meth:`LocalDatabase.open`.
    """
    if LocalDatabase.exists(path):
        return LocalDatabase.open(path, kek, migrations=REPLICA_MIGRATIONS, cache_kib=cache_kib)
    return LocalDatabase.create(path, kek, migrations=REPLICA_MIGRATIONS, cache_kib=cache_kib)


def _kek(passphrase: str | None, keystore_key: bytes | None, scrypt: ScryptParams) -> Kek:
    if (passphrase is None) == (keystore_key is None):
        raise InvalidKekError("give exactly one of passphrase or keystore_key")
    if passphrase is not None:
        return Passphrase(passphrase, scrypt)
    assert keystore_key is not None
    return KeystoreKey(keystore_key)


class CrmClient:
    """An app's offline CRM replica and its synchronisation. Build with :meth:`open`.

    Attributes:
        db: the encrypted local database.
        local: the local entity API (also exposed directly on the client).
        engine: the sync engine.
        events: subscribe here for progress, conflicts, rejections, failures and wipe.
    """

    def __init__(
        self, db: LocalDatabase, local: LocalStore, engine: SyncEngine, events: EventBus
    ) -> None:
        """Use :meth:`open`."""
        self.db = db
        self.local = local
        self.engine = engine
        self.events = events

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        passphrase: str | None = None,
        keystore_key: bytes | None = None,
        server_url: str = "",
        token_provider: TokenProvider | None = None,
        device_id: str,
        transport: Transport | None = None,
        config: SyncConfig | None = None,
        scrypt: ScryptParams = DEFAULT_SCRYPT,
        cache_kib: int = DEFAULT_CACHE_KIB,
    ) -> CrmClient:
        """Open (or create on first run) the replica and wire up sync.

        Args:
            path: the database file (its key file is ``<path>.key``).
            passphrase: the user's passphrase (scrypt KEK), or
            keystore_key: 32 bytes from the platform keystore.
            server_url: the sync API base URL (unused when ``transport`` is given).
            token_provider: returns a bearer token, sync or async (HTTP transport only).
            device_id: this installation's stable id (1-64 of ``A-Za-z0-9_-``).
            transport: a custom transport (tests); default: :class:`HttpTransport`.
            config: sync tuning.
            scrypt: scrypt cost when creating a passphrase-wrapped key.
            cache_kib: SQLite page cache.

        Raises:
            InvalidDeviceIdError: malformed ``device_id``.
            DeviceIdMismatchError: the replica was created for another device id.
            InvalidKekError: neither or both of ``passphrase`` and ``keystore_key``.
            ClientConfigError: no transport and no ``server_url``/``token_provider``.
            KeyManagementError / LocalDatabaseError: see :func:`open_replica`.
        """
        if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
            raise InvalidDeviceIdError(f"invalid device id {device_id!r}")
        kek = _kek(passphrase, keystore_key, scrypt)
        if transport is None:
            if not server_url or token_provider is None:
                raise ClientConfigError("server_url and token_provider are needed")
            transport = HttpTransport(server_url, token_provider)
        db = open_replica(path, kek, cache_kib=cache_kib)
        try:
            stored = db.get_state(DEVICE_KEY)
            if stored is None:
                db.set_state(DEVICE_KEY, device_id)
            elif stored != device_id:
                raise DeviceIdMismatchError(
                    f"this replica belongs to device {stored!r}, not {device_id!r}"
                )
            events = EventBus()
            lock = threading.RLock()
            local = LocalStore(db, DeviceClock(db, device_id), lock=lock)
            engine = SyncEngine(local, transport, device_id, events=events, config=config)
            local.on_write = engine.notify_local_write
        except BaseException:
            db.close()
            raise
        return cls(db, local, engine, events)

    # --- local API -------------------------------------------------------------------

    def get(self, entity: str, id: str) -> RecordView | None:
        """One live record, local edits included (see :meth:`LocalStore.get`)."""
        return self.local.get(entity, id)

    def query(
        self,
        entity: str,
        where: Where | None = None,
        *,
        order_by: Sequence[str] = (),
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """Filtered, ordered, paged records (see :meth:`LocalStore.query`)."""
        return self.local.query(entity, where, order_by=order_by, limit=limit, offset=offset)

    def count(self, entity: str, where: Where | None = None) -> int:
        """How many records match (see :meth:`LocalStore.count`)."""
        return self.local.count(entity, where)

    def upsert(self, entity: str, id: str | None, fields: Mapping[str, Any]) -> RecordView:
        """Create or partially update a record, offline (see :meth:`LocalStore.upsert`)."""
        return self.local.upsert(entity, id, fields)

    def delete(self, entity: str, id: str) -> None:
        """Delete a record, offline (see :meth:`LocalStore.delete`)."""
        self.local.delete(entity, id)

    def search(
        self, text: str, entities: Sequence[str] | None = None, limit: int = 50
    ) -> list[SearchHit]:
        """Offline full-text search."""
        return self.local.search(text, entities, limit)

    def pending(self) -> list[OutboxEntry]:
        """Unsynced mutations, oldest first."""
        return self.local.pending()

    def rejections(self) -> list[OutboxEntry]:
        """Mutations the server refused (the dead-letter list)."""
        return self.local.rejections()

    def retry(self, mutation_id: str) -> None:
        """Send a rejected mutation again."""
        self.local.retry(mutation_id)

    def discard(self, mutation_id: str) -> None:
        """Drop a rejected mutation and go back to the server's version of the record."""
        self.local.discard(mutation_id)

    # --- sync ------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Receive SDK events; returns the unsubscribe function."""
        return self.events.subscribe(listener)

    async def sync(self) -> SyncCompleted:
        """One sync cycle now (see :meth:`SyncEngine.sync`)."""
        return await self.engine.sync()

    def start(self) -> asyncio.Task[None]:
        """Start background sync on the running event loop."""
        return self.engine.start()

    async def stop(self) -> None:
        """Stop background sync."""
        await self.engine.stop()

    @property
    def wiped(self) -> bool:
        """Whether the replica was crypto-shredded (device revoked)."""
        return self.engine.wiped

    async def aclose(self) -> None:
        """Stop syncing, close the network and the database."""
        await self.engine.stop()
        await self.engine.transport.aclose()
        with self.local.lock:
            self.db.close()

    async def __aenter__(self) -> CrmClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["DEVICE_ID_RE", "CrmClient", "open_replica"]
