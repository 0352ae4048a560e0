"""The scale-out record store: one Couchbase bucket, one scope, a collection per kind.

Document model (see ``docs/store.md``):

* ``records``: one document per record, key ``<entity>::<id>``: the msgpack of the
  :class:`~sync_protocol.records.Record` (base64 in ``data``) plus the fields the indexes
  and queries need: ``seq``, ``version``, ``deleted``, ``channels``, ``removed`` (channel ->
  time the record left it) and ``feed`` (``channels`` plus the ``removed`` channels). The
  GSI ``crmsync_feed`` on ``(DISTINCT ARRAY c FOR c IN feed END, seq)`` is the change feed:
  a record appears once, at its latest sequence, in every channel it is in or recently
  left. ``crmsync_members_by_seq`` orders live members of a channel by ``seq`` for scans.
* ``meta``: ``seq`` (the sequence counter and its pending blocks), ``oldest`` (the oldest
  valid checkpoint) and ``chk::<channel>`` (per-channel checksums).
* ``changesets``, ``conflicts``, ``audit``, ``state``, ``blobs``: one document each.

Writes run in a Couchbase distributed transaction, so a batch is all-or-nothing like the
SQLite one; the record version check inside it is the compare-and-swap. Sequences come
from the ``seq`` counter document: one CAS update reserves a block of sequences for a batch
and records it as *pending*; the block is released when the transaction is over. Readers
only see up to the *stable head*, the sequence below the oldest pending block, so a batch
that commits late with lower sequences can never be skipped by a reader's checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import timedelta
from typing import Any

import msgspec
from acouchbase.cluster import Cluster
from couchbase.auth import PasswordAuthenticator
from couchbase.exceptions import (
    AmbiguousTimeoutException,
    CasMismatchException,
    CouchbaseException,
    DocumentExistsException,
    DocumentNotFoundException,
    ServiceUnavailableException,
    TimeoutException,
    UnAmbiguousTimeoutException,
)
from couchbase.n1ql import QueryScanConsistency
from couchbase.options import (
    ClusterOptions,
    ClusterTimeoutOptions,
    InsertOptions,
    QueryOptions,
    RemoveOptions,
    ReplaceOptions,
    TransactionOptions,
)

from sync_protocol.changesets import ChangesetResult
from sync_protocol.checksum import EMPTY, ChannelChecksum, record_hash
from sync_protocol.records import Record

from .base import RecordStore
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

Key = tuple[str, str]

COLLECTIONS = ("records", "changesets", "conflicts", "audit", "state", "blobs", "meta")
"""The collections of the scope; ``infra/couchbase/provision.py`` creates them."""

SEQ_DOC = "seq"
OLDEST_DOC = "oldest"
_MASK = (1 << 64) - 1

_encode = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(Record).decode
_decode_changeset = msgspec.msgpack.Decoder(ChangesetResult).decode
_decode_conflict = msgspec.msgpack.Decoder(ConflictRecord).decode
_decode_audit = msgspec.msgpack.Decoder(AuditEntry).decode
_decode_blob_meta = msgspec.msgpack.Decoder(BlobMeta).decode


def _pack(value: Any) -> str:
    """msgpack, base64: exact round trips (N1QL would turn big integers into floats)."""
    return base64.b64encode(_encode(value)).decode("ascii")


def _unpack(text: str) -> bytes:
    return base64.b64decode(text)


def record_key(entity: str, id: str) -> str:
    """The document key of a record."""
    return f"{entity}::{id}"


def _record(doc: dict[str, Any]) -> Record:
    rec = _decode_record(_unpack(doc["data"]))
    rec.seq = doc["seq"]
    return rec


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turn SDK exceptions into store errors at the adapter boundary."""
    try:
        yield
    except StoreError:
        raise
    except (
        TimeoutException,
        AmbiguousTimeoutException,
        UnAmbiguousTimeoutException,
        ServiceUnavailableException,
    ) as e:
        raise StoreUnavailableError(f"couchbase: {type(e).__name__}") from e
    except CouchbaseException as e:
        raise StoreError(f"couchbase: {type(e).__name__}: {e}") from e


class CouchbaseRecordStore(RecordStore):
    """:class:`RecordStore` over a Couchbase scope (acouchbase, transactions, GSI, N1QL).

    Args:
        config: The store configuration (``couchbase_*`` fields and retention).
        clock: Wall time in milliseconds, for retention stamps and pending-block leases.
    """

    def __init__(self, config: StoreConfig, clock: Callable[[], int]) -> None:
        if not config.couchbase_url or not config.couchbase_username:
            raise StoreUnavailableError("couchbase_url and couchbase_username are required")
        self.config = config
        self._clock = clock
        self._cluster: Any = None
        self._scope: Any = None
        self._c: dict[str, Any] = {}
        self._timeout = timedelta(seconds=config.couchbase_timeout)
        # A pending block older than this belongs to a writer that died: its transaction
        # expired long ago (after ``couchbase_timeout``), so nothing can commit into it.
        self._lease_ms = int(config.couchbase_timeout * 1000) * 2 + 30_000

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, open the bucket and scope, and create the counter documents if needed."""
        if self._cluster is not None:
            return
        config = self.config
        assert config.couchbase_url and config.couchbase_username
        auth = PasswordAuthenticator(config.couchbase_username, config.couchbase_password or "")
        timeouts = ClusterTimeoutOptions(kv_timeout=self._timeout, query_timeout=self._timeout)
        with _translated():
            cluster = await Cluster.connect(
                config.couchbase_url, ClusterOptions(auth, timeout_options=timeouts)
            )
            await cluster.wait_until_ready(self._timeout)
            bucket = cluster.bucket(config.couchbase_bucket)
            self._scope = bucket.scope(config.couchbase_scope)
            self._c = {name: self._scope.collection(name) for name in COLLECTIONS}
            self._cluster = cluster
            await self._ensure_meta()

    async def _ensure_meta(self) -> None:
        meta = self._c["meta"]
        for key, value in ((SEQ_DOC, {"last": 0, "pending": {}}), (OLDEST_DOC, {"seq": 0})):
            with contextlib.suppress(DocumentExistsException):
                await meta.insert(key, value)

    async def close(self) -> None:
        """Close the cluster connection."""
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            with contextlib.suppress(CouchbaseException):
                await cluster.close()

    async def wipe(self) -> None:
        """Delete every document of the scope (tests only; needs the primary indexes)."""
        with _translated():
            for name in COLLECTIONS:
                await self._query(f"DELETE FROM `{name}`")
            await self._ensure_meta()

    def _coll(self, name: str) -> Any:
        if self._cluster is None:
            raise StoreUnavailableError("the store is closed or was never started")
        return self._c[name]

    async def _query(self, statement: str, **params: Any) -> list[Any]:
        if self._cluster is None:
            raise StoreUnavailableError("the store is closed or was never started")
        options = QueryOptions(
            named_parameters=params,
            scan_consistency=QueryScanConsistency.REQUEST_PLUS,
            timeout=self._timeout,
        )
        result = self._scope.query(statement, options)
        return [row async for row in result.rows()]

    async def _get(self, collection: str, key: str) -> tuple[dict[str, Any], int] | None:
        try:
            res = await self._coll(collection).get(key)
        except DocumentNotFoundException:
            return None
        return res.content_as[dict], res.cas

    # -- sequences ----------------------------------------------------------------------

    async def _reserve(self, count: int) -> int:
        """Reserve ``count`` sequences as a pending block; returns the first."""
        meta = self._coll("meta")
        while True:
            res = await meta.get(SEQ_DOC)
            doc = res.content_as[dict]
            now = self._clock()
            pending = {k: v for k, v in doc["pending"].items() if v > now}
            first = doc["last"] + 1
            pending[str(first)] = now + self._lease_ms
            new = {"last": doc["last"] + count, "pending": pending}
            try:
                await meta.replace(SEQ_DOC, new, ReplaceOptions(cas=res.cas))
                return int(first)
            except CasMismatchException:
                continue

    async def _release(self, first: int) -> None:
        meta = self._coll("meta")
        while True:
            res = await meta.get(SEQ_DOC)
            doc = res.content_as[dict]
            if str(first) not in doc["pending"]:
                return
            doc["pending"].pop(str(first))
            try:
                await meta.replace(SEQ_DOC, doc, ReplaceOptions(cas=res.cas))
                return
            except CasMismatchException:
                continue

    async def _stable_head(self) -> int:
        found = await self._get("meta", SEQ_DOC)
        if found is None:
            return 0
        doc = found[0]
        now = self._clock()
        live = [int(k) for k, v in doc["pending"].items() if v > now]
        return min(live) - 1 if live else int(doc["last"])

    async def _oldest(self) -> int:
        found = await self._get("meta", OLDEST_DOC)
        return 0 if found is None else int(found[0]["seq"])

    # -- records ------------------------------------------------------------------------

    async def get(self, entity: str, id: str) -> Record | None:
        """One record (tombstones included), or ``None``."""
        with _translated():
            found = await self._get("records", record_key(entity, id))
        return None if found is None else _record(found[0])

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        """Several records by ``(entity, id)``; missing ones are absent from the result."""
        unique = list(dict.fromkeys(keys))
        with _translated():
            found = await asyncio.gather(*(self._get("records", record_key(*k)) for k in unique))
        return {k: _record(f[0]) for k, f in zip(unique, found, strict=True) if f is not None}

    async def apply(self, batch: WriteBatch) -> CommitResult:
        """Write a batch in one transaction; see :meth:`RecordStore.apply`.

        Raises:
            VersionConflictError: a write's expected version does not match (nothing written).
            DuplicateChangesetError: the batch's changeset result is already stored.
            InvalidRequestError: a malformed write, or more writes than ``seq_block_size``.
        """
        check_batch(batch)
        n = len(batch.writes)
        if n > self.config.seq_block_size:
            raise InvalidRequestError(
                f"{n} writes exceed the Couchbase batch limit of {self.config.seq_block_size}"
            )
        count = n or (1 if batch.changeset is not None else 0)
        with _translated():
            if count == 0:
                head = await self._stable_head()
                await self._run(batch, head, head)
                return CommitResult(records=[], first_seq=head + 1, last_seq=head)
            first = await self._reserve(count)
            try:
                await self._run(batch, first, first + count - 1)
            finally:
                await self._release(first)
        for i, w in enumerate(batch.writes):
            w.record.seq = first + i
        return CommitResult(
            records=[w.record for w in batch.writes],
            first_seq=first,
            last_seq=first + count - 1,
        )

    async def _run(self, batch: WriteBatch, first: int, last: int) -> None:
        """Run the batch's transaction; re-raise the store error that aborted it."""
        problem: list[StoreError] = []

        async def logic(ctx: Any) -> None:
            problem.clear()  # the library may run the logic more than once
            try:
                await self._write_batch(ctx, batch, first, last)
            except StoreError as e:
                problem.append(e)
                raise

        try:
            await self._cluster.transactions.run(logic, TransactionOptions(timeout=self._timeout))
        except CouchbaseException as e:
            if problem:
                raise problem[0] from None
            raise StoreUnavailableError(f"couchbase transaction failed: {type(e).__name__}") from e
        except StoreError:
            raise

    async def _txn_get(self, ctx: Any, collection: str, key: str) -> Any | None:
        try:
            return await ctx.get(self._c[collection], key)
        except DocumentNotFoundException:
            return None

    async def _txn_put(self, ctx: Any, collection: str, key: str, doc: dict[str, Any]) -> None:
        current = await self._txn_get(ctx, collection, key)
        if current is None:
            await ctx.insert(self._c[collection], key, doc)
        else:
            await ctx.replace(current, doc)

    async def _write_batch(self, ctx: Any, batch: WriteBatch, first: int, last: int) -> None:
        now = self._clock()
        writes = batch.writes
        changeset = batch.changeset
        if changeset is not None and (
            await self._txn_get(ctx, "changesets", changeset.changeset_id) is not None
        ):
            raise DuplicateChangesetError(changeset.changeset_id)

        stored: dict[Key, Any] = {}
        for w in writes:
            key = (w.record.entity, w.record.id)
            if key not in stored:
                stored[key] = await self._txn_get(ctx, "records", record_key(*key))
        versions = {
            k: (0 if r is None else r.content_as[dict]["version"]) for k, r in stored.items()
        }
        conflicts: dict[Key, None] = {}
        last_index: dict[Key, int] = {}
        for i, w in enumerate(writes):
            key = (w.record.entity, w.record.id)
            if versions[key] != w.expected_version:
                conflicts[key] = None
            versions[key] = w.record.version
            last_index[key] = i
        if conflicts:
            raise VersionConflictError(list(conflicts))

        deltas: dict[str, list[int]] = {}
        for key, i in last_index.items():
            rec = writes[i].record
            seq = first + i
            channels = list(dict.fromkeys(rec.channels))
            h = 0 if rec.deleted else record_hash(rec.entity, rec.id, rec.version, rec.fields)
            old_get = stored[key]
            old = None if old_get is None else old_get.content_as[dict]
            removed: dict[str, int] = {} if old is None else dict(old.get("removed", {}))
            for c in channels:
                removed.pop(c, None)
            if old is not None:
                for c in old["channels"]:
                    if c not in channels:
                        removed[c] = now
                if not old["deleted"]:
                    for c in old["channels"]:
                        d = deltas.setdefault(c, [0, 0])
                        d[0] -= 1
                        d[1] -= int(old["hash"])
            if not rec.deleted:
                for c in channels:
                    d = deltas.setdefault(c, [0, 0])
                    d[0] += 1
                    d[1] += h
            doc = {
                "entity": rec.entity,
                "id": rec.id,
                "version": rec.version,
                "seq": seq,
                "deleted": rec.deleted,
                "channels": channels,
                "removed": removed,
                "feed": channels + [c for c in removed if c not in channels],
                "hash": str(h),
                "at_ms": now,
                "data": _pack(rec),
            }
            if old_get is None:
                await ctx.insert(self._c["records"], record_key(*key), doc)
            else:
                await ctx.replace(old_get, doc)

        for channel, (dc, dd) in deltas.items():
            if not dc and not dd:
                continue
            chk_key = f"chk::{channel}"
            current = await self._txn_get(ctx, "meta", chk_key)
            if current is None:
                doc = {"count": dc, "digest": str(dd & _MASK), "seq": last}
                await ctx.insert(self._c["meta"], chk_key, doc)
            else:
                cur = current.content_as[dict]
                doc = {
                    "count": cur["count"] + dc,
                    "digest": str((int(cur["digest"]) + dd) & _MASK),
                    "seq": max(int(cur["seq"]), last),
                }
                await ctx.replace(current, doc)

        if changeset is not None:
            changeset.seq = last
            doc = {
                "device_id": batch.device_id,
                "seq": last,
                "at_ms": now,
                "data": _pack(changeset),
            }
            await ctx.insert(self._c["changesets"], changeset.changeset_id, doc)
        for conflict in batch.conflicts:
            if not conflict.created_ms:
                conflict = msgspec.structs.replace(conflict, created_ms=now)
            await self._txn_put(ctx, "conflicts", conflict.id, _conflict_doc(conflict))
        for n, entry in enumerate(batch.audit):
            changes: dict[str, int] = {}
            if not entry.seq and (entry.entity, entry.record_id) in last_index:
                changes["seq"] = first + last_index[(entry.entity, entry.record_id)]
            if not entry.at_ms:
                changes["at_ms"] = now
            if changes:
                entry = msgspec.structs.replace(entry, **changes)
            doc = {
                "entity": entry.entity,
                "record_id": entry.record_id,
                "at_ms": entry.at_ms,
                "data": _pack(entry),
            }
            # Keys sort by commit time, then batch, then position: "newest first" is a key order.
            await ctx.insert(self._c["audit"], f"{now:013d}:{last:020d}:{n:06d}", doc)
        for state_key, value in batch.state.items():
            state_doc = {"value": base64.b64encode(value).decode()}
            await self._txn_put(ctx, "state", state_key, state_doc)

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
        wanted = sorted(set(channels))
        with _translated():
            oldest = await self._oldest()
            if 0 < after_seq < oldest:
                raise CheckpointTooOldError(after_seq, oldest)
            head = await self._stable_head()
            rows: list[Any] = []
            if wanted and after_seq < head:
                rows = await self._query(
                    "SELECT r.seq, r.entity, r.id, r.channels, r.removed, r.data"
                    " FROM `records` AS r"
                    " WHERE ANY c IN r.feed SATISFIES c IN $channels END"
                    " AND r.seq > $after AND r.seq <= $head"
                    " ORDER BY r.seq LIMIT $limit",
                    channels=wanted,
                    after=after_seq,
                    head=head,
                    limit=limit + 1,
                )
            has_more = len(rows) > limit
            entries: list[FeedEntry] = []
            requested = set(wanted)
            for row in rows[:limit]:
                seq, entity, id_ = row["seq"], row["entity"], row["id"]
                if requested.intersection(row["channels"]):
                    rec = _decode_record(_unpack(row["data"]))
                    rec.seq = seq
                    entries.append(
                        FeedEntry(seq=seq, entity=entity, id=id_, change=rec.to_change())
                    )
                else:
                    for c in sorted(requested.intersection(row.get("removed") or {})):
                        entries.append(FeedEntry(seq=seq, entity=entity, id=id_, removed_from=c))
            if has_more:
                return ChangePage(entries=entries, last_seq=rows[limit - 1]["seq"], has_more=True)
            sums: dict[str, ChannelChecksum] = {}
            if with_checksums:
                docs = await self._checksum_docs(wanted)
                if any(d is not None and int(d["seq"]) > head for d in docs.values()):
                    # A later commit already moved a checksum: come back for its changes.
                    return ChangePage(entries=entries, last_seq=head, has_more=True)
                sums = {c: _checksum(docs[c]) for c in wanted}
            return ChangePage(
                entries=entries, last_seq=max(head, after_seq), has_more=False, checksums=sums
            )

    async def _checksum_docs(self, channels: list[str]) -> dict[str, dict[str, Any] | None]:
        found = await asyncio.gather(*(self._get("meta", f"chk::{c}") for c in channels))
        return {c: (None if f is None else f[0]) for c, f in zip(channels, found, strict=True)}

    async def scan(
        self, channels: Collection[str], after_seq: int = 0, limit: int = 1000
    ) -> list[Record]:
        """Live records in ``channels`` with ``seq > after_seq``, in sequence order."""
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1")
        if after_seq < 0:
            raise InvalidRequestError("after_seq must not be negative")
        wanted = sorted(set(channels))
        if not wanted:
            return []
        with _translated():
            rows = await self._query(
                "SELECT r.seq, r.data FROM `records` AS r"
                " WHERE ANY c IN r.channels SATISFIES c IN $channels END"
                " AND r.deleted = false AND r.seq > $after"
                " ORDER BY r.seq LIMIT $limit",
                channels=wanted,
                after=after_seq,
                limit=limit,
            )
        return [_record(row) for row in rows]

    async def scan_entity(self, entity: str, after_id: str | None, limit: int) -> list[Record]:
        """Records of ``entity`` (tombstones included) with ``id > after_id``, by id."""
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1")
        with _translated():
            rows = await self._query(
                "SELECT r.seq, r.data FROM `records` AS r"
                " WHERE r.entity = $entity AND r.id > $after"
                " ORDER BY r.id LIMIT $limit",
                entity=entity,
                after=after_id or "",
                limit=limit,
            )
        return [_record(row) for row in rows]

    async def head_seq(self) -> int:
        """The highest sequence below every pending block (the stable head)."""
        with _translated():
            return await self._stable_head()

    async def oldest_seq(self) -> int:
        """The oldest sequence a checkpoint may be at."""
        with _translated():
            return await self._oldest()

    async def checksums(self, channels: Collection[str]) -> dict[str, ChannelChecksum]:
        """Current per-channel checksums of live records."""
        wanted = sorted(set(channels))
        with _translated():
            docs = await self._checksum_docs(wanted)
        return {c: _checksum(docs[c]) for c in wanted}

    async def compact(self, older_than_ms: int) -> int:
        """Drop old tombstones, removal entries and expired changeset results.

        The oldest valid checkpoint is raised *before* anything is deleted, so a reader
        never skips a dropped entry without being told its checkpoint is too old.
        """
        with _translated():
            tombstones = await self._query(
                "SELECT META(r).id AS k, META(r).cas AS cas, r.seq FROM `records` AS r"
                " WHERE r.deleted = true AND r.at_ms < $cutoff",
                cutoff=older_than_ms,
            )
            removals = await self._query(
                "SELECT META(r).id AS k, r.seq FROM `records` AS r"
                " WHERE ANY v IN OBJECT_VALUES(r.removed) SATISFIES v < $cutoff END",
                cutoff=older_than_ms,
            )
            newest = max((int(r["seq"]) for r in [*tombstones, *removals]), default=0)
            if newest:
                await self._raise_oldest(newest)
            dropped = 0
            records = self._coll("records")
            for row in tombstones:
                try:
                    await records.remove(row["k"], RemoveOptions(cas=row["cas"]))
                    dropped += 1
                except (CasMismatchException, DocumentNotFoundException):
                    pass  # written again since: no longer an old tombstone
            for row in removals:
                dropped += await self._drop_removals(row["k"], older_than_ms)
            before = self._clock() - self.config.changeset_retention_ms
            gone = await self._query(
                "DELETE FROM `changesets` AS c WHERE c.at_ms < $before RETURNING RAW META(c).id",
                before=before,
            )
            return dropped + len(gone)

    async def _raise_oldest(self, seq: int) -> None:
        meta = self._coll("meta")
        while True:
            res = await meta.get(OLDEST_DOC)
            if int(res.content_as[dict]["seq"]) >= seq:
                return
            try:
                await meta.replace(OLDEST_DOC, {"seq": seq}, ReplaceOptions(cas=res.cas))
                return
            except CasMismatchException:
                continue

    async def _drop_removals(self, key: str, older_than_ms: int) -> int:
        records = self._coll("records")
        for _ in range(5):
            found = await self._get("records", key)
            if found is None:
                return 0
            doc, cas = found
            old = {c: t for c, t in doc.get("removed", {}).items() if t < older_than_ms}
            if not old:
                return 0
            doc["removed"] = {c: t for c, t in doc["removed"].items() if c not in old}
            doc["feed"] = [c for c in doc["feed"] if c not in old]
            try:
                await records.replace(key, doc, ReplaceOptions(cas=cas))
                return len(old)
            except CasMismatchException:
                continue
        return 0

    # -- changeset results --------------------------------------------------------------

    async def changeset_result(self, changeset_id: str) -> ChangesetResult | None:
        """The stored result of a changeset, if it was applied."""
        with _translated():
            found = await self._get("changesets", changeset_id)
        return None if found is None else _decode_changeset(_unpack(found[0]["data"]))

    async def device_results(self, device_id: str, after_seq: int) -> list[ChangesetResult]:
        """Results of a device's changesets committed after ``after_seq``, in order."""
        with _translated():
            rows = await self._query(
                "SELECT RAW c.data FROM `changesets` AS c"
                " WHERE c.device_id = $device AND c.seq > $after ORDER BY c.seq",
                device=device_id,
                after=after_seq,
            )
        return [_decode_changeset(_unpack(data)) for data in rows]

    # -- conflicts and audit ------------------------------------------------------------

    async def conflicts(
        self, status: str | None = None, owner: str | None = None, limit: int = 100
    ) -> list[ConflictRecord]:
        """Conflicts, newest first, filtered by status and owner."""
        where = ["c.created_ms IS NOT MISSING"]
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            where.append("c.status = $status")
            params["status"] = status
        if owner is not None:
            where.append("c.owner = $owner")
            params["owner"] = owner
        with _translated():
            rows = await self._query(
                "SELECT RAW c.data FROM `conflicts` AS c WHERE "
                + " AND ".join(where)
                + " ORDER BY c.created_ms DESC, META(c).id DESC LIMIT $limit",
                **params,
            )
        return [_decode_conflict(_unpack(data)) for data in rows]

    async def resolve_conflict(self, conflict_id: str, resolution: str, by: str) -> ConflictRecord:
        """Mark a conflict resolved. Resolving an already resolved conflict returns it as is.

        Raises:
            NotFoundError: no conflict has that id.
        """
        with _translated():
            while True:
                found = await self._get("conflicts", conflict_id)
                if found is None:
                    raise NotFoundError(f"no conflict {conflict_id[:64]!r}")
                doc, cas = found
                conflict = _decode_conflict(_unpack(doc["data"]))
                if conflict.status == "resolved":
                    return conflict
                conflict = msgspec.structs.replace(
                    conflict,
                    status="resolved",
                    resolution=resolution,
                    resolved_by=by,
                    resolved_ms=self._clock(),
                )
                try:
                    await self._coll("conflicts").replace(
                        conflict_id, _conflict_doc(conflict), ReplaceOptions(cas=cas)
                    )
                    return conflict
                except CasMismatchException:
                    continue

    async def audit_trail(
        self, entity: str | None = None, record_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Audit entries, newest first."""
        if record_id is not None and entity is None:
            raise InvalidRequestError("audit_trail by record_id needs the entity too")
        where = ['META(a).id >= ""']  # lets the key index serve "newest first"
        params: dict[str, Any] = {"limit": limit}
        if entity is not None:
            where.append("a.entity = $entity")
            params["entity"] = entity
        if record_id is not None:
            where.append("a.record_id = $record_id")
            params["record_id"] = record_id
        with _translated():
            rows = await self._query(
                "SELECT RAW a.data FROM `audit` AS a WHERE "
                + " AND ".join(where)
                + " ORDER BY META(a).id DESC LIMIT $limit",
                **params,
            )
        return [_decode_audit(_unpack(data)) for data in rows]

    # -- durable service state ----------------------------------------------------------

    async def get_state(self, key: str) -> bytes | None:
        """A small durable value, or ``None``."""
        with _translated():
            found = await self._get("state", key)
        return None if found is None else base64.b64decode(found[0]["value"])

    async def put_state(self, key: str, value: bytes | None) -> None:
        """Set (or with ``None`` delete) a durable value."""
        with _translated():
            state = self._coll("state")
            if value is None:
                with contextlib.suppress(DocumentNotFoundException):
                    await state.remove(key)
            else:
                await state.upsert(key, {"value": base64.b64encode(value).decode()})

    async def list_state(self, prefix: str) -> dict[str, bytes]:
        """All durable values whose key starts with ``prefix``."""
        with _translated():
            rows = await self._query(
                "SELECT META(s).id AS k, s.`value` AS v FROM `state` AS s"
                " WHERE META(s).id >= $low AND META(s).id < $high",
                low=prefix,
                high=prefix + "\U0010ffff",
            )
        return {r["k"]: base64.b64decode(r["v"]) for r in rows if r["k"].startswith(prefix)}

    # -- blobs --------------------------------------------------------------------------

    async def put_blob(self, meta: BlobMeta, data: bytes) -> None:
        """Store an attachment by its sha256 (idempotent)."""
        if len(data) != meta.size:
            raise InvalidRequestError(f"blob is {len(data)} bytes, metadata says {meta.size}")
        if not meta.created_ms:
            meta = msgspec.structs.replace(meta, created_ms=self._clock())
        doc = {"meta": _pack(meta), "data": base64.b64encode(data).decode()}
        with _translated(), contextlib.suppress(DocumentExistsException):
            await self._coll("blobs").insert(meta.sha256, doc, InsertOptions())

    async def get_blob(self, sha256: str) -> tuple[BlobMeta, bytes] | None:
        """An attachment and its metadata, or ``None``."""
        with _translated():
            found = await self._get("blobs", sha256)
        if found is None:
            return None
        doc = found[0]
        return _decode_blob_meta(_unpack(doc["meta"])), base64.b64decode(doc["data"])


def _conflict_doc(conflict: ConflictRecord) -> dict[str, Any]:
    return {
        "status": conflict.status,
        "owner": conflict.owner,
        "created_ms": conflict.created_ms,
        "data": _pack(conflict),
    }


def _checksum(doc: dict[str, Any] | None) -> ChannelChecksum:
    if doc is None:
        return EMPTY
    return ChannelChecksum(int(doc["count"]), int(doc["digest"]) & _MASK)
