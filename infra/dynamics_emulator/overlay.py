"""The overlay: every change made through the API, which wins over the generated base.

An :class:`OverlayEntry` holds the full current row of a changed record (or ``None`` for a
delete, a tombstone) and the version of its last change. Per table the overlay keeps:

* ``by_guid`` and ``by_index`` (records that are also generated base records), for reads;
* ``created``: sorted GUIDs of records that are not base records (client-chosen or new ids),
  which follow the base records in key order;
* ``log``: ``(version, guid)`` in version order, for change tracking. A log item whose version
  is no longer the entry's version has been superseded and is skipped.

Writes happen inside :meth:`OverlayStore.transaction`, which undoes them all if the block
raises (``$batch`` change sets are atomic) and, when an SQLite file is configured, persists the
touched entries in one SQLite transaction on success. Versions come from one counter shared by
all tables, like Dataverse's row versions.
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from infra.dynamics_emulator.errors import EmulatorConfigError

Row = dict[str, Any]


@dataclass(slots=True)
class OverlayEntry:
    """The current state of one changed record."""

    guid: str
    index: int | None
    row: Row | None
    version: int


@dataclass(slots=True)
class TableOverlay:
    """Changed records of one table (see the module docstring)."""

    by_guid: dict[str, OverlayEntry] = field(default_factory=dict)
    by_index: dict[int, OverlayEntry] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    log: list[tuple[int, str]] = field(default_factory=list)
    deleted_base: int = 0
    alive_created: int = 0

    def _count(self, entry: OverlayEntry, sign: int) -> None:
        if entry.index is None:
            if entry.row is not None:
                self.alive_created += sign
        elif entry.row is None:
            self.deleted_base += sign

    def apply(self, entry: OverlayEntry) -> OverlayEntry | None:
        """Install an entry, returning the one it replaced (for undo)."""
        previous = self.by_guid.get(entry.guid)
        if previous is not None:
            self._count(previous, -1)
        elif entry.index is None:
            bisect.insort(self.created, entry.guid)
        self.by_guid[entry.guid] = entry
        if entry.index is not None:
            self.by_index[entry.index] = entry
        self._count(entry, +1)
        self.log.append((entry.version, entry.guid))
        return previous

    def restore(self, guid: str, index: int | None, previous: OverlayEntry | None) -> None:
        """Undo :meth:`apply` for ``guid``: put ``previous`` back (or forget the record)."""
        current = self.by_guid.get(guid)
        if current is not None:
            self._count(current, -1)
        if previous is None:
            self.by_guid.pop(guid, None)
            if index is not None:
                self.by_index.pop(index, None)
            else:
                position = bisect.bisect_left(self.created, guid)
                if position < len(self.created) and self.created[position] == guid:
                    del self.created[position]
            return
        self.by_guid[guid] = previous
        if index is not None:
            self.by_index[index] = previous
        self._count(previous, +1)

    def changes(self, after_version: int, upto_version: int) -> Iterator[OverlayEntry]:
        """Yield entries whose current version lies in ``(after_version, upto_version]``."""
        start = bisect.bisect_right(self.log, (after_version, "\uffff"))
        log = self.log
        for position in range(start, len(log)):
            version, guid = log[position]
            if version > upto_version:
                break
            entry = self.by_guid.get(guid)  # None: a rolled-back first write
            if entry is not None and entry.version == version:
                yield entry


class OverlayStore:
    """All tables' overlays, the version counter, transactions and optional persistence.

    Args:
        first_version: Versions handed out start above this number.
        path: SQLite file to persist entries in, or ``None`` for memory only.
        fingerprint: Identifies the dataset (seed and counts); a persisted overlay made for
            another dataset is refused because its versions and indices would not fit.
    """

    def __init__(self, first_version: int, path: str | None = None, fingerprint: str = "") -> None:
        self.tables: dict[str, TableOverlay] = {}
        self.version = first_version
        self._undo: list[tuple[str, str, int | None, OverlayEntry | None]] | None = None
        self._dirty: dict[tuple[str, str], OverlayEntry] = {}
        self._db: sqlite3.Connection | None = None
        self._encoder = msgspec.json.Encoder()
        if path is not None:
            self._open(Path(path), fingerprint)

    def table(self, entity_set: str) -> TableOverlay:
        """Return (creating on first use) the overlay of a table."""
        overlay = self.tables.get(entity_set)
        if overlay is None:
            overlay = self.tables[entity_set] = TableOverlay()
        return overlay

    def next_version(self) -> int:
        """Hand out the next row version."""
        self.version += 1
        return self.version

    def put(self, entity_set: str, entry: OverlayEntry) -> None:
        """Install an entry (inside or outside a transaction)."""
        previous = self.table(entity_set).apply(entry)
        if self._undo is not None:
            self._undo.append((entity_set, entry.guid, entry.index, previous))
        self._dirty[(entity_set, entry.guid)] = entry
        if self._undo is None:
            self._flush()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all are undone if the block raises, else persisted together."""
        if self._undo is not None:  # nested: the outer transaction decides
            yield
            return
        self._undo = []
        try:
            yield
        except BaseException:
            for entity_set, guid, index, previous in reversed(self._undo):
                self.table(entity_set).restore(guid, index, previous)
                self._dirty.pop((entity_set, guid), None)
            self._undo = None
            raise
        self._undo = None
        self._flush()

    def clear(self) -> None:
        """Forget every change (the dataset returns to its generated state)."""
        self.tables.clear()
        if self._db is not None:
            self._db.execute("DELETE FROM overlay")

    def close(self) -> None:
        """Close the SQLite file, if any."""
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- persistence --------------------------------------------------------------------------

    def _open(self, path: Path, fingerprint: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS overlay (entity_set TEXT NOT NULL, guid TEXT NOT NULL,"
            " idx INTEGER, version INTEGER NOT NULL, row BLOB,"
            " PRIMARY KEY (entity_set, guid))"
        )
        stored = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        if stored is None:
            db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
        elif stored[0] != fingerprint:
            db.close()
            raise EmulatorConfigError(
                f"overlay file {path} belongs to another dataset ({stored[0]}); "
                f"this configuration is {fingerprint}. Delete the file or use another path."
            )
        decoder = msgspec.json.Decoder(dict[str, Any])
        for entity_set, guid, idx, version, blob in db.execute(
            "SELECT entity_set, guid, idx, version, row FROM overlay ORDER BY version"
        ):
            row = None if blob is None else decoder.decode(blob)
            self.table(entity_set).apply(OverlayEntry(guid, idx, row, version))
            self.version = max(self.version, version)
        self._db = db

    def _flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        if self._db is None:
            return
        rows = [
            (
                entity_set,
                entry.guid,
                entry.index,
                entry.version,
                None if entry.row is None else self._encoder.encode(entry.row),
            )
            for (entity_set, _), entry in dirty.items()
        ]
        # One explicit transaction: the connection is in autocommit mode.
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO overlay VALUES (?, ?, ?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
