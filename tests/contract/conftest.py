"""The store contract suite: every test runs against every adapter.

``store`` is parametrized over the adapters. SQLite always runs (a fresh file per test);
Couchbase runs only when ``CRMSYNC_COUCHBASE_URL`` (with ``CRMSYNC_COUCHBASE_USERNAME`` and
``CRMSYNC_COUCHBASE_PASSWORD``) points at a cluster: the scope named by
``CRMSYNC_COUCHBASE_SCOPE`` (default ``crmsync_contract``) is provisioned once per session
(a new bucket gets ``CRMSYNC_COUCHBASE_REPLICAS`` replicas, default 0) and emptied before
each test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.store.base import RecordStore
from backend.store.config import StoreConfig
from backend.store.factory import create_store
from backend.store.types import RecordWrite, WriteBatch
from sync_protocol.hlc import HLC
from sync_protocol.records import Record

COUCHBASE_SKIP = "Couchbase contract tests skipped: CRMSYNC_COUCHBASE_URL is not set"
BASE_MS = 1_700_000_000_000


class FakeClock:
    """A store clock the tests move by hand (milliseconds)."""

    def __init__(self, now: int = BASE_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """The clock the ``store`` fixture's adapter stamps entries with."""
    return FakeClock()


@pytest.fixture(scope="session")
def couchbase_config() -> Iterator[StoreConfig]:
    """A provisioned Couchbase scope for the session, or a skip when no cluster is set."""
    if not os.environ.get("CRMSYNC_COUCHBASE_URL"):
        pytest.skip(COUCHBASE_SKIP)
    config = StoreConfig.from_env(os.environ).with_overrides(
        backend="couchbase",
        couchbase_scope=os.environ.get("CRMSYNC_COUCHBASE_SCOPE", "crmsync_contract"),
    )
    from infra.couchbase.provision import provision_sync

    # A test cluster is usually one node: a new bucket gets no replicas unless asked.
    replicas = int(os.environ.get("CRMSYNC_COUCHBASE_REPLICAS", "0"))
    provision_sync(config, replicas=replicas, primary_indexes=True)
    yield config


@pytest.fixture(params=["sqlite", "couchbase"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[RecordStore]:
    """A started, empty store of each adapter."""
    if request.param == "sqlite":
        config = StoreConfig(sqlite_path=str(tmp_path / "store.db"))
        instance = create_store(config, clock=clock)
        await instance.start()
    else:
        config = request.getfixturevalue("couchbase_config")
        instance = create_store(config, clock=clock)
        await instance.start()
        await instance.wipe()  # type: ignore[attr-defined]
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """A database path for the SQLite-only tests (crash safety, two processes)."""
    return tmp_path / "store.db"


# ------------------------------------------------------------------ record helpers

RecordFactory = Callable[..., Record]
Put = Callable[..., Awaitable[Record]]


def make_record(
    id: str,
    *,
    channels: list[str] | tuple[str, ...] = ("c:a",),
    version: int = 1,
    fields: dict[str, Any] | None = None,
    deleted: bool = False,
    entity: str = "account",
) -> Record:
    """A record as the applier would hand it to the store."""
    values = {"name": f"Account {id}"} if fields is None else fields
    clock = HLC(BASE_MS + version, 0, "node-a")
    return Record(
        entity=entity,
        id=id,
        version=version,
        fields=values,
        clocks={k: clock for k in values},
        field_versions={k: version for k in values},
        deleted=deleted,
        deleted_clock=clock if deleted else None,
        channels=list(channels),
        origin="device:test",
    )


@pytest.fixture
def rec() -> RecordFactory:
    """Build a record: ``rec("id-1", channels=["c:a"], version=2, fields={...})``."""
    return make_record


@pytest.fixture
def put(store: RecordStore) -> Put:
    """Write one record with CAS on ``version - 1`` (or ``expected``): ``await put(record)``."""

    async def write(record: Record, expected: int | None = None) -> Record:
        ev = record.version - 1 if expected is None else expected
        result = await store.apply(
            WriteBatch(writes=[RecordWrite(record=record, expected_version=ev)])
        )
        return result.records[0]

    return write
