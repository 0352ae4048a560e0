"""The local entity API: get, query, upsert, delete, search, and the dead-letter list.

Every write is optimistic and offline: it validates the fields against the entity schema
(the same checks the server runs), updates the visible record and its search document,
and appends the mutation to the outbox with a fresh hybrid logical clock, all in one
transaction. The sync engine pushes the outbox later.

What the app sees is the *visible* state: the last server state of a record with the
device's unsynced mutations replayed on top (:func:`overlay`). A record's ``version`` is
always the server version its visible state is based on (0 for a record the server has
not seen yet), and that is the ``base_version`` its next mutation carries.

Thread safety: one re-entrant lock (:attr:`LocalStore.lock`) serialises every database
access of the local API and of the sync engine, so the app may call this API from its UI
thread while the sync loop runs on another.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

import msgspec

from client_sdk.database import (
    DEFAULT_FIELD_INDEXES,
    Connection,
    LocalDatabase,
    LocalRecord,
    field_expression,
)
from client_sdk.errors import (
    InvalidQueryError,
    LocalRecordNotFoundError,
    MutationNotFoundError,
    MutationNotRejectedError,
)
from client_sdk.outbox import Outbox, OutboxEntry
from client_sdk.search import SearchHit
from sync_protocol.entities import is_uuid, schema, validate_fields
from sync_protocol.errors import InvalidRecordIdError
from sync_protocol.hlc import HLC, Clock

HLC_KEY: Final = "hlc.last"
MAX_QUERY_LIMIT: Final = 1000
# A device follows the server's clock when the server runs ahead (its edits must order
# after what it has seen); the server bounds device clocks on its side.
DEVICE_MAX_SKEW_MS: Final = 7 * 24 * 3600 * 1000

SyncStatus = Literal["synced", "pending", "rejected"]
FilterOp = Literal[
    "eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "startswith", "is_null", "not_null"
]
_OPS: Final = frozenset(get_args(FilterOp))
_SCALAR = (str, int, float, bool)
_ORDER_RE: Final = re.compile(r"^(-?)([A-Za-z_][A-Za-z0-9_]{0,127})$")
_INDEXED: Final = frozenset(DEFAULT_FIELD_INDEXES)

_json_encode = msgspec.json.Encoder().encode
_fields_decoder = msgspec.json.Decoder(dict[str, Any])


class RecordView(msgspec.Struct, frozen=True, kw_only=True):
    """A record as the app sees it.

    Attributes:
        entity: entity name.
        id: record UUID.
        fields: current values, local edits included.
        version: the server version these values are based on (0: not on the server yet).
        status: ``synced``, ``pending`` (unsynced local edits) or ``rejected`` (an edit
            the server refused is waiting in :meth:`LocalStore.rejections`).
    """

    entity: str
    id: str
    fields: dict[str, Any]
    version: int
    status: SyncStatus = "synced"


@dataclass(frozen=True, slots=True)
class Filter:
    """One query condition on a field (or on ``id``).

    ``op``: ``eq``, ``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``in`` (value is a list),
    ``contains`` / ``startswith`` (case-insensitive for ASCII), ``is_null``, ``not_null``.
    """

    field: str
    op: FilterOp
    value: Any = None


Where: TypeAlias = Mapping[str, Any] | Sequence[Filter]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of query results; ``next_offset`` is None on the last page."""

    items: list[RecordView]
    next_offset: int | None


def overlay(
    entity: str, id: str, base: LocalRecord | None, entries: Sequence[OutboxEntry]
) -> LocalRecord | None:
    """The visible record: the server base with the outbox rows replayed in order.

    Args:
        entity, id: the record.
        base: its server state (None: the server has none).
        entries: its outbox rows, oldest first (pending, in flight and rejected alike:
            a rejected edit stays visible until it is discarded).

    Returns:
        The record to show, or None if there is nothing to show.
    """
    if not entries:
        return base
    fields = dict(base.fields) if base is not None else {}
    deleted = base.deleted if base is not None else False
    exists = base is not None
    for e in entries:
        if e.op == "delete":
            deleted = True
        else:
            fields.update(e.fields)
            deleted = False
            exists = True
    if not exists:
        return None
    return LocalRecord(
        entity=entity,
        id=id,
        version=base.version if base is not None else 0,
        seq=base.seq if base is not None else 0,
        fields=fields,
        deleted=deleted,
        channels=base.channels if base is not None else (),
    )


class DeviceClock:
    """The device's hybrid logical clock, persisted in ``sync_state``.

    Each issued or observed timestamp is stored in the caller's transaction, so after a
    restart (or a crash) the clock never issues a timestamp at or below one it used.
    """

    def __init__(
        self, db: LocalDatabase, device_id: str, wall: Callable[[], int] | None = None
    ) -> None:
        self._db = db
        self._clock = Clock(
            device_id, wall or (lambda: time.time_ns() // 1_000_000), DEVICE_MAX_SKEW_MS
        )
        stored = db.get_state(HLC_KEY)
        if isinstance(stored, str):
            self._clock.observe(HLC.parse(stored))

    @property
    def last(self) -> HLC:
        """The latest timestamp issued or observed."""
        return self._clock.last

    def now(self, conn: Connection) -> HLC:
        """Issue a timestamp for a local edit and persist it in ``conn``'s transaction."""
        ts = self._clock.now()
        self._store(conn, ts)
        return ts

    def observe(self, conn: Connection, remote: HLC | None) -> None:
        """Move past a timestamp received from the server (persisted in ``conn``'s txn)."""
        if self.advance(remote):
            self._store(conn, self._clock.last)

    def advance(self, remote: HLC | None) -> dict[str, str]:
        """:meth:`observe` for a caller that writes ``sync_state`` itself: moves past
        ``remote`` and returns the state to persist in its transaction (empty: none)."""
        if remote is None or remote <= self._clock.last:
            return {}
        self._clock.observe(remote)
        return {HLC_KEY: str(self._clock.last)}

    @staticmethod
    def _store(conn: Connection, ts: HLC) -> None:
        conn.execute(
            "INSERT INTO sync_state(key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (HLC_KEY, str(ts)),
        )


class LocalStore:
    """The app-facing local API over one replica.

    Args:
        db: the open replica (with the outbox migrations applied).
        clock: the device's persistent HLC.
        lock: shared with the sync engine; guards every database access.
        on_write: called (outside the transaction) after each local write, e.g. to wake
            the background sync.
    """

    def __init__(
        self,
        db: LocalDatabase,
        clock: DeviceClock,
        *,
        lock: threading.RLock | None = None,
        on_write: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.lock = lock or threading.RLock()
        self.on_write = on_write

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """The shared lock plus one database transaction."""
        with self.lock, self.db.transaction() as conn:
            yield conn

    # --- reads -----------------------------------------------------------------------

    def get(self, entity: str, id: str) -> RecordView | None:
        """One live record (None if unknown or deleted).

        Raises:
            UnknownEntityError: not a synced entity.
        """
        schema(entity)
        with self.lock:
            rows = self.db.conn.execute(
                f"SELECT {_VIEW_COLUMNS} FROM records WHERE entity = ? AND id = ? AND deleted = 0",
                (entity, id),
            ).fetchall()
        return _view(rows[0]) if rows else None

    def query(
        self,
        entity: str,
        where: Where | None = None,
        *,
        order_by: Sequence[str] = (),
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """Live records of ``entity`` matching every condition, in order, one page.

        Args:
            entity: entity name.
            where: ``{field: value}`` for equality, or a list of :class:`Filter`.
            order_by: field names, ``-name`` for descending; ``id`` breaks ties, so pages
                are stable.
            limit: page size, 1..1000.
            offset: rows to skip.

        Returns:
            The page, with ``next_offset`` set when more rows follow.

        Raises:
            UnknownEntityError: not a synced entity.
            InvalidQueryError: unknown field or operator, bad value, limit or offset.
        """
        sql, params = self._select(entity, where, order_by)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidQueryError(f"limit must be an int in 1..{MAX_QUERY_LIMIT}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidQueryError("offset must be a non-negative int")
        with self.lock:
            rows = self.db.conn.execute(
                f"{sql} LIMIT ? OFFSET ?", (*params, limit + 1, offset)
            ).fetchall()
        items = [_view(r) for r in rows[:limit]]
        return Page(items, offset + limit if len(rows) > limit else None)

    def count(self, entity: str, where: Where | None = None) -> int:
        """Number of live records of ``entity`` matching ``where`` (see :meth:`query`)."""
        s = schema(entity)
        clauses, params = _conditions(s.name, where)
        with self.lock:
            row = self.db.conn.execute(
                f"SELECT count(*) FROM records WHERE {' AND '.join(clauses)}", params
            ).fetchone()
        return int(row[0])

    def search(
        self, text: str, entities: Sequence[str] | None = None, limit: int = 50
    ) -> list[SearchHit]:
        """Offline full-text search over live records (local edits included)."""
        with self.lock:
            return self.db.search(text, entities, limit)

    def _select(
        self, entity: str, where: Where | None, order_by: Sequence[str]
    ) -> tuple[str, list[Any]]:
        s = schema(entity)
        clauses, params = _conditions(s.name, where)
        if isinstance(order_by, str):
            order_by = (order_by,)
        order: list[str] = []
        for term in order_by:
            m = _ORDER_RE.match(term) if isinstance(term, str) else None
            if m is None:
                raise InvalidQueryError(f"bad order_by term {term!r}")
            desc, name = m.groups()
            order.append(f"{_expression(s.name, name)}{' DESC' if desc else ''}")
        # Ordered by id alone, the planner would rather walk every record of the entity
        # in (entity, id) order than sort the few a field index finds: with an equality
        # on an indexed field, the tie-break is written so that index cannot order.
        order.append("+id" if _has_indexed_equality(s.name, where) else "id")
        sql = (
            f"SELECT {_VIEW_COLUMNS} FROM records WHERE {' AND '.join(clauses)}"
            f" ORDER BY {', '.join(order)}"
        )
        return sql, params

    # --- writes ----------------------------------------------------------------------

    def upsert(self, entity: str, id: str | None, fields: Mapping[str, Any]) -> RecordView:
        """Create a record (``id`` None or unknown) or update some of its fields.

        Only the given fields change; ``None`` clears a field. A create gets a new UUIDv4
        when ``id`` is None (devices create ids offline).

        Returns:
            The record as now visible.

        Raises:
            UnknownEntityError, UnknownFieldError, InvalidFieldValueError: the schema
                refuses the fields (the same codes the server would answer).
            InvalidRecordIdError: ``id`` is not a UUID.
            LocalRecordNotFoundError: the record is deleted locally.
        """
        schema(entity)
        if not isinstance(fields, Mapping):
            raise InvalidQueryError("fields must be a mapping of field name to value")
        values = dict(fields)
        validate_fields(entity, values)
        record_id = _record_id(id)
        with self.transaction() as conn:
            current = self.db.get_record(entity, record_id)
            if current is not None and current.deleted:
                raise LocalRecordNotFoundError(f"{entity} {record_id} is deleted")
            if current is not None and not values:
                return _view_of(current, self._status(conn, entity, record_id))
            base_version = current.version if current is not None else 0
            self._track_base(conn, entity, record_id, current)
            clock = self.clock.now(conn)
            Outbox.append(
                conn,
                mutation_id=uuid.uuid4().hex,
                entity=entity,
                id=record_id,
                op="upsert",
                base_version=base_version,
                fields=values,
                clock=clock,
                now_ms=clock.wall_ms,
            )
            visible = LocalRecord(
                entity=entity,
                id=record_id,
                version=base_version,
                seq=current.seq if current is not None else 0,
                fields={**(current.fields if current is not None else {}), **values},
                channels=current.channels if current is not None else (),
            )
            self.db.upsert_records([visible])
            status = self._status(conn, entity, record_id)
        self._notify()
        return _view_of(visible, status)

    def delete(self, entity: str, id: str) -> None:
        """Delete a record (a tombstone until the server confirms).

        A record created on this device and never sent is simply forgotten, together with
        its unsent mutations: the server never hears of it.

        Raises:
            UnknownEntityError: not a synced entity.
            LocalRecordNotFoundError: no such live record.
        """
        schema(entity)
        with self.transaction() as conn:
            current = self.db.get_record(entity, id)
            if current is None or current.deleted:
                raise LocalRecordNotFoundError(f"no live {entity} {id}")
            tracked, base = Outbox.get_base(conn, entity, id)
            entries = Outbox.for_record(conn, entity, id) if tracked else []
            if tracked and base is None and all(e.status != "inflight" for e in entries):
                Outbox.remove(conn, [e.seq for e in entries])
                Outbox.drop_base(conn, entity, id)
                self.db.purge_records([(entity, id)])
            else:
                self._track_base(conn, entity, id, current)
                clock = self.clock.now(conn)
                Outbox.append(
                    conn,
                    mutation_id=uuid.uuid4().hex,
                    entity=entity,
                    id=id,
                    op="delete",
                    base_version=current.version,
                    fields={},
                    clock=clock,
                    now_ms=clock.wall_ms,
                )
                self.db.upsert_records([msgspec.structs.replace(current, deleted=True)])
        self._notify()

    def _track_base(
        self, conn: Connection, entity: str, id: str, current: LocalRecord | None
    ) -> None:
        """Before a record's first outbox row: remember its server state (= the row now)."""
        if not Outbox.has_base(conn, entity, id):
            Outbox.put_base(conn, entity, id, current)

    # --- outbox and dead letters -----------------------------------------------------

    def pending(self) -> list[OutboxEntry]:
        """Every unsynced mutation (pending, in flight and rejected), oldest first."""
        with self.lock:
            return Outbox.entries(self.db.conn)

    def rejections(self) -> list[OutboxEntry]:
        """Mutations the server refused, oldest first; each has ``code`` and ``message``.

        They never block later mutations. Fix the cause, then :meth:`retry`, or
        :meth:`discard` to return to the server's version.
        """
        with self.lock:
            return Outbox.entries(self.db.conn, "rejected")

    def retry(self, mutation_id: str) -> None:
        """Send a rejected mutation again (in a new changeset, at its original place).

        Raises:
            MutationNotFoundError: no such mutation.
            MutationNotRejectedError: it is not rejected.
        """
        with self.transaction() as conn:
            entry = self._rejected(conn, mutation_id)
            Outbox.requeue(conn, entry.seq)
        self._notify()

    def discard(self, mutation_id: str) -> None:
        """Drop a rejected mutation; the record shows the server's version again
        (with any other unsynced edits of it still on top).

        Raises:
            MutationNotFoundError: no such mutation.
            MutationNotRejectedError: it is not rejected.
        """
        with self.transaction() as conn:
            entry = self._rejected(conn, mutation_id)
            Outbox.remove(conn, [entry.seq])
            self.refresh(conn, entry.entity, entry.id)

    @staticmethod
    def _rejected(conn: Connection, mutation_id: str) -> OutboxEntry:
        entry = Outbox.get(conn, mutation_id)
        if entry is None:
            raise MutationNotFoundError(f"no mutation {mutation_id!r} in the outbox")
        if entry.status != "rejected":
            raise MutationNotRejectedError(f"mutation {mutation_id} is {entry.status}")
        return entry

    # --- used by the sync engine -----------------------------------------------------

    def refresh(self, conn: Connection, entity: str, id: str) -> None:
        """Recompute a tracked record's visible row from its base and outbox rows.

        When no outbox row is left, the base becomes the record and is no longer tracked.
        """
        tracked, base = Outbox.get_base(conn, entity, id)
        if not tracked:
            return
        entries = Outbox.for_record(conn, entity, id)
        visible = overlay(entity, id, base, entries)
        if not entries:
            Outbox.drop_base(conn, entity, id)
        if visible is None:
            self.db.purge_records([(entity, id)])
        else:
            self.db.upsert_records([visible])

    @staticmethod
    def _status(conn: Connection, entity: str, id: str) -> SyncStatus:
        row = conn.execute(
            "SELECT max(status = 'rejected') FROM outbox WHERE entity = ? AND id = ?",
            (entity, id),
        ).fetchone()
        return _STATUS[row[0]]

    def _notify(self) -> None:
        if self.on_write is not None:
            self.on_write()


# --- query building ------------------------------------------------------------------

_STATUS: Final[dict[int | None, SyncStatus]] = {None: "synced", 0: "pending", 1: "rejected"}
_VIEW_COLUMNS: Final = (
    "entity, id, version, json(fields),"
    " (SELECT max(o.status = 'rejected') FROM outbox o"
    " WHERE o.entity = records.entity AND o.id = records.id)"
)


def _view(row: Sequence[Any]) -> RecordView:
    entity, id_, version, fields, status = row
    return RecordView(
        entity=entity,
        id=id_,
        fields=_fields_decoder.decode(fields),
        version=version,
        status=_STATUS[status],
    )


def _view_of(record: LocalRecord, status: SyncStatus) -> RecordView:
    return RecordView(
        entity=record.entity,
        id=record.id,
        fields=dict(record.fields),
        version=record.version,
        status=status,
    )


def _record_id(id: str | None) -> str:
    if id is None:
        return str(uuid.uuid4())
    if isinstance(id, str):
        id = id.strip().lower()
    if not is_uuid(id):
        raise InvalidRecordIdError("record id must be a UUID")
    return id


def _expression(entity: str, name: str) -> str:
    if name == "id":
        return "id"
    if name not in schema(entity).fields:
        raise InvalidQueryError(f"{entity} has no field {name[:64]!r}")
    return field_expression(name)


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)  # json_extract reads JSON true/false as 1/0
    if value is not None and not isinstance(value, _SCALAR):
        raise InvalidQueryError(f"filter values must be str, int, float or bool, not {value!r}")
    return value


def _like_pattern(value: Any, prefix_only: bool) -> str:
    if not isinstance(value, str):
        raise InvalidQueryError("contains/startswith need a string value")
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix_only else f"%{escaped}%"


def _has_indexed_equality(entity: str, where: Where | None) -> bool:
    """Whether ``where`` (already validated) tests a field of DEFAULT_FIELD_INDEXES with =."""
    if isinstance(where, Mapping):
        return any((entity, k) in _INDEXED and v is not None for k, v in where.items())
    if isinstance(where, Sequence) and not isinstance(where, str):
        return any(
            isinstance(f, Filter)
            and f.op == "eq"
            and f.value is not None
            and (entity, f.field) in _INDEXED
            for f in where
        )
    return False


def _conditions(entity: str, where: Where | None) -> tuple[list[str], list[Any]]:
    # The entity is a literal (it comes from the schema, never from user text) so the
    # planner can use the partial per-entity field indexes.
    clauses = [f"entity = '{entity}'", "deleted = 0"]
    params: list[Any] = []
    if where is None:
        return clauses, params
    if isinstance(where, Mapping):
        filters: list[Filter] = [Filter(k, "eq", v) for k, v in where.items()]
    elif isinstance(where, Sequence) and not isinstance(where, str):
        filters = list(where)
    else:
        raise InvalidQueryError("where must be a mapping or a list of Filter")
    for f in filters:
        if not isinstance(f, Filter) or f.op not in _OPS:
            raise InvalidQueryError(f"not a valid filter: {f!r}")
        expr = _expression(entity, f.field)
        op = f.op
        if (op == "eq" and f.value is None) or op == "is_null":
            clauses.append(f"{expr} IS NULL")
        elif (op == "ne" and f.value is None) or op == "not_null":
            clauses.append(f"{expr} IS NOT NULL")
        elif op == "ne":
            clauses.append(f"{expr} IS NOT ?")
            params.append(_sql_value(f.value))
        elif op == "in":
            if not isinstance(f.value, list | tuple | set | frozenset):
                raise InvalidQueryError("'in' needs a list of values")
            values = [_sql_value(v) for v in f.value]
            clauses.append(f"{expr} IN (SELECT value FROM json_each(?))")
            params.append(_json_encode(values).decode())
        elif op in ("contains", "startswith"):
            clauses.append(f"{expr} LIKE ? ESCAPE '\\'")
            params.append(_like_pattern(f.value, op == "startswith"))
        else:
            sql_op = {"eq": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            if f.value is None:
                raise InvalidQueryError(f"{op} needs a value")
            clauses.append(f"{expr} {sql_op} ?")
            params.append(_sql_value(f.value))
    return clauses, params


__all__ = [
    "DeviceClock",
    "Filter",
    "LocalStore",
    "Page",
    "RecordView",
    "SyncStatus",
    "overlay",
]
