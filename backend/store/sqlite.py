"""The embedded record store: one SQLite file in WAL mode.

One writer connection, used only from one worker thread, takes ``BEGIN IMMEDIATE`` for
every write, so writes from this process are serialised. Writers in other processes are
queued on an advisory ``flock`` of ``<file>-writelock`` taken before ``BEGIN IMMEDIATE``:
SQLite's own busy handler polls with sleeps of up to 100 ms, which gave two applier
processes tail latencies of half a second; a blocked ``flock`` wakes as soon as the lock
is free. SQLite's lock (``busy_timeout``) still guards against writers that do not take
the advisory lock. Reads run on a small pool of read connections in
their own threads; WAL lets them (and other processes) read while one process writes,
each read seeing one committed snapshot.

Schema (see ``docs/store.md``): ``records`` holds each record once, as its compact body
(:mod:`backend.store.record_body`) plus the indexed columns the store needs without
decoding it; ``feed`` is keyed by ``(channel, seq)``: one live row per channel a record is
in, at the sequence of its latest state (moved on every write), and one removal row for
each time it left a channel. New writes append to the end of each channel's key range, so
a bulk load writes the feed sequentially; the change feed and bootstrap snapshots are both
range reads of it. ``channels`` maps channel names to small integers and holds the
per-channel checksums. Migrations are numbered and tracked with ``PRAGMA user_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import heapq
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec

from sync_protocol.changesets import ChangesetResult
from sync_protocol.checksum import EMPTY, ChannelChecksum, record_hash
from sync_protocol.records import Record

from .base import GroupOutcome, RecordStore
from .config import StoreConfig
from .errors import (
    CheckpointTooOldError,
    DuplicateChangesetError,
    InvalidRequestError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
)
from .record_body import decode_change, decode_record, encode_body
from .types import (
    AuditEntry,
    BlobMeta,
    ChangePage,
    CommitResult,
    ConflictRecord,
    FeedEntry,
    WriteBatch,
    check_batch,
)

T = TypeVar("T")
Key = tuple[str, str]


class _Prepared(NamedTuple):
    """What a batch needs before its transaction: encodings, hashes and the CAS plan."""

    now: int
    last: dict[Key, int]
    final: list[tuple[Key, int, Record]]
    blobs: list[bytes]
    hashes: list[int]
    first: dict[Key, int]
    must_exist: list[Key]
    walk: bool


_MASK = (1 << 64) - 1
_SIGN = 1 << 63
_KEYS_PER_QUERY = 500  # well under SQLite's host-parameter limit
_CHECKPOINT_EVERY_S = 0.2
_WAL_HARD_LIMIT = 512 * 1024 * 1024

_encode = msgspec.msgpack.Encoder().encode
_decode_changeset = msgspec.msgpack.Decoder(ChangesetResult).decode
_decode_conflict = msgspec.msgpack.Decoder(ConflictRecord).decode
_decode_audit = msgspec.msgpack.Decoder(AuditEntry).decode
_decode_blob_meta = msgspec.msgpack.Decoder(BlobMeta).decode


def _signed(h: int) -> int:
    """A 64-bit unsigned value as SQLite's signed INTEGER."""
    return h - (1 << 64) if h >= _SIGN else h


def wall_ms() -> int:
    """Wall-clock time in milliseconds (the default store clock)."""
    return time.time_ns() // 1_000_000


# Each entry is one schema version; never edit a released one, append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "INSERT INTO meta (key, value) VALUES ('head_seq', 0), ('oldest_seq', 0)",
        """CREATE TABLE channels (
            chan INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            count INTEGER NOT NULL DEFAULT 0,
            digest INTEGER NOT NULL DEFAULT 0
        )""",
        # chans: the record's channel ids, comma-separated; hash: its checksum hash
        # (signed), so a write can subtract the old state without decoding it.
        """CREATE TABLE records (
            rid INTEGER PRIMARY KEY,
            entity TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            deleted INTEGER NOT NULL,
            chans TEXT NOT NULL,
            hash INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            data BLOB NOT NULL,
            UNIQUE (entity, id)
        )""",
        "CREATE INDEX records_tombstones ON records (at_ms) WHERE deleted = 1",
        # rid points at the record's row (for live entries); the (chan, seq) index covers
        # it so the feed reads no feed rows, only index entries and record rows.
        """CREATE TABLE feed (
            chan INTEGER NOT NULL,
            entity TEXT NOT NULL,
            id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            removed INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (chan, entity, id)
        ) WITHOUT ROWID""",
        "CREATE INDEX feed_seq ON feed (chan, seq, removed, rid)",
        "CREATE INDEX feed_removals ON feed (at_ms) WHERE removed = 1",
        """CREATE TABLE changesets (
            changeset_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            data BLOB NOT NULL
        )""",
        "CREATE INDEX changesets_device ON changesets (device_id, seq)",
        "CREATE INDEX changesets_age ON changesets (at_ms)",
        """CREATE TABLE conflicts (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            owner TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            data BLOB NOT NULL
        )""",
        "CREATE INDEX conflicts_created ON conflicts (created_ms)",
        "CREATE INDEX conflicts_status ON conflicts (status, created_ms)",
        """CREATE TABLE audit (
            n INTEGER PRIMARY KEY,
            entity TEXT NOT NULL,
            record_id TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            data BLOB NOT NULL
        )""",
        "CREATE INDEX audit_record ON audit (entity, record_id, n)",
        """CREATE TABLE state (
            key TEXT PRIMARY KEY,
            value BLOB NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            meta BLOB NOT NULL,
            data BLOB NOT NULL
        )""",
    ),
    # 2: the record's greatest clock (msgpack HLC) beside its body, so the change feed can
    # build what devices receive without decoding per-field clocks. NULL in rows written
    # before: those are decoded whole.
    ("ALTER TABLE records ADD COLUMN clock BLOB",),
    # 3: the feed keyed by (chan, seq). Keyed by (chan, entity, id), every new record was a
    # random insert into it (the bulk of a load's WAL); now new rows go to the end of each
    # channel's range and the (chan, seq) index is the table itself. Bodies become compact
    # (record_body.py) as records are written; old ones still decode. New rows leave
    # ``clock`` NULL: the compact body carries the clocks. ``left`` lists the record's
    # removal rows as ``chan:seq,...``, so coming back to a channel drops its removal
    # without a (chan, record) index.
    (
        "ALTER TABLE records ADD COLUMN left TEXT NOT NULL DEFAULT ''",
        """UPDATE records SET left = (
            SELECT group_concat(chan || ':' || seq) FROM feed
            WHERE feed.rid = records.rid AND feed.removed = 1
        ) WHERE rid IN (SELECT rid FROM feed WHERE removed = 1)""",
        """CREATE TABLE feed_by_seq (
            chan INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            removed INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (chan, seq)
        ) WITHOUT ROWID""",
        "INSERT INTO feed_by_seq SELECT chan, seq, removed, at_ms, rid FROM feed"
        " ORDER BY chan, seq",
        "DROP TABLE feed",
        "ALTER TABLE feed_by_seq RENAME TO feed",
        "CREATE INDEX feed_removals ON feed (at_ms) WHERE removed = 1",
    ),
    # 4: audit entries point at their record's rid. Indexed by (entity, record_id), every
    # entry of a bulk load was a random insert; by (rid, n) a load of new records appends.
    # Entries of records never stored (rejections) keep the (entity, record_id) index;
    # ``purged`` remembers the rid of every compacted tombstone so its trail stays found.
    (
        "ALTER TABLE audit ADD COLUMN rid INTEGER",
        """UPDATE audit SET rid = (
            SELECT r.rid FROM records AS r WHERE r.entity = audit.entity AND r.id = audit.record_id
        )""",
        "DROP INDEX audit_record",
        "CREATE INDEX audit_entity ON audit (entity, n)",
        "CREATE INDEX audit_rid ON audit (rid, n) WHERE rid IS NOT NULL",
        "CREATE INDEX audit_orphans ON audit (entity, record_id, n) WHERE rid IS NULL",
        """CREATE TABLE purged (
            entity TEXT NOT NULL,
            id TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (entity, id, rid)
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# A removal row joins its record too: the row keeps only the rid, the record its key.
_SQL_FEED = (
    "SELECT f.seq, f.removed, r.entity, r.id, ?, r.data, r.clock"
    " FROM feed AS f JOIN records AS r ON r.rid = f.rid"
    " WHERE f.chan = ? AND f.seq > ? ORDER BY f.seq"
)
_SQL_SCAN = (
    "SELECT f.seq, r.entity, r.id, r.data FROM feed AS f"
    " JOIN records AS r ON r.rid = f.rid"
    " WHERE f.chan = ? AND f.seq > ? AND f.removed = 0 AND r.deleted = 0"
    " ORDER BY f.seq"
)
_SQL_INSERT_RECORD = (
    "INSERT INTO records (rid, entity, id, version, seq, deleted, chans, hash, at_ms, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_UPDATE_RECORD = (
    "UPDATE records SET version = ?, seq = ?, deleted = ?, chans = ?, hash = ?, at_ms = ?,"
    " data = ?, clock = NULL, left = ? WHERE rid = ?"
)
_SQL_FEED_ROW = "INSERT INTO feed (chan, seq, removed, at_ms, rid) VALUES (?, ?, ?, ?, ?)"
_SQL_FEED_DELETE = "DELETE FROM feed WHERE chan = ? AND seq = ?"


def _flock(fd: int, operation: int) -> bool:
    """``flock``, or ``False`` where the file system has none (SQLite's lock still holds)."""
    try:
        fcntl.flock(fd, operation)
    except OSError:
        return False
    return True


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _by_entity(keys: Iterable[Key]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for entity, id_ in keys:
        grouped.setdefault(entity, []).append(id_)
    return grouped


def _parse_chans(text: str) -> list[int]:
    return [int(c) for c in text.split(",")] if text else []


def _parse_left(text: str) -> dict[int, int]:
    """``records.left`` as ``{chan: seq of the removal row}``."""
    out: dict[int, int] = {}
    if text:
        for pair in text.split(","):
            chan, seq = pair.split(":")
            out[int(chan)] = int(seq)
    return out


def _format_left(left: dict[int, int]) -> str:
    return ",".join(f"{c}:{s}" for c, s in left.items())


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turn sqlite3 exceptions into store errors at the adapter boundary."""
    try:
        yield
    except StoreError:
        raise
    except (sqlite3.OperationalError, sqlite3.DatabaseError) as e:
        if isinstance(e, sqlite3.IntegrityError):
            raise StoreError(f"sqlite integrity error: {e}") from e
        raise StoreUnavailableError(f"sqlite: {e}") from e
    except sqlite3.Error as e:
        raise StoreError(f"sqlite: {e}") from e


class SqliteRecordStore(RecordStore):
    """:class:`RecordStore` over one SQLite file (WAL, one writer thread, pooled readers).

    Args:
        config: The store configuration (``sqlite_*`` fields and retention).
        clock: Wall time in milliseconds; stamps feed entries, tombstones and results so
            that :meth:`compact` can age them out. Injected so tests drive time.
    """

    def __init__(self, config: StoreConfig, clock: Callable[[], int] = wall_ms) -> None:
        self.config = config
        self.path = Path(config.sqlite_path)
        self._clock = clock
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        # name -> id of channels known to be committed; ids are never reused or deleted.
        self._chan_ids: dict[str, int] = {}
        self._chan_sets: dict[tuple[str, ...], tuple[tuple[int, ...], str]] = {}
        self._chan_new: list[str] = []
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpointing: Future[None] | None = None
        self._checkpointed_at = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Create the file if needed, switch to WAL and run pending migrations."""
        if self._writer_pool is not None:
            return
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="crmsync-store-write")
        self._reader_pool = ThreadPoolExecutor(
            self.config.sqlite_readers, thread_name_prefix="crmsync-store-read"
        )
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="crmsync-store-checkpoint")
        await self._write(self._open_writer)

    async def close(self) -> None:
        """Close every connection and stop the worker threads."""
        if self._closed:
            return
        self._closed = True
        for pool in (self._writer_pool, self._reader_pool, self._checkpointer):
            if pool is not None:
                await asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(pool.shutdown, wait=True)
                )
        with self._readers_lock:
            conns = [*self._readers, *([self._writer] if self._writer else [])]
            if self._checkpoint_conn is not None:
                conns.append(self._checkpoint_conn)
            self._readers.clear()
        self._writer = None
        self._checkpoint_conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.config.sqlite_busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA synchronous = {self.config.sqlite_synchronous}")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
        conn.execute("PRAGMA temp_store = MEMORY")
        # Reads through a memory map skip a syscall per page (the build's cap applies).
        conn.execute("PRAGMA mmap_size = 2147418112")
        return conn

    def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        # Checkpoints run in their own thread (see _after_commit), not inside COMMIT: there
        # they held the cross-process write lock while WAL pages were copied back.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreUnavailableError(f"{self.path}: cannot switch to WAL (got {mode})")
        self._migrate(conn)
        self._lock_fd = os.open(f"{self.path}-writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self._writer = conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailableError(
                    f"database schema version {version} is newer than this code's "
                    f"{SCHEMA_VERSION}: upgrade crmsync"
                )
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed or self._writer_pool is None:
            raise StoreUnavailableError("the store is closed or was never started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer_pool, self._guarded, fn, args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed or self._reader_pool is None:
            raise StoreUnavailableError("the store is closed or was never started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader_pool, self._guarded, lambda *a: fn(self._reader(), *a), args
        )

    @staticmethod
    def _guarded(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with _translated():
            return fn(*args)

    @contextlib.contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        conn = self._writer
        lock_fd = self._lock_fd
        if conn is None or lock_fd is None:
            raise StoreUnavailableError("the store is closed or was never started")
        locked = _flock(lock_fd, fcntl.LOCK_EX)  # blocks this writer thread only
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._forget_channels(self._chan_new)  # the rolled-back transaction made them
            raise
        finally:
            if locked:
                _flock(lock_fd, fcntl.LOCK_UN)
            self._chan_new.clear()
        self._after_commit()

    def _after_commit(self) -> None:
        """Start a checkpoint in the background every so often; force one if the WAL is huge.

        A passive checkpoint copies committed WAL pages back into the database while this
        process and others keep writing (it takes no write lock). If checkpoints cannot
        keep up (a long reader pins old pages), the WAL is checkpointed in line with
        ``RESTART`` once it passes ``_WAL_HARD_LIMIT``, so it cannot grow without bound.
        """
        now = time.monotonic()
        running = self._checkpointing is not None and not self._checkpointing.done()
        if not running and now - self._checkpointed_at >= _CHECKPOINT_EVERY_S:
            pool = self._checkpointer
            if pool is not None:
                self._checkpointed_at = now
                with contextlib.suppress(RuntimeError):  # the store is closing
                    self._checkpointing = pool.submit(self._checkpoint_passive)
        try:
            size = os.stat(f"{self.path}-wal").st_size
        except OSError:
            return
        if size > _WAL_HARD_LIMIT and self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("PRAGMA wal_checkpoint(RESTART)")

    def _checkpoint_passive(self) -> None:
        conn = self._checkpoint_conn
        if conn is None:
            conn = self._checkpoint_conn = self._connect()
        # Failure only delays the copy-back (the next one catches up); never the write.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _forget_channels(self, names: list[str]) -> None:
        """Drop cached ids of channels whose creation was rolled back."""
        if names:
            for name in names:
                self._chan_ids.pop(name, None)
            self._chan_sets.clear()

    @staticmethod
    @contextlib.contextmanager
    def _read_txn(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        # One snapshot for several statements (the feed and its checksums agree).
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # -- records ------------------------------------------------------------------------

    async def get(self, entity: str, id: str) -> Record | None:
        """One record (tombstones included), or ``None``."""
        found = await self.get_many([(entity, id)])
        return found.get((entity, id))

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        """Several records by ``(entity, id)``; missing ones are absent from the result."""
        if not keys:
            return {}
        return await self._read(self._get_many, list(keys))

    @staticmethod
    def _get_many(conn: sqlite3.Connection, keys: list[Key]) -> dict[Key, Record]:
        out: dict[Key, Record] = {}
        for entity, ids in _by_entity(keys).items():
            for chunk in _chunks(ids, _KEYS_PER_QUERY):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT id, seq, data FROM records WHERE entity = ? AND id IN ({marks})"
                for id_, seq, data in conn.execute(sql, (entity, *chunk)):
                    out[(entity, id_)] = decode_record(data, entity, id_, seq)
        return out

    async def apply(self, batch: WriteBatch) -> CommitResult:
        """Write a batch atomically; see :meth:`RecordStore.apply`.

        Raises:
            VersionConflictError: a write's expected version does not match (nothing written).
            DuplicateChangesetError: the batch's changeset result is already stored.
            InvalidRequestError: a write is malformed (empty key, version not increasing).
        """
        check_batch(batch)
        return await self._write(self._apply, batch)

    async def apply_group(self, batches: Sequence[WriteBatch]) -> list[GroupOutcome]:
        """One transaction, a savepoint per batch; see :meth:`RecordStore.apply_group`."""
        return await self._write(self._apply_group, list(batches))

    def _channel_set(
        self, conn: sqlite3.Connection, names: list[str]
    ) -> tuple[tuple[int, ...], str]:
        """The ids of a record's channels (created on first use) and their text form."""
        key = tuple(names)
        found = self._chan_sets.get(key)
        if found is not None:
            return found
        ids: list[int] = []
        for name in names:
            cid = self._chan_ids.get(name)
            if cid is None:
                row = conn.execute("SELECT chan FROM channels WHERE name = ?", (name,)).fetchone()
                if row is None:
                    cid = conn.execute("INSERT INTO channels (name) VALUES (?)", (name,)).lastrowid
                    self._chan_new.append(name)
                else:
                    cid = row[0]
                assert cid is not None
                self._chan_ids[name] = cid
            if cid not in ids:
                ids.append(cid)
        found = (tuple(ids), ",".join(map(str, ids)))
        if len(self._chan_sets) < 100_000:
            self._chan_sets[key] = found
        return found

    def _lookup(self, conn: sqlite3.Connection, keys: list[Key]) -> dict[Key, tuple[Any, ...]]:
        """Stored ``(rid, version, deleted, chans, hash, seq, left)`` of the existing ``keys``."""
        out: dict[Key, tuple[Any, ...]] = {}
        for entity, ids in _by_entity(keys).items():
            for chunk in _chunks(ids, _KEYS_PER_QUERY):
                marks = ",".join("?" * len(chunk))
                sql = (
                    "SELECT id, rid, version, deleted, chans, hash, seq, left FROM records"
                    f" WHERE entity = ? AND id IN ({marks})"
                )
                for row in conn.execute(sql, (entity, *chunk)):
                    out[(entity, row[0])] = row[1:]
        return out

    def _apply(self, batch: WriteBatch) -> CommitResult:
        prepared = self._prepare(batch)
        with self._write_txn() as conn:
            return self._apply_in(conn, batch, prepared)

    def _apply_group(self, batches: Sequence[WriteBatch]) -> list[GroupOutcome]:
        outcomes: list[GroupOutcome | None] = [None] * len(batches)
        prepared: list[_Prepared | None] = [None] * len(batches)
        for i, batch in enumerate(batches):
            try:
                check_batch(batch)
                prepared[i] = self._prepare(batch)
            except InvalidRequestError as e:
                outcomes[i] = e
        with self._write_txn() as conn:
            for i, batch in enumerate(batches):
                ready = prepared[i]
                if ready is None:
                    continue
                # A savepoint per batch: a refused one is undone alone, the rest commit.
                conn.execute("SAVEPOINT batch")
                created = len(self._chan_new)
                try:
                    outcomes[i] = self._apply_in(conn, batch, ready)
                except VersionConflictError as e:
                    conn.execute("ROLLBACK TO batch")
                    self._forget_channels(self._chan_new[created:])
                    del self._chan_new[created:]
                    outcomes[i] = e
                conn.execute("RELEASE batch")
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(batches)  # every batch was committed or refused
        return done

    def _prepare(self, batch: WriteBatch) -> _Prepared:
        """Encoding and hashing of a batch: no lock needed, so done before taking it."""
        writes = batch.writes
        n = len(writes)
        now = self._clock()
        last: dict[Key, int] = {}
        for i, w in enumerate(writes):
            last[(w.record.entity, w.record.id)] = i
        final = [(key, i, writes[i].record) for key, i in last.items()]
        blobs = [encode_body(rec) for _, _, rec in final]
        hashes = [
            0 if rec.deleted else _signed(record_hash(rec.entity, rec.id, rec.version, rec.fields))
            for _, _, rec in final
        ]
        first: dict[Key, int] = {}
        for i, w in enumerate(writes):
            first.setdefault((w.record.entity, w.record.id), i)
        must_exist = [key for key, i in first.items() if writes[i].expected_version != 0]
        # Only repeated keys or updates need the version walk below; fresh inserts are
        # checked by the unique key when they are inserted.
        walk = bool(must_exist) or len(last) != n
        return _Prepared(now, last, final, blobs, hashes, first, must_exist, walk)

    def _apply_in(
        self, conn: sqlite3.Connection, batch: WriteBatch, prepared: _Prepared
    ) -> CommitResult:
        """The writes of one batch inside the open write transaction."""
        now, last, final, blobs, hashes, first, must_exist, walk = prepared
        writes = batch.writes
        n = len(writes)
        changeset = batch.changeset
        if (
            changeset is not None
            and conn.execute(
                "SELECT 1 FROM changesets WHERE changeset_id = ?", (changeset.changeset_id,)
            ).fetchone()
        ):
            raise DuplicateChangesetError(changeset.changeset_id)
        head = conn.execute("SELECT value FROM meta WHERE key = 'head_seq'").fetchone()[0]
        stored = self._lookup(conn, must_exist) if must_exist else {}

        if walk:
            versions = {key: row[1] for key, row in stored.items()}
            conflicts: dict[Key, None] = {}
            for w in writes:
                key = (w.record.entity, w.record.id)
                if versions.get(key, 0) != w.expected_version:
                    conflicts[key] = None
                versions[key] = w.record.version
            if conflicts:
                raise VersionConflictError(list(conflicts))

        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        feed: list[tuple[Any, ...]] = []
        moved: list[tuple[int, int]] = []
        # Checksum deltas per channel set first (records share few sets), then per channel.
        set_deltas: dict[tuple[int, ...], list[int]] = {}
        deltas: dict[int, list[int]] = {}
        next_rid = 0
        if len(stored) != len(final):
            next_rid = conn.execute("SELECT max(rid) FROM records").fetchone()[0] or 0
        channel_set = self._channel_set
        feed_append = feed.append
        rid_of: dict[Key, int] = {}  # for the audit entries
        for (key, i, rec), blob, h in zip(final, blobs, hashes, strict=True):
            seq = head + 1 + i
            entity, id_ = key
            chans, chans_text = channel_set(conn, rec.channels)
            deleted = rec.deleted
            old = stored.get(key)
            if old is None:
                next_rid += 1
                rid = next_rid
                inserts.append(
                    (rid, entity, id_, rec.version, seq, deleted, chans_text, h, now, blob)
                )
            else:
                rid, _, old_deleted, old_chans_text, old_hash, old_seq, old_left = old
                old_chans = _parse_chans(old_chans_text)
                left = _parse_left(old_left)
                for c in old_chans:
                    # The live row moves to the new sequence; a channel left gets a removal.
                    moved.append((c, old_seq))
                    if c not in chans:
                        feed_append((c, seq, 1, now, rid))
                        left[c] = seq
                if left:
                    for c in chans:
                        gone = left.pop(c, None)
                        if gone is not None:  # back in a channel it had left
                            moved.append((c, gone))
                updates.append(
                    (rec.version, seq, deleted, chans_text, h, now, blob, _format_left(left), rid)
                )
                if not old_deleted:
                    for c in old_chans:
                        d = deltas.setdefault(c, [0, 0])
                        d[0] -= 1
                        d[1] -= old_hash
            for c in chans:
                feed_append((c, seq, 0, now, rid))
            if batch.audit:
                rid_of[key] = rid
            if not deleted and chans:
                sd = set_deltas.get(chans)
                if sd is None:
                    set_deltas[chans] = [1, h]
                else:
                    sd[0] += 1
                    sd[1] += h
        for chans, (count, digest) in set_deltas.items():
            for c in chans:
                d = deltas.setdefault(c, [0, 0])
                d[0] += count
                d[1] += digest

        if inserts:
            # Inserts rely on the unique key for their CAS (no read needed); the
            # savepoint lets a failure see which of them already existed.
            conn.execute("SAVEPOINT inserts")
            try:
                conn.executemany(_SQL_INSERT_RECORD, inserts)
            except sqlite3.IntegrityError as e:
                conn.execute("ROLLBACK TO inserts")
                new_keys = [k for k, i in first.items() if writes[i].expected_version == 0]
                existing = list(self._lookup(conn, new_keys))
                raise VersionConflictError(existing or new_keys) from e
            conn.execute("RELEASE inserts")
        if updates:
            conn.executemany(_SQL_UPDATE_RECORD, updates)
        if moved:
            conn.executemany(_SQL_FEED_DELETE, moved)
        if feed:
            conn.executemany(_SQL_FEED_ROW, feed)
        if deltas:
            self._apply_checksum_deltas(conn, deltas)

        last_seq = head + n
        if changeset is not None and n == 0:
            last_seq += 1  # a changeset with no writes still needs a place in the order
        if last_seq != head:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'head_seq'", (last_seq,))
        if changeset is not None:
            changeset.seq = last_seq
            conn.execute(
                "INSERT INTO changesets (changeset_id, device_id, seq, at_ms, data)"
                " VALUES (?, ?, ?, ?, ?)",
                (changeset.changeset_id, batch.device_id, last_seq, now, _encode(changeset)),
            )
        if batch.conflicts:
            conn.executemany(
                "INSERT OR REPLACE INTO conflicts (id, status, owner, created_ms, data)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (c.id, c.status, c.owner, c.created_ms, _encode(c))
                    for c in (
                        c if c.created_ms else msgspec.structs.replace(c, created_ms=now)
                        for c in batch.conflicts
                    )
                ],
            )
        if batch.audit:
            entries = [_stamp_audit(a, last, head, now) for a in batch.audit]
            conn.executemany(
                "INSERT INTO audit (entity, record_id, rid, at_ms, data) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        a.entity,
                        a.record_id,
                        rid_of.get((a.entity, a.record_id)),
                        a.at_ms,
                        _encode(a),
                    )
                    for a in entries
                ],
            )
        if batch.state:
            conn.executemany(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                list(batch.state.items()),
            )
        for i, w in enumerate(writes):
            w.record.seq = head + 1 + i
        return CommitResult(
            records=[w.record for w in writes],
            first_seq=head + 1,  # > last_seq when nothing needed a sequence
            last_seq=last_seq,
        )

    @staticmethod
    def _apply_checksum_deltas(conn: sqlite3.Connection, deltas: dict[int, list[int]]) -> None:
        ids = list(deltas)
        rows: list[tuple[int, int, int]] = []
        for chunk in _chunks(ids, _KEYS_PER_QUERY):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT chan, count, digest FROM channels WHERE chan IN ({marks})"
            for chan, count, digest in conn.execute(sql, tuple(chunk)):
                dc, dd = deltas[chan]
                if dc or dd:
                    rows.append((count + dc, _signed((digest + dd) & _MASK), chan))
        conn.executemany("UPDATE channels SET count = ?, digest = ? WHERE chan = ?", rows)

    # -- change feed --------------------------------------------------------------------

    async def changes(
        self,
        channels: Collection[str],
        after_seq: int,
        limit: int = 1000,
        with_checksums: bool = False,
    ) -> ChangePage:
        """Feed entries in ``channels`` after ``after_seq``; see :meth:`RecordStore.changes`."""
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1")
        if after_seq < 0:
            raise InvalidRequestError("after_seq must not be negative")
        return await self._read(
            self._changes, sorted(set(channels)), after_seq, limit, with_checksums
        )

    def _changes(
        self,
        conn: sqlite3.Connection,
        channels: list[str],
        after_seq: int,
        limit: int,
        with_checksums: bool,
    ) -> ChangePage:
        with self._read_txn(conn):
            head, oldest = _meta(conn)
            if 0 < after_seq < oldest:
                raise CheckpointTooOldError(after_seq, oldest)
            known = _known_channels(conn, channels)
            names = {cid: name for name, (cid, _, _) in known.items()}
            cursors = [conn.execute(_SQL_FEED, (cid, cid, after_seq)) for cid in names]
            rows: Iterable[tuple[Any, ...]] = (
                cursors[0] if len(cursors) == 1 else heapq.merge(*cursors)
            )
            entries: list[FeedEntry] = []
            has_more = False
            group: list[tuple[Any, ...]] = []
            for row in rows:
                if group and row[0] != group[0][0]:
                    _flush(group, names, entries)
                    group = []
                    if len(entries) >= limit:
                        has_more = True
                        break
                group.append(row)
            if group:
                _flush(group, names, entries)
            for cursor in cursors:
                cursor.close()
            if has_more:
                return ChangePage(entries=entries, last_seq=entries[-1].seq, has_more=True)
            sums: dict[str, ChannelChecksum] = {}
            if with_checksums:
                sums = {
                    name: _checksum(known[name]) if name in known else EMPTY for name in channels
                }
            return ChangePage(
                entries=entries, last_seq=max(head, after_seq), has_more=False, checksums=sums
            )

    async def scan(
        self, channels: Collection[str], after_seq: int = 0, limit: int = 1000
    ) -> list[Record]:
        """Live records in ``channels`` with ``seq > after_seq``, in sequence order."""
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1")
        if after_seq < 0:
            raise InvalidRequestError("after_seq must not be negative")
        return await self._read(self._scan, sorted(set(channels)), after_seq, limit)

    @staticmethod
    def _scan(
        conn: sqlite3.Connection, channels: list[str], after_seq: int, limit: int
    ) -> list[Record]:
        with SqliteRecordStore._read_txn(conn):
            known = _known_channels(conn, channels)
            cursors = [conn.execute(_SQL_SCAN, (cid, after_seq)) for cid, _, _ in known.values()]
            rows: Iterable[tuple[Any, ...]] = (
                cursors[0] if len(cursors) == 1 else heapq.merge(*cursors)
            )
            out: list[Record] = []
            previous = 0
            for seq, entity, id_, data in rows:
                if seq == previous:  # the same record, from another of the channels
                    continue
                if len(out) >= limit:
                    break
                previous = seq
                out.append(decode_record(data, entity, id_, seq))
            for cursor in cursors:
                cursor.close()
            return out

    async def scan_entity(self, entity: str, after_id: str | None, limit: int) -> list[Record]:
        """Records of ``entity`` (tombstones included) with ``id > after_id``, by id.

        Reconciliation reads the store this way (``importer.reconcile.EntityScanner``).
        """
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1")

        def read(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(
                "SELECT id, seq, data FROM records WHERE entity = ? AND id > ? ORDER BY id LIMIT ?",
                (entity, after_id or "", limit),
            )
            return [decode_record(data, entity, id_, seq) for id_, seq, data in rows]

        return await self._read(read)

    async def head_seq(self) -> int:
        """The highest committed sequence."""
        return await self._read(lambda conn: _meta(conn)[0])

    async def oldest_seq(self) -> int:
        """The oldest sequence a checkpoint may be at."""
        return await self._read(lambda conn: _meta(conn)[1])

    async def checksums(self, channels: Collection[str]) -> dict[str, ChannelChecksum]:
        """Current per-channel checksums of live records."""
        names = sorted(set(channels))

        def read(conn: sqlite3.Connection) -> dict[str, ChannelChecksum]:
            known = _known_channels(conn, names)
            return {name: _checksum(known[name]) if name in known else EMPTY for name in names}

        return await self._read(read)

    async def compact(self, older_than_ms: int) -> int:
        """Drop tombstones and removal entries written before ``older_than_ms`` and
        changeset results past retention; raise :meth:`oldest_seq` to the newest sequence
        dropped. Returns how many tombstones, removal entries and results were dropped."""
        return await self._write(self._compact, older_than_ms)

    def _compact(self, older_than_ms: int) -> int:
        results_before = self._clock() - self.config.changeset_retention_ms
        with self._write_txn() as conn:
            dropped = 0
            newest = 0
            tombstones = conn.execute(
                "SELECT rid, entity, id, seq, chans, left FROM records"
                " INDEXED BY records_tombstones WHERE deleted = 1 AND at_ms < ?",
                (older_than_ms,),
            ).fetchall()
            if tombstones:
                rows = [(c, t[3]) for t in tombstones for c in _parse_chans(t[4])]
                rows += [pair for t in tombstones for pair in _parse_left(t[5]).items()]
                conn.executemany(_SQL_FEED_DELETE, rows)
                conn.executemany(
                    "INSERT OR IGNORE INTO purged (entity, id, rid) VALUES (?, ?, ?)",
                    [(entity, id_, rid) for rid, entity, id_, *_ in tombstones],
                )
                conn.executemany("DELETE FROM records WHERE rid = ?", [(t[0],) for t in tombstones])
                dropped += len(tombstones)
                newest = max(t[3] for t in tombstones)
            count, top = conn.execute(
                "SELECT count(*), max(seq) FROM feed INDEXED BY feed_removals"
                " WHERE removed = 1 AND at_ms < ?",
                (older_than_ms,),
            ).fetchone()
            if count:
                conn.execute("DELETE FROM feed WHERE removed = 1 AND at_ms < ?", (older_than_ms,))
                dropped += count
                newest = max(newest, top)
            dropped += conn.execute(
                "DELETE FROM changesets WHERE at_ms < ?", (results_before,)
            ).rowcount
            if newest:
                conn.execute(
                    "UPDATE meta SET value = max(value, ?) WHERE key = 'oldest_seq'", (newest,)
                )
            return dropped

    # -- changeset results --------------------------------------------------------------

    async def changeset_result(self, changeset_id: str) -> ChangesetResult | None:
        """The stored result of a changeset, if it was applied."""

        def read(conn: sqlite3.Connection) -> ChangesetResult | None:
            row = conn.execute(
                "SELECT data FROM changesets WHERE changeset_id = ?", (changeset_id,)
            ).fetchone()
            return None if row is None else _decode_changeset(row[0])

        return await self._read(read)

    async def device_results(self, device_id: str, after_seq: int) -> list[ChangesetResult]:
        """Results of a device's changesets committed after ``after_seq``, in order."""

        def read(conn: sqlite3.Connection) -> list[ChangesetResult]:
            rows = conn.execute(
                "SELECT data FROM changesets WHERE device_id = ? AND seq > ? ORDER BY seq",
                (device_id, after_seq),
            )
            return [_decode_changeset(data) for (data,) in rows]

        return await self._read(read)

    # -- conflicts and audit ------------------------------------------------------------

    async def conflicts(
        self, status: str | None = None, owner: str | None = None, limit: int = 100
    ) -> list[ConflictRecord]:
        """Conflicts, newest first, filtered by status and owner."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        sql = "SELECT data FROM conflicts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_ms DESC, id DESC LIMIT ?"
        params.append(limit)

        def read(conn: sqlite3.Connection) -> list[ConflictRecord]:
            return [_decode_conflict(data) for (data,) in conn.execute(sql, params)]

        return await self._read(read)

    async def resolve_conflict(self, conflict_id: str, resolution: str, by: str) -> ConflictRecord:
        """Mark a conflict resolved. Resolving an already resolved conflict returns it as is.

        Raises:
            NotFoundError: no conflict has that id.
        """

        def write() -> ConflictRecord:
            with self._write_txn() as conn:
                row = conn.execute(
                    "SELECT data FROM conflicts WHERE id = ?", (conflict_id,)
                ).fetchone()
                if row is None:
                    raise NotFoundError(f"no conflict {conflict_id[:64]!r}")
                conflict = _decode_conflict(row[0])
                if conflict.status == "resolved":
                    return conflict
                conflict = msgspec.structs.replace(
                    conflict,
                    status="resolved",
                    resolution=resolution,
                    resolved_by=by,
                    resolved_ms=self._clock(),
                )
                conn.execute(
                    "UPDATE conflicts SET status = ?, data = ? WHERE id = ?",
                    (conflict.status, _encode(conflict), conflict_id),
                )
                return conflict

        return await self._write(write)

    async def audit_trail(
        self, entity: str | None = None, record_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Audit entries, newest first."""
        if record_id is not None and entity is None:
            raise InvalidRequestError("audit_trail by record_id needs the entity too")
        if record_id is not None and entity is not None:
            return await self._read(_record_audit, entity, record_id, limit)
        params: list[Any]
        if entity is None:
            sql, params = "SELECT data FROM audit ORDER BY n DESC LIMIT ?", [limit]
        else:
            sql = "SELECT data FROM audit INDEXED BY audit_entity WHERE entity = ?"
            sql += " ORDER BY n DESC LIMIT ?"
            params = [entity, limit]

        def read(conn: sqlite3.Connection) -> list[AuditEntry]:
            return [_decode_audit(data) for (data,) in conn.execute(sql, params)]

        return await self._read(read)

    # -- durable service state ----------------------------------------------------------

    async def get_state(self, key: str) -> bytes | None:
        """A small durable value, or ``None``."""

        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(read)

    async def get_states(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Several durable values in one read (one query, one snapshot)."""
        wanted = list(dict.fromkeys(keys))

        def read(conn: sqlite3.Connection) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for chunk in _chunks(wanted, _KEYS_PER_QUERY):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, value FROM state WHERE key IN ({marks})"
                out.update((k, bytes(v)) for k, v in conn.execute(sql, chunk))
            return out

        return await self._read(read) if wanted else {}

    async def put_state(self, key: str, value: bytes | None) -> None:
        """Set (or with ``None`` delete) a durable value."""

        def write() -> None:
            with self._write_txn() as conn:
                if value is None:
                    conn.execute("DELETE FROM state WHERE key = ?", (key,))
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value)
                    )

        await self._write(write)

    async def list_state(self, prefix: str) -> dict[str, bytes]:
        """All durable values whose key starts with ``prefix``."""

        def read(conn: sqlite3.Connection) -> dict[str, bytes]:
            # A range instead of LIKE: no escaping of % and _, and it uses the key order.
            rows = conn.execute(
                "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, prefix + "\U0010ffff"),
            )
            return {k: bytes(v) for k, v in rows if k.startswith(prefix)}

        return await self._read(read)

    # -- blobs --------------------------------------------------------------------------

    async def put_blob(self, meta: BlobMeta, data: bytes) -> None:
        """Store an attachment by its sha256 (idempotent)."""
        if len(data) != meta.size:
            raise InvalidRequestError(f"blob is {len(data)} bytes, metadata says {meta.size}")
        if not meta.created_ms:
            meta = msgspec.structs.replace(meta, created_ms=self._clock())

        def write() -> None:
            with self._write_txn() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO blobs (sha256, meta, data) VALUES (?, ?, ?)",
                    (meta.sha256, _encode(meta), data),
                )

        await self._write(write)

    async def get_blob(self, sha256: str) -> tuple[BlobMeta, bytes] | None:
        """An attachment and its metadata, or ``None``."""

        def read(conn: sqlite3.Connection) -> tuple[BlobMeta, bytes] | None:
            row = conn.execute(
                "SELECT meta, data FROM blobs WHERE sha256 = ?", (sha256,)
            ).fetchone()
            return None if row is None else (_decode_blob_meta(row[0]), bytes(row[1]))

        return await self._read(read)


# -- module-level helpers for the read paths ----------------------------------------------


def _meta(conn: sqlite3.Connection) -> tuple[int, int]:
    values = dict(conn.execute("SELECT key, value FROM meta"))
    return values["head_seq"], values["oldest_seq"]


def _known_channels(conn: sqlite3.Connection, names: list[str]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for chunk in _chunks(names, _KEYS_PER_QUERY):
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT name, chan, count, digest FROM channels WHERE name IN ({marks})"
        for name, chan, count, digest in conn.execute(sql, tuple(chunk)):
            out[name] = (chan, count, digest)
    return out


def _checksum(row: tuple[int, int, int]) -> ChannelChecksum:
    return ChannelChecksum(row[1], row[2] & _MASK)


def _flush(group: list[tuple[Any, ...]], names: dict[int, str], out: list[FeedEntry]) -> None:
    """Turn the feed rows of one sequence (one record, several channels) into entries.

    A live row wins: its record carries the current channels, so removals from the other
    requested channels at the same sequence say nothing more.
    """
    for seq, removed, entity, id_, _, data, clock in group:
        if not removed:
            change = decode_change(data, entity, id_, seq, clock)
            out.append(FeedEntry(seq=seq, entity=entity, id=id_, change=change))
            return
    for seq, removed, entity, id_, chan, _, _ in group:
        if removed:
            out.append(FeedEntry(seq=seq, entity=entity, id=id_, removed_from=names[chan]))


def _record_audit(
    conn: sqlite3.Connection, entity: str, record_id: str, limit: int
) -> list[AuditEntry]:
    """The newest ``limit`` audit entries of one record: through the rids it has had (a
    purged tombstone's too), plus entries of writes that never stored it."""
    with SqliteRecordStore._read_txn(conn):
        rids = conn.execute(
            "SELECT rid FROM records WHERE entity = ?1 AND id = ?2"
            " UNION SELECT rid FROM purged WHERE entity = ?1 AND id = ?2",
            (entity, record_id),
        ).fetchall()
        # A rid can be reused after its record was purged: the key check keeps them apart.
        rows = [
            row
            for (rid,) in rids
            for row in conn.execute(
                "SELECT n, data FROM audit INDEXED BY audit_rid WHERE rid = ?"
                " AND entity = ? AND record_id = ? ORDER BY n DESC LIMIT ?",
                (rid, entity, record_id, limit),
            )
        ]
        rows += conn.execute(
            "SELECT n, data FROM audit INDEXED BY audit_orphans WHERE rid IS NULL"
            " AND entity = ? AND record_id = ? ORDER BY n DESC LIMIT ?",
            (entity, record_id, limit),
        ).fetchall()
    rows.sort(reverse=True)
    return [_decode_audit(data) for _, data in rows[:limit]]


def _stamp_audit(entry: AuditEntry, last: dict[Key, int], head: int, now: int) -> AuditEntry:
    changes: dict[str, int] = {}
    if not entry.seq:
        i = last.get((entry.entity, entry.record_id))
        if i is not None:
            changes["seq"] = head + 1 + i
    if not entry.at_ms:
        changes["at_ms"] = now
    return msgspec.structs.replace(entry, **changes) if changes else entry


def remove_database(path: str | os.PathLike[str]) -> None:
    """Delete a database file and its WAL, shared-memory and lock files (tests, benchmarks)."""
    for suffix in ("", "-wal", "-shm", "-writelock"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{os.fspath(path)}{suffix}")
