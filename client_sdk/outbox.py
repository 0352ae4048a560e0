"""The outbox: local mutations waiting for the server, and the server state they are based on.

Tables (migration 100):
- ``outbox``: one row per local mutation, in the order it was made (``seq``). ``status``
  is ``pending`` (not sent), ``inflight`` (part of the changeset being pushed) or
  ``rejected`` (the server refused it: the visible dead-letter list). ``changeset_id``
  is set when the row is put into a changeset.
- ``sync_base``: for every record with outbox rows, the last server state of that record
  (``present = 0`` when the server has none: a local create, or a record that left the
  scope). The visible row in ``records`` is that base with the outbox rows replayed on
  top, so unsynced edits survive every pull ("rebase"). A record without outbox rows has
  no ``sync_base`` row: its ``records`` row *is* the server state.

Invariants:
- A ``sync_base`` row exists exactly while the record has outbox rows.
- Rows with a ``changeset_id`` are never modified except to set their outcome, so a
  retry after a network failure resends the same changeset id with the same content.
  The changeset counter lives in ``sync_state`` and is advanced in the same transaction
  that assigns the id to the rows.
- Coalescing: a new upsert is folded into the previous outbox row of the same record
  only if that row is an unsent upsert (no changeset yet) with the same
  ``base_version``. Both edits were made on the same server version, so the server sees
  one write instead of two, and the device's own second edit can never be judged
  "concurrent" with its first (which a ``manual`` field policy would turn into a false
  conflict). The folded row takes the later clock: fields from the first edit are then
  ordered at the second edit's time, a difference only for a server write that happened
  between the two edits, which the later clock was going to be compared with anyway.
- A retried mutation gets a new changeset id: the server stores each changeset's result
  and would answer the old id with the old rejection.

Functions here run inside the caller's transaction (they take the connection).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import msgspec

from client_sdk.database import Connection, LocalRecord, Migration
from sync_protocol.changesets import Mutation, Op
from sync_protocol.hlc import HLC

Status = Literal["pending", "inflight", "rejected"]

COUNTER_KEY: Final = "outbox.changeset_counter"

OUTBOX_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        version=100,
        name="outbox_and_sync_base",
        statements=(
            """CREATE TABLE outbox(
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                mutation_id TEXT NOT NULL UNIQUE,
                entity TEXT NOT NULL,
                id TEXT NOT NULL,
                op TEXT NOT NULL,
                base_version INTEGER NOT NULL,
                fields TEXT NOT NULL,
                clock TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'pending',
                changeset_id TEXT,
                code TEXT,
                message TEXT,
                created_ms INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX outbox_record ON outbox(entity, id, seq)",
            "CREATE INDEX outbox_changeset ON outbox(changeset_id) WHERE changeset_id IS NOT NULL",
            "CREATE INDEX outbox_status ON outbox(status, seq)",
            """CREATE TABLE sync_base(
                entity TEXT NOT NULL,
                id TEXT NOT NULL,
                present INTEGER NOT NULL,
                version INTEGER NOT NULL DEFAULT 0,
                seq INTEGER NOT NULL DEFAULT 0,
                fields TEXT NOT NULL DEFAULT '{}',
                deleted INTEGER NOT NULL DEFAULT 0,
                channels TEXT NOT NULL DEFAULT '[]',
                PRIMARY KEY (entity, id)
            ) WITHOUT ROWID""",
        ),
    ),
)

_encode = msgspec.json.Encoder().encode
_fields_decoder = msgspec.json.Decoder(dict[str, Any])
_channels_decoder = msgspec.json.Decoder(tuple[str, ...])

_COLUMNS: Final = (
    "seq, mutation_id, entity, id, op, base_version, fields, clock, status, changeset_id,"
    " code, message, created_ms, attempts"
)


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One local mutation in the outbox.

    Attributes:
        mutation_id: stable id the app uses to retry or discard it.
        seq: position in the outbox (the order mutations are pushed in).
        entity, id, op, base_version, fields, clock: the mutation itself.
        status: ``pending``, ``inflight`` or ``rejected``.
        changeset_id: the changeset it was (last) sent in.
        code, message: the server's reason, for a rejected mutation.
        created_ms: device wall time of the edit.
        attempts: how many times it was retried after a rejection.
    """

    mutation_id: str
    seq: int
    entity: str
    id: str
    op: Op
    base_version: int
    fields: dict[str, Any]
    clock: HLC
    status: Status
    changeset_id: str | None = None
    code: str | None = None
    message: str | None = None
    created_ms: int = 0
    attempts: int = 0

    def to_mutation(self) -> Mutation:
        """The wire form pushed to the server."""
        return Mutation(
            entity=self.entity,
            id=self.id,
            clock=self.clock,
            op=self.op,
            base_version=self.base_version,
            fields=self.fields,
        )


def _entry(row: Sequence[Any]) -> OutboxEntry:
    (seq, mid, entity, id_, op, base, fields, clock, status, cid, code, msg, created, tries) = row
    return OutboxEntry(
        mutation_id=mid,
        seq=seq,
        entity=entity,
        id=id_,
        op=op,
        base_version=base,
        fields=_fields_decoder.decode(fields),
        clock=HLC.parse(clock),
        status=status,
        changeset_id=cid,
        code=code,
        message=msg,
        created_ms=created,
        attempts=tries,
    )


class Outbox:
    """Queries and updates of the ``outbox`` and ``sync_base`` tables."""

    # --- appending -------------------------------------------------------------------

    @staticmethod
    def append(
        conn: Connection,
        *,
        mutation_id: str,
        entity: str,
        id: str,
        op: Op,
        base_version: int,
        fields: dict[str, Any],
        clock: HLC,
        now_ms: int,
    ) -> OutboxEntry:
        """Add a mutation at the end of the outbox, folding it into the previous unsent
        upsert of the same record when that is safe (see the module docstring).

        Returns:
            The new row, or the row it was folded into (which keeps its mutation id).
        """
        if op == "upsert":
            last = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE entity = ? AND id = ?"
                " ORDER BY seq DESC LIMIT 1",
                (entity, id),
            ).fetchone()
            if last is not None:
                prev = _entry(last)
                if (
                    prev.op == "upsert"
                    and prev.status == "pending"
                    and prev.changeset_id is None
                    and prev.base_version == base_version
                ):
                    merged = {**prev.fields, **fields}
                    conn.execute(
                        "UPDATE outbox SET fields = ?, clock = ? WHERE seq = ?",
                        (_encode(merged).decode(), str(clock), prev.seq),
                    )
                    return msgspec.structs.replace(prev, fields=merged, clock=clock)
        cur = conn.execute(
            "INSERT INTO outbox(mutation_id, entity, id, op, base_version, fields, clock,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mutation_id,
                entity,
                id,
                op,
                base_version,
                _encode(fields).decode(),
                str(clock),
                now_ms,
            ),
        )
        seq = cur.lastrowid
        assert seq is not None
        return OutboxEntry(
            mutation_id=mutation_id,
            seq=seq,
            entity=entity,
            id=id,
            op=op,
            base_version=base_version,
            fields=fields,
            clock=clock,
            status="pending",
            created_ms=now_ms,
        )

    # --- reading ---------------------------------------------------------------------

    @staticmethod
    def for_record(conn: Connection, entity: str, id: str) -> list[OutboxEntry]:
        """Every outbox row of one record, oldest first (all statuses)."""
        return [
            _entry(r)
            for r in conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE entity = ? AND id = ? ORDER BY seq",
                (entity, id),
            )
        ]

    @staticmethod
    def get(conn: Connection, mutation_id: str) -> OutboxEntry | None:
        """One row by mutation id."""
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE mutation_id = ?", (mutation_id,)
        ).fetchone()
        return _entry(row) if row else None

    @staticmethod
    def entries(conn: Connection, status: Status | None = None) -> list[OutboxEntry]:
        """Rows in outbox order, optionally of one status."""
        if status is None:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY seq")
        else:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = ? ORDER BY seq", (status,)
            )
        return [_entry(r) for r in rows]

    @staticmethod
    def counts(conn: Connection) -> dict[str, int]:
        """Number of rows per status (missing statuses are 0)."""
        out = {"pending": 0, "inflight": 0, "rejected": 0}
        for status, n in conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"):
            out[status] = n
        return out

    # --- changesets ------------------------------------------------------------------

    @staticmethod
    def inflight(conn: Connection) -> tuple[str, list[OutboxEntry]] | None:
        """The changeset being pushed (sent, or assigned and about to be), if any."""
        rows = [
            _entry(r)
            for r in conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = 'inflight' ORDER BY seq"
            )
        ]
        if not rows:
            return None
        cid = rows[0].changeset_id
        assert cid is not None
        return cid, [r for r in rows if r.changeset_id == cid]

    @staticmethod
    def assign_changeset(
        conn: Connection, device_id: str, limit: int
    ) -> tuple[str, list[OutboxEntry]] | None:
        """Put up to ``limit`` pending rows, in order, into a new changeset.

        The counter is read and advanced in the caller's transaction, together with the
        rows' ``changeset_id``: a crash leaves either both or neither.

        Returns:
            ``(changeset_id, rows)``, or None when nothing is pending.
        """
        rows = [
            _entry(r)
            for r in conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT ?",
                (limit,),
            )
        ]
        if not rows:
            return None
        row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (COUNTER_KEY,)).fetchone()
        counter = int(row[0]) + 1 if row else 1
        conn.execute(
            "INSERT INTO sync_state(key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (COUNTER_KEY, counter),
        )
        cid = f"{device_id}:{counter}"
        conn.executemany(
            "UPDATE outbox SET status = 'inflight', changeset_id = ? WHERE seq = ?",
            [(cid, r.seq) for r in rows],
        )
        return cid, [msgspec.structs.replace(r, status="inflight", changeset_id=cid) for r in rows]

    @staticmethod
    def changeset_rows(conn: Connection, changeset_id: str) -> list[OutboxEntry]:
        """The in-flight rows of a changeset, in changeset order (index 0 first)."""
        return [
            _entry(r)
            for r in conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE changeset_id = ? AND status = 'inflight'"
                " ORDER BY seq",
                (changeset_id,),
            )
        ]

    @staticmethod
    def reject(conn: Connection, seq: int, code: str, message: str | None) -> None:
        """Move a row to the dead-letter list (it keeps its place and its changeset id)."""
        conn.execute(
            "UPDATE outbox SET status = 'rejected', code = ?, message = ? WHERE seq = ?",
            (code, (message or "")[:500], seq),
        )

    @staticmethod
    def remove(conn: Connection, seqs: Iterable[int]) -> None:
        """Delete rows (synced, or discarded)."""
        conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    @staticmethod
    def requeue(conn: Connection, seq: int) -> None:
        """Make a rejected row pending again; it will go out in a new changeset."""
        conn.execute(
            "UPDATE outbox SET status = 'pending', changeset_id = NULL, code = NULL,"
            " message = NULL, attempts = attempts + 1 WHERE seq = ?",
            (seq,),
        )

    @staticmethod
    def rebase_pending(
        conn: Connection, entity: str, id: str, from_version: int, to_version: int
    ) -> None:
        """Move unsent rows of a record made on ``from_version`` onto ``to_version``.

        Used when the server reports that an earlier mutation of this device was applied
        exactly as sent (nothing concurrent): the later edits were made on top of it, so
        they are based on the version it produced.
        """
        conn.execute(
            "UPDATE outbox SET base_version = ? WHERE entity = ? AND id = ?"
            " AND status = 'pending' AND changeset_id IS NULL AND base_version = ?",
            (to_version, entity, id, from_version),
        )

    # --- server base of records with outbox rows -------------------------------------

    @staticmethod
    def has_base(conn: Connection, entity: str, id: str) -> bool:
        """Whether the record has outbox rows (and so a ``sync_base`` row)."""
        row = conn.execute(
            "SELECT 1 FROM sync_base WHERE entity = ? AND id = ?", (entity, id)
        ).fetchone()
        return row is not None

    @staticmethod
    def any_base(conn: Connection) -> bool:
        """Whether any record has outbox rows (lets bulk paths skip per-record checks)."""
        return conn.execute("SELECT 1 FROM sync_base LIMIT 1").fetchone() is not None

    @staticmethod
    def base_keys(conn: Connection, entity: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` (of one entity) have a ``sync_base`` row."""
        return {
            r[0]
            for r in conn.execute(
                "SELECT id FROM sync_base WHERE entity = ?"
                " AND id IN (SELECT value FROM json_each(?))",
                (entity, _encode(list(ids)).decode()),
            )
        }

    @staticmethod
    def get_base(conn: Connection, entity: str, id: str) -> tuple[bool, LocalRecord | None]:
        """The server base of a record with outbox rows.

        Returns:
            ``(tracked, base)``: ``tracked`` is False when the record has no
            ``sync_base`` row; ``base`` is None when the server has no such record.
        """
        row = conn.execute(
            "SELECT present, version, seq, fields, deleted, channels FROM sync_base"
            " WHERE entity = ? AND id = ?",
            (entity, id),
        ).fetchone()
        if row is None:
            return False, None
        present, version, seq, fields, deleted, channels = row
        if not present:
            return True, None
        return True, LocalRecord(
            entity=entity,
            id=id,
            version=version,
            seq=seq,
            fields=_fields_decoder.decode(fields),
            deleted=bool(deleted),
            channels=_channels_decoder.decode(channels),
        )

    @staticmethod
    def put_base(conn: Connection, entity: str, id: str, base: LocalRecord | None) -> None:
        """Store (or replace) the server base of a record with outbox rows."""
        if base is None:
            values: tuple[Any, ...] = (entity, id, 0, 0, 0, "{}", 0, "[]")
        else:
            values = (
                entity,
                id,
                1,
                base.version,
                base.seq,
                _encode(base.fields).decode(),
                int(base.deleted),
                _encode(list(base.channels)).decode(),
            )
        conn.execute(
            "INSERT INTO sync_base(entity, id, present, version, seq, fields, deleted, channels)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(entity, id) DO UPDATE SET"
            " present = excluded.present, version = excluded.version, seq = excluded.seq,"
            " fields = excluded.fields, deleted = excluded.deleted, channels = excluded.channels",
            values,
        )

    @staticmethod
    def drop_base(conn: Connection, entity: str, id: str) -> None:
        """Forget the base of a record that no longer has outbox rows."""
        conn.execute("DELETE FROM sync_base WHERE entity = ? AND id = ?", (entity, id))

    @staticmethod
    def iter_bases(conn: Connection) -> Iterable[LocalRecord]:
        """Every present base (for recomputing checksums from scratch)."""
        for entity, id_, version, seq, fields, deleted, channels in conn.execute(
            "SELECT entity, id, version, seq, fields, deleted, channels FROM sync_base"
            " WHERE present = 1"
        ):
            yield LocalRecord(
                entity=entity,
                id=id_,
                version=version,
                seq=seq,
                fields=_fields_decoder.decode(fields),
                deleted=bool(deleted),
                channels=_channels_decoder.decode(channels),
            )


__all__ = ["COUNTER_KEY", "OUTBOX_MIGRATIONS", "Outbox", "OutboxEntry", "Status"]
