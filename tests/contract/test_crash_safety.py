"""Crash safety of the SQLite adapter: SIGKILL a writer process in the middle of its batches.

Afterwards no batch is half-applied, no sequence is duplicated or reused, the changeset
result exists exactly when its writes do, and the checksums still match the records.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from backend.store.config import StoreConfig
from backend.store.sqlite import SqliteRecordStore
from backend.store.types import RecordWrite, WriteBatch
from sync_protocol.checksum import checksum_of, record_hash

WORKERS = Path(__file__).with_name("store_workers.py")
RECORDS = 300


def committed_batches(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT value FROM state WHERE key = 'crash/last'").fetchone()
            return 0 if row is None else int(row[0])
    except sqlite3.OperationalError:
        return 0  # not created yet


def run_and_kill(db: Path, at_least: int) -> None:
    """Start the crash writer and SIGKILL it once ``at_least`` more batches committed."""
    start = committed_batches(db)
    proc = subprocess.Popen([sys.executable, str(WORKERS), "crash", str(db), str(RECORDS)])
    try:
        deadline = time.monotonic() + 30
        while committed_batches(db) < start + at_least:
            assert proc.poll() is None, "the writer exited on its own"
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


async def check_invariants(db: Path) -> int:
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(db)))
    await store.start()
    try:
        keys = [("account", f"crash-{i:04d}") for i in range(RECORDS)]
        records = await store.get_many(keys)
        assert len(records) == RECORDS
        versions = {r.version for r in records.values()}
        assert len(versions) == 1, f"half-applied batch: versions {sorted(versions)}"
        version = versions.pop()
        assert all(r.fields["batch"] == version for r in records.values())
        # The changeset result exists exactly for the batches whose writes exist.
        assert await store.changeset_result(f"crash:{version}") is not None
        assert await store.changeset_result(f"crash:{version + 1}") is None
        results = await store.device_results("crash", 0)
        assert [r.changeset_id for r in results] == [f"crash:{v}" for v in range(1, version + 1)]
        assert await store.get_state("crash/last") == str(version).encode()
        # Sequences: unique, the last batch's block, and the head points at its end.
        seqs = sorted(r.seq for r in records.values())
        assert len(set(seqs)) == RECORDS
        head = await store.head_seq()
        assert seqs == list(range(head - RECORDS + 1, head + 1))
        assert results[-1].seq == head
        page = await store.changes(["c:crash"], 0, limit=10 * RECORDS, with_checksums=True)
        assert [e.seq for e in page.entries] == seqs and not page.has_more
        expected = checksum_of(
            record_hash(r.entity, r.id, r.version, r.fields) for r in records.values()
        )
        assert page.checksums == {"c:crash": expected}
        audit = await store.audit_trail("account", "crash-0000", limit=1)
        assert audit[0].version_after == version
        return version
    finally:
        await store.close()


async def test_sigkilled_writer_leaves_no_half_applied_batch(sqlite_path: Path) -> None:
    run_and_kill(sqlite_path, at_least=3)
    version = await check_invariants(sqlite_path)
    assert version >= 3
    # A second writer picks up where the first stopped, and is killed in turn.
    run_and_kill(sqlite_path, at_least=2)
    after = await check_invariants(sqlite_path)
    assert after >= version + 2
    # The store is writable afterwards and never reuses a sequence.
    store = SqliteRecordStore(StoreConfig(sqlite_path=str(sqlite_path)))
    await store.start()
    try:
        head = await store.head_seq()
        current = await store.get("account", "crash-0000")
        assert current is not None
        current.version += 1
        result = await store.apply(
            WriteBatch(writes=[RecordWrite(record=current, expected_version=current.version - 1)])
        )
        assert result.first_seq == head + 1
    finally:
        await store.close()
