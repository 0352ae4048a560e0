"""The sync engine: push the outbox, pull until caught up, bootstrap, verify, repair, wipe.

One sync cycle (:meth:`SyncEngine.sync`):

1. **Bootstrap** when the replica has no checkpoint yet, or a bootstrap or resync was
   interrupted: the snapshot streams in batches; each batch, its resume token and the
   checksum bookkeeping commit in one transaction, so a crash or a dropped connection
   resumes after the last committed batch. Memory holds at most two batches (one being
   committed, the next being prepared).
2. **Push**: the oldest pending mutations become a changeset ``<device_id>:<counter>``
   (counter advanced in the same transaction). A network failure leaves the changeset in
   flight, and the next attempt resends the *same* id and content, which the server
   deduplicates. Outcomes update the server base of each record; a rejected mutation
   moves to the dead-letter list and the next changeset goes out regardless.
3. **Pull** until ``has_more`` is false. Each page (own changeset results, changes,
   removals) and its checkpoint commit in one transaction; a record with unsynced local
   mutations gets the server state as its new base and the mutations replayed on top.
4. **Verify** the per-channel checksums of the last page against the local bookkeeping;
   a mismatch first rebuilds the bookkeeping from the rows, then, if it persists,
   re-bootstraps the scope (a *repair*).

``action: "resync"`` (or ``checkpoint_too_old``) re-bootstraps the scope while keeping
the outbox: every key the snapshot delivers is noted in ``snapshot_seen`` (with its batch),
and when the last batch commits, any local record the snapshot did not deliver is a ghost
and is purged, in the same transaction. Snapshot batches come in the server's sequence
order, not key order, and a record changed while the snapshot streams may come twice
(the later copy wins by version). A first bootstrap into an empty replica needs none of
this: its batches are plain bulk inserts. ``action:
"wipe"`` (or ``device_revoked``) crypto-shreds the replica through
:meth:`LocalDatabase.wipe` and emits :class:`ReplicaWiped`.

Checksums: ``channel_checksums`` holds, per channel, the count and 64-bit digest sum of
the *server base* of every live record (see :mod:`sync_protocol.checksum`). Every change
to a base updates it in the same transaction, so verification costs one small read, not a
scan of a replica that may be gigabytes.

Background sync (:meth:`SyncEngine.run`): an asyncio loop woken by WebSocket pokes, local
writes and a periodic timer, with exponential back-off and jitter after failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from client_sdk.database import (
    Connection,
    LocalDatabase,
    LocalRecord,
    Migration,
    PreparedRecords,
    prepare_records,
)
from client_sdk.errors import (
    DeviceRevokedError,
    InvalidRecordError,
    LocalDatabaseError,
    MalformedResponseError,
    RecordExistsError,
    RequestRejectedError,
    SyncError,
    SyncStoppedError,
)
from client_sdk.events import (
    ConflictResolved,
    Event,
    EventBus,
    MutationRejected,
    Phase,
    ReplicaWiped,
    ResyncStarted,
    SyncCompleted,
    SyncFailed,
    SyncProgress,
)
from client_sdk.local import LocalStore
from client_sdk.outbox import OUTBOX_MIGRATIONS, Outbox, OutboxEntry
from client_sdk.transport import ChangesetRefusedError, Transport
from sync_protocol.changesets import ChangesetResult, MutationResult, PushRequest
from sync_protocol.checksum import ChannelChecksum, encoded_record_hash, record_hash
from sync_protocol.hlc import HLC
from sync_protocol.pull import BootstrapBatch, Removal
from sync_protocol.records import RecordChange
from sync_protocol.version import PROTOCOL_VERSION, SCHEMA_VERSION

_log = logging.getLogger(__name__)

CHECKPOINT_KEY: Final = "sync.checkpoint"
BOOT_ACTIVE_KEY: Final = "bootstrap.reason"
BOOT_RESUME_KEY: Final = "bootstrap.resume"
BOOT_MODE_KEY: Final = "bootstrap.mode"
"""``fresh``: the replica was empty when the snapshot began (batches are bulk inserts);
``resync``: it was not (delivered keys are noted and the rest purged at the end)."""
BOOT_COUNT_KEY: Final = "bootstrap.records"

_MASK: Final = (1 << 64) - 1
_SIGN: Final = 1 << 63

SYNC_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        version=110,
        name="channel_checksums",
        statements=(
            """CREATE TABLE channel_checksums(
                channel TEXT PRIMARY KEY,
                count INTEGER NOT NULL,
                digest INTEGER NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        version=111,
        name="snapshot_seen",
        statements=(
            """CREATE TABLE snapshot_seen(
                entity TEXT NOT NULL,
                id TEXT NOT NULL,
                PRIMARY KEY (entity, id)
            ) WITHOUT ROWID""",
        ),
    ),
)

REPLICA_MIGRATIONS: Final[tuple[Migration, ...]] = (*OUTBOX_MIGRATIONS, *SYNC_MIGRATIONS)
"""Every migration the SDK's sync layer adds to the base schema, in order."""

_encode = msgspec.json.Encoder().encode
_fields_decoder = msgspec.json.Decoder(dict[str, Any])
_channels_decoder = msgspec.json.Decoder(tuple[str, ...])
_book_decoder = msgspec.json.Decoder(list[tuple[str, int, int]])


# --- checksums -----------------------------------------------------------------------


class ChecksumDeltas:
    """Per-channel changes to the checksum book, collected during one transaction."""

    __slots__ = ("by_channel",)

    def __init__(self) -> None:
        self.by_channel: dict[str, list[int]] = {}

    def add(self, channels: Iterable[str], h: int) -> None:
        """A live base record with hash ``h`` joined these channels."""
        for c in channels:
            d = self.by_channel.get(c)
            if d is None:
                d = self.by_channel[c] = [0, 0]
            d[0] += 1
            d[1] += h

    def remove(self, channels: Iterable[str], h: int) -> None:
        """A live base record with hash ``h`` left these channels."""
        for c in channels:
            d = self.by_channel.get(c)
            if d is None:
                d = self.by_channel[c] = [0, 0]
            d[0] -= 1
            d[1] -= h

    def merge(self, other: ChecksumDeltas) -> None:
        """Add another set of deltas to these."""
        for c, (dc, dd) in other.by_channel.items():
            d = self.by_channel.get(c)
            if d is None:
                self.by_channel[c] = [dc, dd]
            else:
                d[0] += dc
                d[1] += dd

    def swap(self, old: LocalRecord | None, new: LocalRecord | None) -> None:
        """A base record changed from ``old`` to ``new`` (None: absent)."""
        if old is not None and not old.deleted:
            self.remove(old.channels, record_hash(old.entity, old.id, old.version, old.fields))
        if new is not None and not new.deleted:
            self.add(new.channels, record_hash(new.entity, new.id, new.version, new.fields))


def _signed(value: int) -> int:
    return value - (1 << 64) if value & _SIGN else value


class ChecksumBook:
    """The ``channel_checksums`` table: the replica's per-channel checksums, kept current."""

    @staticmethod
    def commit(conn: Connection, deltas: ChecksumDeltas) -> None:
        """Fold collected deltas into the table (in the caller's transaction)."""
        changed = {c: d for c, d in deltas.by_channel.items() if d[0] or d[1] & _MASK}
        deltas.by_channel.clear()
        if not changed:
            return
        # One statement to read and one to write, however many channels: a snapshot
        # batch commits in a worker thread, and every statement takes the GIL back from
        # the event loop, which is preparing the next batch meanwhile.
        (book,) = conn.execute(
            "SELECT json_group_array(json_array(channel, count, digest)) FROM channel_checksums"
            " WHERE channel IN (SELECT value FROM json_each(?))",
            (_encode(list(changed)),),
        ).fetchone()
        current = {c: (n, d & _MASK) for c, n, d in _book_decoder.decode(book)}
        rows = []
        for channel, (dc, dd) in changed.items():
            count, digest = current.get(channel, (0, 0))
            rows.append((channel, count + dc, _signed((digest + dd) & _MASK)))
        conn.execute(
            "INSERT INTO channel_checksums(channel, count, digest)"
            " SELECT value ->> 0, value ->> 1, value ->> 2 FROM jsonb_each(?) WHERE true"
            " ON CONFLICT(channel) DO UPDATE SET count = excluded.count, digest = excluded.digest",
            (_encode(rows),),
        )

    @staticmethod
    def read(conn: Connection, channels: Iterable[str]) -> dict[str, ChannelChecksum]:
        """The local checksums of ``channels`` (empty ones for channels never seen)."""
        wanted = list(channels)
        found = {
            c: ChannelChecksum(n, d & _MASK)
            for c, n, d in conn.execute(
                "SELECT channel, count, digest FROM channel_checksums"
                " WHERE channel IN (SELECT value FROM json_each(?))",
                (_encode(wanted).decode(),),
            )
        }
        return {c: found.get(c, ChannelChecksum()) for c in wanted}

    @staticmethod
    def rebuild(conn: Connection) -> None:
        """Recompute every checksum from the base state (O(replica); used on a mismatch)."""
        deltas = ChecksumDeltas()
        for entity, id_, version, fields, channels in conn.execute(
            "SELECT entity, id, version, json(fields), channels FROM records AS r"
            " WHERE deleted = 0 AND NOT EXISTS"
            " (SELECT 1 FROM sync_base AS b WHERE b.entity = r.entity AND b.id = r.id)"
        ):
            deltas.add(
                _channels_decoder.decode(channels),
                record_hash(entity, id_, version, _fields_decoder.decode(fields)),
            )
        for base in list(Outbox.iter_bases(conn)):
            deltas.swap(None, base)
        conn.execute("DELETE FROM channel_checksums")
        ChecksumBook.commit(conn, deltas)


# --- applying server state -----------------------------------------------------------


class ReplicaWriter:
    """Applies server state (changes, removals, changeset results, snapshot batches) to
    the replica: directly for records without local mutations, as a new base plus a
    replay of the outbox for the others. Runs inside the caller's transaction."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    @property
    def db(self) -> LocalDatabase:
        """The replica."""
        return self.store.db

    # -- changes ----------------------------------------------------------------------

    def apply_changes(
        self,
        conn: Connection,
        changes: Iterable[RecordChange],
        deltas: ChecksumDeltas,
    ) -> int:
        """Write server record states, never going back to an older version.

        (A snapshot batch over an empty key range takes the faster path of
        :meth:`apply_snapshot` instead.)

        Returns:
            Number of records written.
        """
        latest: dict[tuple[str, str], RecordChange] = {}
        for ch in changes:
            key = (ch.entity, ch.id)
            prev = latest.get(key)
            if prev is None or ch.version >= prev.version:
                latest[key] = ch
        if not latest:
            return 0
        by_entity: dict[str, list[RecordChange]] = {}
        for ch in latest.values():
            by_entity.setdefault(ch.entity, []).append(ch)
        any_tracked = Outbox.any_base(conn)
        bulk: list[LocalRecord] = []
        written = 0
        for entity, chs in by_entity.items():
            ids = [c.id for c in chs]
            tracked = Outbox.base_keys(conn, entity, ids) if any_tracked else set()
            current = _current_rows(conn, entity, ids) if ids else {}
            compare: dict[str, RecordChange] = {}
            for ch in chs:
                if ch.id in tracked:
                    written += self._apply_tracked(conn, ch, deltas)
                    continue
                cur = current.get(ch.id)
                if cur is None:
                    if ch.deleted:
                        continue  # nothing to delete here
                elif cur[0] > ch.version:
                    continue  # already newer (e.g. from our own changeset's result)
                elif not cur[1] or cur[0] == ch.version:
                    compare[ch.id] = ch  # old content needed: checksum, or equality
                    continue
                bulk.append(_record_of(ch))
                if not ch.deleted:
                    deltas.add(ch.channels, record_hash(entity, ch.id, ch.version, ch.fields))
            if compare:
                for id_, version, fields_json, channels_json, deleted in _old_rows(
                    conn, entity, list(compare)
                ):
                    ch = compare[id_]
                    new = _record_of(ch)
                    old = LocalRecord(
                        entity=entity,
                        id=id_,
                        version=version,
                        fields=_fields_decoder.decode(fields_json),
                        deleted=bool(deleted),
                        channels=_channels_decoder.decode(channels_json),
                    )
                    if (
                        old.version == new.version
                        and old.deleted == new.deleted
                        and old.channels == new.channels
                        and old.fields == new.fields
                    ):
                        continue  # the same state again (bootstrap overlap, resync)
                    deltas.swap(old, new)
                    bulk.append(new)
        if bulk:
            written += self.db.upsert_records(bulk)
        return written

    def _apply_tracked(self, conn: Connection, ch: RecordChange, deltas: ChecksumDeltas) -> int:
        """Rebase: the server state becomes the base, local mutations replay on top."""
        _, base = Outbox.get_base(conn, ch.entity, ch.id)
        if base is not None and base.version > ch.version:
            return 0
        new = _record_of(ch)
        deltas.swap(base, new)
        Outbox.put_base(conn, ch.entity, ch.id, new)
        self.store.refresh(conn, ch.entity, ch.id)
        return 1

    # -- removals ---------------------------------------------------------------------

    def apply_removals(
        self, conn: Connection, removals: Iterable[Removal], deltas: ChecksumDeltas
    ) -> int:
        """Purge records that left the scope (a record with local mutations keeps them,
        on an empty base: the server will answer for them).

        Returns:
            Number of records removed.
        """
        purge: list[tuple[str, str]] = []
        for r in removals:
            tracked, base = Outbox.get_base(conn, r.entity, r.id)
            if tracked:
                if base is not None:
                    deltas.swap(base, None)
                    Outbox.put_base(conn, r.entity, r.id, None)
                    self.store.refresh(conn, r.entity, r.id)
                continue
            current = self.db.get_record(r.entity, r.id)
            if current is None:
                continue
            deltas.swap(current, None)
            purge.append((r.entity, r.id))
        return self.db.purge_records(purge) if purge else 0

    # -- own changeset results --------------------------------------------------------

    def apply_results(
        self, conn: Connection, results: Iterable[ChangesetResult], deltas: ChecksumDeltas
    ) -> list[Event]:
        """Settle in-flight mutations from their changeset's result.

        Applied, merged and conflicting mutations leave the outbox and their winning
        values become the record's base; rejected ones go to the dead-letter list.
        Results of changesets already settled are ignored.

        Returns:
            The events to emit once the transaction commits.
        """
        events: list[Event] = []
        for cs in results:
            if cs.status != "done":
                continue
            rows = Outbox.changeset_rows(conn, cs.changeset_id)
            if not rows:
                continue
            by_index = {r.index: r for r in cs.results}
            touched: dict[tuple[str, str], None] = {}
            for index, entry in enumerate(rows):
                touched[(entry.entity, entry.id)] = None
                result = by_index.get(index)
                if result is None or (result.entity, result.id) != (entry.entity, entry.id):
                    self._reject(conn, entry, "missing_result", "no result for this mutation")
                    events.append(_rejected_event(entry, "missing_result", ""))
                elif result.outcome == "rejected":
                    code = result.code or "rejected"
                    self._reject(conn, entry, code, result.message)
                    events.append(_rejected_event(entry, code, result.message or ""))
                else:
                    self._settle(conn, entry, result, cs.seq, deltas)
                    if result.outcome == "conflict":
                        events.append(ConflictResolved(entry.mutation_id, result))
            for entity, id_ in touched:
                self.store.refresh(conn, entity, id_)
        return events

    @staticmethod
    def _reject(conn: Connection, entry: OutboxEntry, code: str, message: str | None) -> None:
        Outbox.reject(conn, entry.seq, code, message)

    def _settle(
        self,
        conn: Connection,
        entry: OutboxEntry,
        result: MutationResult,
        seq: int,
        deltas: ChecksumDeltas,
    ) -> None:
        _, base = Outbox.get_base(conn, entry.entity, entry.id)
        if base is None or base.version <= result.version:
            # The result names only the fields the mutation touched; the rest of the base
            # is the last pulled state. If the server merged other changes in, the next
            # pull brings the whole record (and the equality check there lets it in).
            kept = base.fields if base is not None and not base.deleted else {}
            new = LocalRecord(
                entity=entry.entity,
                id=entry.id,
                version=result.version,
                seq=max(seq, base.seq if base is not None else 0),
                fields={} if result.deleted else {**kept, **result.fields},
                deleted=result.deleted,
                channels=base.channels if base is not None else (),
            )
            deltas.swap(base, new)
            Outbox.put_base(conn, entry.entity, entry.id, new)
        Outbox.remove(conn, [entry.seq])
        if result.outcome == "applied":
            Outbox.rebase_pending(conn, entry.entity, entry.id, entry.base_version, result.version)

    # -- snapshot batches -------------------------------------------------------------

    def apply_snapshot(
        self,
        conn: Connection,
        batch: BootstrapBatch,
        mode: str,
        deltas: ChecksumDeltas,
        prepared: PreparedSnapshotBatch | None = None,
    ) -> None:
        """Write one snapshot batch; after the last one of a resync, purge the ghosts.

        Args:
            mode: ``fresh`` (the replica was empty when the snapshot began) or ``resync``
                (see :data:`BOOT_MODE_KEY`).
            prepared: ``prepare_snapshot_batch(batch)``, if it was computed beforehand.
        """
        if prepared is None:
            prepared = prepare_snapshot_batch(batch)
        if mode == "fresh":
            if prepared.error is not None:
                raise prepared.error  # a malformed record: nothing of the batch is written
            if prepared.live is not None:
                if _replica_empty(conn):
                    # The first batch: load without indexes, build them at the end. Not
                    # after a restart (the open rebuilt them) nor once a local write has.
                    self.db.defer_indexes()
                conn.execute("SAVEPOINT snapshot_batch")
                try:
                    self.db.insert_prepared(prepared.live)
                except RecordExistsError:
                    # A record changed while the snapshot streamed comes again (or the
                    # app created one meanwhile): this batch takes the general path.
                    conn.execute("ROLLBACK TO snapshot_batch")
                    self.apply_changes(conn, batch.records, deltas)
                else:
                    deltas.merge(prepared.deltas)
                conn.execute("RELEASE snapshot_batch")
            if batch.done and self.db.restore_indexes():
                # A record sent twice was counted twice; its older copy is gone now.
                deltas.by_channel.clear()
                ChecksumBook.rebuild(conn)
            return
        self.apply_changes(conn, batch.records, deltas)
        conn.executemany(
            "INSERT OR IGNORE INTO snapshot_seen(entity, id) VALUES (?, ?)",
            [(r.entity, r.id) for r in batch.records],
        )
        if batch.done:
            ghosts = [
                Removal(entity=e, id=i, reason="scope")
                for e, i in conn.execute(
                    "SELECT entity, id FROM records AS r WHERE NOT EXISTS (SELECT 1 FROM"
                    " snapshot_seen AS s WHERE s.entity = r.entity AND s.id = r.id)"
                ).fetchall()
            ]
            if ghosts:
                self.apply_removals(conn, ghosts, deltas)
            conn.execute("DELETE FROM snapshot_seen")


def _replica_empty(conn: Connection) -> bool:
    return conn.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None


@dataclass(frozen=True, slots=True)
class PreparedSnapshotBatch:
    """The CPU work on a snapshot batch that needs no database: done while the previous
    batch is being written.

    Attributes:
        max_clock: the greatest record clock, for the device's HLC.
        live: its live records, validated and encoded; None when malformed.
        deltas: what ``live`` adds to the checksum book.
        error: why ``live`` could not be prepared (raised when the batch is written
            into a fresh replica; a resync's general path reports it itself).
    """

    max_clock: HLC | None
    live: PreparedRecords | None
    deltas: ChecksumDeltas
    error: InvalidRecordError | None = None


def prepare_snapshot_batch(batch: BootstrapBatch) -> PreparedSnapshotBatch:
    """Validate, encode, index and hash a snapshot batch (no database access)."""
    records = batch.records
    deltas = ChecksumDeltas()
    live: PreparedRecords | None = None
    error: InvalidRecordError | None = None
    alive = [r for r in records if not r.deleted]
    try:
        live = prepare_records(alive)
    except InvalidRecordError as e:
        error = e
    else:
        add = deltas.add
        for r, fields_json in zip(alive, live.fields_json, strict=True):
            add(r.channels, encoded_record_hash(r.entity, r.id, r.version, fields_json))
    return PreparedSnapshotBatch(
        max_clock=_max_clock(records),
        live=live,
        deltas=deltas,
        error=error,
    )


def _record_of(ch: RecordChange) -> LocalRecord:
    return LocalRecord(
        entity=ch.entity,
        id=ch.id,
        version=ch.version,
        seq=ch.seq,
        fields={} if ch.deleted else ch.fields,
        deleted=ch.deleted,
        channels=tuple(ch.channels),
    )


def _current_rows(conn: Connection, entity: str, ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``id -> (version, deleted)`` of the stored rows among ``ids``."""
    return {
        id_: (version, deleted)
        for id_, version, deleted in conn.execute(
            "SELECT id, version, deleted FROM records WHERE entity = ?"
            " AND id IN (SELECT value FROM json_each(?))",
            (entity, _encode(list(ids)).decode()),
        )
    }


def _old_rows(conn: Connection, entity: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, version, json(fields), channels, deleted FROM records WHERE entity = ?"
        " AND id IN (SELECT value FROM json_each(?))",
        (entity, _encode(list(ids)).decode()),
    ).fetchall()


def _rejected_event(entry: OutboxEntry, code: str, message: str) -> MutationRejected:
    return MutationRejected(entry.mutation_id, entry.entity, entry.id, code, message)


def _max_clock(changes: Iterable[RecordChange]) -> HLC | None:
    clocks = [c.clock for c in changes if c.clock is not None]
    return max(clocks) if clocks else None


# --- the engine ----------------------------------------------------------------------


@dataclass(slots=True)
class _SnapshotCursor:
    """How far the snapshot being applied has got (committed batches only)."""

    mode: str
    count: int


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Tuning of the sync engine.

    Attributes:
        push_batch: most mutations per changeset (the server accepts up to 500).
        pull_limit: most changes per pull page.
        max_rounds: push/pull rounds per cycle while new local writes keep arriving
            or a changeset result is pending.
        pending_wait_s: pause before asking again for a pending changeset's result.
        poll_interval_s: background sync period when no poke arrives.
        backoff_base_s: first back-off after a failure; doubles per failure.
        backoff_cap_s: longest back-off.
        verify_checksums: compare per-channel checksums after each pull.
        device_name: display name sent when registering the device.
        platform: platform sent when registering the device.
    """

    push_batch: int = 200
    pull_limit: int = 1000
    max_rounds: int = 4
    pending_wait_s: float = 0.5
    poll_interval_s: float = 300.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    verify_checksums: bool = True
    device_name: str = ""
    platform: str = ""


def backoff_delay(failures: int, base: float, cap: float, rnd: Callable[[], float]) -> float:
    """Exponential back-off with jitter: between half and all of ``base * 2**(n-1)``,
    capped, so a fleet of devices coming back online does not retry in lockstep."""
    ceiling = min(cap, base * 2.0 ** min(60, max(0, failures - 1)))
    return ceiling * (0.5 + 0.5 * rnd())


class SyncEngine:
    """Synchronises one replica with the server.

    Args:
        store: the local API over the replica (its lock guards every database access).
        transport: the network (see :class:`~client_sdk.transport.Transport`).
        device_id: this device's id (also the node of its clock and the prefix of its
            changeset ids).
        events: where progress, conflicts, rejections and failures are reported.
        config: tuning.
        rnd: source of jitter (tests pass a fixed one).
    """

    def __init__(
        self,
        store: LocalStore,
        transport: Transport,
        device_id: str,
        *,
        events: EventBus | None = None,
        config: SyncConfig | None = None,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.transport = transport
        self.device_id = device_id
        self.events = events or EventBus()
        self.config = config or SyncConfig()
        self.writer = ReplicaWriter(store)
        self._rnd = rnd
        self._cycle_lock = asyncio.Lock()
        self._registered = False
        self.wiped = False
        # Background loop state.
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._failures = 0

    # --- state -----------------------------------------------------------------------

    @property
    def checkpoint(self) -> str | None:
        """The stored pull checkpoint (None before the first bootstrap completed)."""
        with self.store.lock:
            value = self.store.db.get_state(CHECKPOINT_KEY)
        return value if isinstance(value, str) and value else None

    def _state(self, key: str) -> Any:
        with self.store.lock:
            return self.store.db.get_state(key)

    def checksums(self, channels: Iterable[str]) -> dict[str, ChannelChecksum]:
        """The replica's current per-channel checksums (its server base)."""
        with self.store.lock:
            return ChecksumBook.read(self.store.db.conn, channels)

    # --- one cycle -------------------------------------------------------------------

    async def sync(self) -> SyncCompleted:
        """Run one full cycle: bootstrap if needed, push, pull, verify (and repair).

        Returns:
            What the cycle did (also emitted as an event).

        Raises:
            SyncError: the cycle failed (``retryable`` says whether trying later may
                help); :class:`DeviceRevokedError` after the replica was wiped.
        """
        async with self._cycle_lock:
            if self.wiped or self.store.db.closed:
                raise SyncStoppedError("the replica was closed or wiped")
            try:
                done = await self._cycle()
            except DeviceRevokedError:
                self._wipe("device_revoked")
                raise
        self.events.emit(done)
        return done

    async def _cycle(self) -> SyncCompleted:
        await self._register()
        if self._needs_bootstrap():
            await self._bootstrap(self._state(BOOT_ACTIVE_KEY) or "initial")
        pushed = pulled = 0
        checksum_ok: bool | None = None
        repaired = False
        for _ in range(max(1, self.config.max_rounds)):
            pushed += await self._push()
            count, action, ok = await self._pull()
            pulled += count
            if action == "resync":
                await self._bootstrap("checkpoint_too_old")
                continue
            if ok is False and not repaired:
                repaired = True
                await self._bootstrap("checksum_mismatch")
                continue
            checksum_ok = ok
            with self.store.lock:
                counts = Outbox.counts(self.store.db.conn)
            if counts["pending"] == 0 and counts["inflight"] == 0:
                break
            if counts["inflight"]:
                await asyncio.sleep(self.config.pending_wait_s)
        return SyncCompleted(pushed=pushed, pulled=pulled, checksum_ok=checksum_ok)

    async def _register(self) -> None:
        if not self._registered:
            await self.transport.register_device(
                self.device_id, self.config.device_name, self.config.platform
            )
            self._registered = True

    def _needs_bootstrap(self) -> bool:
        return self.checkpoint is None or bool(self._state(BOOT_ACTIVE_KEY))

    # --- push ------------------------------------------------------------------------

    async def _push(self) -> int:
        """Push changesets until the outbox has nothing pending or a result is pending.

        Returns:
            Number of mutations settled (applied, merged, conflict or rejected).
        """
        settled = 0
        reregistered = False
        while True:
            with self.store.transaction() as conn:
                cs = Outbox.inflight(conn) or Outbox.assign_changeset(
                    conn, self.device_id, self.config.push_batch
                )
            if cs is None:
                return settled
            cid, entries = cs
            request = PushRequest(
                protocol=PROTOCOL_VERSION,
                changeset_id=cid,
                device_id=self.device_id,
                mutations=[e.to_mutation() for e in entries],
                schema_version=SCHEMA_VERSION,
            )
            try:
                result = await self.transport.push(request)
            except ChangesetRefusedError as e:
                if e.server_code == "device_not_registered" and not reregistered:
                    reregistered, self._registered = True, False
                    await self._register()
                    continue
                if not (e.errors or e.status in (400, 413, 415, 422)):
                    raise
                self._refused(entries, e)
                settled += len(entries)
                continue
            if result.status != "done":
                return settled  # the result comes with a pull, or with the next resend
            deltas = ChecksumDeltas()
            with self.store.transaction() as conn:
                events = self.writer.apply_results(conn, [result], deltas)
                ChecksumBook.commit(conn, deltas)
            settled += len(entries)
            self._emit_all(events)
            self.events.emit(SyncProgress("push", settled))

    def _refused(self, entries: Sequence[OutboxEntry], error: ChangesetRefusedError) -> None:
        """A changeset refused as a whole: the named mutations go to the dead-letter list,
        the others back to the queue (they will go out in a new changeset)."""
        codes = {e.index: e.code for e in error.errors}
        events: list[Event] = []
        with self.store.transaction() as conn:
            for index, entry in enumerate(entries):
                code = codes.get(index) if codes else (error.server_code or error.code)
                if code is None:
                    conn.execute(
                        "UPDATE outbox SET status = 'pending', changeset_id = NULL WHERE seq = ?",
                        (entry.seq,),
                    )
                    continue
                Outbox.reject(conn, entry.seq, code, str(error))
                events.append(_rejected_event(entry, code, str(error)))
        self._emit_all(events)

    # --- pull ------------------------------------------------------------------------

    async def _pull(self) -> tuple[int, str, bool | None]:
        """Pull pages until caught up.

        Returns:
            ``(changes applied, action, checksum verdict)``; action is ``resync`` when the
            checkpoint is too old; the verdict is None when nothing could be compared.
        """
        checkpoint = self.checkpoint or ""
        applied = 0
        while True:
            try:
                page = await self.transport.pull(self.device_id, checkpoint, self.config.pull_limit)
            except SyncError as e:
                if e.code == "checkpoint_too_old":
                    return applied, "resync", None
                raise
            if page.action == "wipe":
                raise DeviceRevokedError("the server asked this device to wipe its replica")
            deltas = ChecksumDeltas()
            with self.store.transaction() as conn:
                events = self.writer.apply_results(conn, page.results, deltas)
                if page.action == "resync":
                    ChecksumBook.commit(conn, deltas)
                else:
                    self.writer.apply_changes(conn, page.changes, deltas)
                    self.writer.apply_removals(conn, page.removals, deltas)
                    ChecksumBook.commit(conn, deltas)
                    self.store.clock.observe(conn, _max_clock(page.changes))
                    conn.execute(
                        "INSERT INTO sync_state(key, value) VALUES (?, ?)"
                        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (CHECKPOINT_KEY, page.checkpoint),
                    )
            self._emit_all(events)
            if page.action == "resync":
                return applied, "resync", None
            applied += len(page.changes) + len(page.removals)
            checkpoint = page.checkpoint
            self.events.emit(SyncProgress("pull", applied))
            if not page.has_more:
                return applied, "none", self._verify(page.checksums)

    def _verify(self, server: dict[str, ChannelChecksum]) -> bool | None:
        """Compare the server's checksums with the book (rebuilt once if they differ)."""
        if not server or not self.config.verify_checksums:
            return None
        with self.store.transaction() as conn:
            if Outbox.counts(conn)["inflight"]:
                return None  # an unsettled changeset may or may not be in the server's sums
            local = ChecksumBook.read(conn, server)
            if local == server:
                return True
            ChecksumBook.rebuild(conn)
            local = ChecksumBook.read(conn, server)
        bad = sorted(c for c in server if local[c] != server[c])
        if bad:
            _log.warning("checksum mismatch in %d channel(s): repairing", len(bad))
            return False
        return True

    # --- bootstrap -------------------------------------------------------------------

    async def _bootstrap(self, reason: str) -> None:
        """Stream a snapshot of the scope into the replica (resuming an interrupted one)."""
        if not self._state(BOOT_ACTIVE_KEY):
            with self.store.transaction() as conn:
                _set_states(conn, {BOOT_ACTIVE_KEY: reason, BOOT_COUNT_KEY: 0})
                self._begin_snapshot(conn)
            if reason != "initial":
                self.events.emit(ResyncStarted(reason))
        phase: Phase = "bootstrap" if reason == "initial" else "resync"
        for attempt in (0, 1):
            resume = self._state(BOOT_RESUME_KEY)
            try:
                if await self._stream_snapshot(resume if isinstance(resume, str) else None, phase):
                    return
            except RequestRejectedError as e:
                # A resume token the server no longer accepts (the scope changed, or it
                # expired): start the snapshot again; ghosts are purged at its end.
                if attempt == 0 and resume and e.server_code in ("invalid_checkpoint", ""):
                    with self.store.transaction() as conn:
                        self._begin_snapshot(conn)
                    continue
                raise
            raise MalformedResponseError("the bootstrap stream ended before its last batch")

    @staticmethod
    def _begin_snapshot(conn: Connection) -> None:
        """Start a snapshot from its first batch: no resume token, nothing noted as seen,
        and the mode the replica's contents call for."""
        mode = "fresh" if _replica_empty(conn) else "resync"
        conn.execute("DELETE FROM snapshot_seen")
        _set_states(conn, {BOOT_RESUME_KEY: None, BOOT_MODE_KEY: mode})

    async def _stream_snapshot(self, resume: str | None, phase: Phase) -> bool:
        """Apply the snapshot's batches as they arrive; True once the last one committed.

        A pipeline: while batch N commits in a worker thread, batch N+1 is received,
        inflated, decoded and prepared (validated, encoded, search documents built,
        hashed: :func:`prepare_snapshot_batch`) on the event loop. The commit runs a
        handful of statements, each over the whole batch, so SQLite (and SQLCipher's
        page encryption) work without the GIL while Python prepares the next batch;
        row-by-row ``executemany`` would take the GIL back for every row and stall
        behind the loop. One batch is written at a time, in order; at most two are in
        memory, each with its encoded form.
        """
        # A snapshot begun by an SDK without modes: the safe one.
        mode = self._state(BOOT_MODE_KEY)
        cursor = _SnapshotCursor(
            mode=mode if mode in ("fresh", "resync") else "resync",
            count=int(self._state(BOOT_COUNT_KEY) or 0),
        )
        writing: asyncio.Future[int] | None = None
        finished = False
        try:
            async for batch in self.transport.bootstrap(self.device_id, resume):
                if finished:
                    continue  # nothing may follow the last batch; drain the stream
                # Its CPU work, while the previous batch commits in the worker thread.
                prepared = prepare_snapshot_batch(batch)
                if writing is not None:
                    count = await writing
                    writing = None
                    self.events.emit(SyncProgress(phase, count))
                finished = batch.done
                # Submitted now, not when the loop next gets round to a task: reading a
                # buffered stream may not suspend until the next batch is prepared, and
                # the write would then wait for it (asyncio.to_thread starts that late).
                write = functools.partial(
                    contextvars.copy_context().run,
                    self._write_snapshot_batch,
                    batch,
                    cursor,
                    prepared,
                )
                writing = asyncio.get_running_loop().run_in_executor(None, write)
        finally:
            if writing is not None:
                count = await writing
                self.events.emit(SyncProgress(phase, count, count if finished else 0))
        return finished

    def _write_snapshot_batch(
        self, batch: BootstrapBatch, cursor: _SnapshotCursor, prepared: PreparedSnapshotBatch
    ) -> int:
        """One snapshot batch, its resume token and the checksum book, in one transaction."""
        deltas = ChecksumDeltas()
        with self.store.transaction() as conn:
            self.writer.apply_snapshot(conn, batch, cursor.mode, deltas, prepared)
            ChecksumBook.commit(conn, deltas)
            count = cursor.count + len(batch.records)
            states: dict[str, str | int | None]
            if batch.done:
                states = {
                    CHECKPOINT_KEY: batch.checkpoint,
                    BOOT_ACTIVE_KEY: None,
                    BOOT_RESUME_KEY: None,
                    BOOT_MODE_KEY: None,
                    BOOT_COUNT_KEY: None,
                }
            else:
                states = {
                    BOOT_RESUME_KEY: batch.resume,
                    BOOT_COUNT_KEY: count,
                }
            # The device clock moves past the batch's clocks in the same statement.
            states.update(self.store.clock.advance(prepared.max_clock))
            _set_states(conn, states)
        cursor.count = count
        return count

    # --- wipe ------------------------------------------------------------------------

    def _wipe(self, reason: str) -> None:
        with self.store.lock:
            self.store.db.wipe()
        self.wiped = True
        _log.warning("replica wiped: %s", reason)
        self.events.emit(ReplicaWiped(reason))

    def _emit_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.events.emit(event)

    # --- background ------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start background sync on the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run())
        return self._task

    async def stop(self) -> None:
        """Stop background sync and wait for it (a cycle in progress is cancelled; its
        committed work stays, and what was in flight is resent next time)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def request_sync(self) -> None:
        """Wake the background loop now (thread-safe); e.g. the app came to foreground."""
        self._wake_from_any_thread()

    def notify_local_write(self) -> None:
        """A local write happened: sync soon, unless backing off after failures."""
        if self._failures == 0:
            self._wake_from_any_thread()

    def _wake_from_any_thread(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    async def run(self) -> None:
        """Sync now, then whenever woken (poke, local write, :meth:`request_sync`) or every
        ``poll_interval_s``; back off exponentially with jitter after failures. Returns
        when stopped or after the replica was wiped."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()
        pokes = asyncio.create_task(self._listen_for_pokes())
        try:
            while not self._stopping:
                delay = (
                    self.config.poll_interval_s
                    if self._failures == 0
                    else backoff_delay(
                        self._failures,
                        self.config.backoff_base_s,
                        self.config.backoff_cap_s,
                        self._rnd,
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    await self.sync()
                    self._failures = 0
                except DeviceRevokedError:
                    return
                except SyncStoppedError:
                    return
                except (SyncError, LocalDatabaseError) as e:
                    self._failures += 1
                    retryable = bool(getattr(e, "retryable", False))
                    if not retryable:
                        self._failures = max(self._failures, 30)  # the cap: try rarely
                    retry_in = backoff_delay(
                        self._failures,
                        self.config.backoff_base_s,
                        self.config.backoff_cap_s,
                        self._rnd,
                    )
                    _log.info("sync failed (%s); next attempt in %.1fs", e.code, retry_in)
                    self.events.emit(SyncFailed(e.code, str(e), retryable, retry_in))
        finally:
            pokes.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pokes

    async def _listen_for_pokes(self) -> None:
        """Keep the event socket open; every poke wakes the loop. Reconnects with back-off."""
        failures = 0
        while not self._stopping and not self.wiped:
            try:
                async for _seq in self.transport.pokes(self.device_id):
                    failures = 0
                    if self._wake is not None:
                        self._wake.set()
            except NotImplementedError:
                return
            except DeviceRevokedError:
                if self._wake is not None:
                    self._wake.set()  # the next cycle hears "wipe" and shreds the replica
                return
            except SyncError as e:
                _log.debug("event socket: %s", e.code)
            failures += 1
            await asyncio.sleep(
                backoff_delay(failures, self.config.backoff_base_s, 60.0, self._rnd)
            )


def _set_states(conn: Connection, values: dict[str, str | int | None]) -> None:
    """Set (or, for None, delete) ``sync_state`` keys: one statement each way."""
    put = [(k, v) for k, v in values.items() if v is not None]
    gone = [k for k, v in values.items() if v is None]
    if put:
        conn.execute(
            "INSERT INTO sync_state(key, value) SELECT value ->> 0, value ->> 1"
            " FROM jsonb_each(?) WHERE true"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (_encode(put),),
        )
    if gone:
        conn.execute(
            "DELETE FROM sync_state WHERE key IN (SELECT value FROM json_each(?))",
            (_encode(gone),),
        )


__all__ = [
    "REPLICA_MIGRATIONS",
    "SYNC_MIGRATIONS",
    "ChecksumBook",
    "ChecksumDeltas",
    "PreparedSnapshotBatch",
    "ReplicaWriter",
    "SyncConfig",
    "SyncEngine",
    "backoff_delay",
    "prepare_snapshot_batch",
]
