"""The emulated organisation's data: generated base records with the overlay on top.

Key order (what ``$orderby=<key>``, paging cookies and ``<key> gt <guid>`` filters follow) is
the emulator's own: generated records by index, then records created with other GUIDs in
lexicographic GUID order. Like SQL Server's ``uniqueidentifier`` order used by Dataverse, it is
stable but not the lexicographic order of the GUID strings; clients must not assume either.

Writes go through :meth:`Dataset.create`, :meth:`Dataset.update` and :meth:`Dataset.delete`,
which maintain the computed columns Dataverse maintains (``fullname``, ``modifiedon``,
``modifiedby``, ``versionnumber``, the ETag and state/status consistency).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

from infra.dynamics_emulator.clock import Clock
from infra.dynamics_emulator.errors import InvalidArgumentError, RecordNotFoundError
from infra.dynamics_emulator.generator import LOGICAL, DatasetGenerator, Row, Values
from infra.dynamics_emulator.identity import derive_key, format_guid, mix64
from infra.dynamics_emulator.labels import DEFAULT_STATUS
from infra.dynamics_emulator.overlay import OverlayEntry, OverlayStore
from infra.dynamics_emulator.schema import TABLES, Kind, Table

Predicate = Callable[[Row], bool]

_COMPUTED_FULLNAME = ("contact", "lead", "systemuser")


def iso_seconds(moment: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (Dataverse's precision)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Dataset:
    """Reads and writes records of every emulated table.

    Args:
        generator: Builds base records.
        overlay: Holds API changes.
        clock: Wall time for ``createdon``/``modifiedon``.
    """

    def __init__(self, generator: DatasetGenerator, overlay: OverlayStore, clock: Clock) -> None:
        self.generator = generator
        self.overlay = overlay
        self.clock = clock
        self.default_actor = generator.user_guid(0)
        self._name_cache = lru_cache(maxsize=65_536)(self._primary_name_uncached)
        self._key_positions = {
            name: generator.layout(name).index(table.key) for name, table in TABLES.items()
        }

    # -- reads ----------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The latest row version handed out (the high-water mark for change tracking)."""
        return self.overlay.version

    def get(self, entity_set: str, guid: str) -> Row | None:
        """Return the current row of a record, or ``None`` if it does not exist.

        Args:
            entity_set: Table.
            guid: Record id in canonical lowercase form.
        """
        entry = self.overlay.table(entity_set).by_guid.get(guid)
        if entry is not None:
            return entry.row
        index = self.generator.index_of(entity_set, guid)
        return None if index is None else self.generator.row(entity_set, index)

    def require(self, entity_set: str, guid: str) -> Row:
        """Like :meth:`get` but raise :class:`RecordNotFoundError` for a missing record."""
        row = self.get(entity_set, guid)
        if row is None:
            raise RecordNotFoundError(TABLES[entity_set].logical_name, guid)
        return row

    def count(self, entity_set: str) -> int:
        """Return how many records a table has now."""
        overlay = self.overlay.table(entity_set)
        return self.generator.count(entity_set) - overlay.deleted_base + overlay.alive_created

    def primary_name(self, entity_set: str, guid: str) -> str | None:
        """Return the primary name of a record (for formatted lookup values), or ``None``."""
        if guid in self.overlay.table(entity_set).by_guid:
            row = self.get(entity_set, guid)
            return None if row is None else row.get(TABLES[entity_set].primary_name)
        name: str | None = self._name_cache(entity_set, guid)
        return name

    def _primary_name_uncached(self, entity_set: str, guid: str) -> str | None:
        row = self.get(entity_set, guid)
        return None if row is None else row.get(TABLES[entity_set].primary_name)

    def key_of(self, entity_set: str, item: Row | Values) -> str:
        """Return the primary key of a row or value tuple returned by :meth:`scan`."""
        if type(item) is tuple:
            key: str = item[self._key_positions[entity_set]]
            return key
        assert isinstance(item, dict)
        value: str = item[TABLES[entity_set].key]
        return value

    def position(self, entity_set: str, guid: str) -> tuple[int, int | str]:
        """Return the sort key of a GUID in key order (it need not exist)."""
        index = self.generator.index_of(entity_set, guid)
        return (0, index) if index is not None else (1, guid)

    def scan(
        self,
        entity_set: str,
        *,
        after: str | None,
        descending: bool,
        predicate: Predicate | None,
        limit: int,
    ) -> tuple[list[Row | Values], bool]:
        """Return up to ``limit`` matching rows in key order after ``after``, and whether more
        matching rows follow. Untouched generated records may come as value tuples
        (see :meth:`DatasetGenerator.layout`); use :meth:`key_of` to read their key.

        Args:
            entity_set: Table.
            after: Continue after this GUID (``None``: from the start).
            descending: Walk the key order backwards.
            predicate: Row filter, or ``None`` for all rows.
            limit: Page size.
        """
        overlay = self.overlay.table(entity_set)
        n = self.generator.count(entity_set)
        if not descending and predicate is None and not overlay.by_index:
            return self._scan_fast(entity_set, after, limit, n)
        rows: list[Row | Values] = []
        iterator = self._iterate(entity_set, after, descending)
        for row in iterator:
            if predicate is None or predicate(row):
                if len(rows) == limit:
                    return rows, True
                rows.append(row)
        return rows, False

    def _scan_fast(
        self, entity_set: str, after: str | None, limit: int, n: int
    ) -> tuple[list[Row | Values], bool]:
        """Unfiltered ascending scan of a table whose base records are all untouched."""
        overlay = self.overlay.table(entity_set)
        start, created_from = self._start(entity_set, after, n)
        build = self.generator.values(entity_set)
        stop = min(n, start + limit)
        rows: list[Row | Values] = [build(i) for i in range(start, stop)] if start < n else []
        if len(rows) < limit:
            created = overlay.created
            by_guid = overlay.by_guid
            position = created_from
            while position < len(created) and len(rows) < limit:
                row = by_guid[created[position]].row
                if row is not None:
                    rows.append(row)
                position += 1
            more = any(by_guid[g].row is not None for g in created[position:])
            return rows, more
        more = stop < n or overlay.alive_created > 0
        return rows, more

    def _start(self, entity_set: str, after: str | None, n: int) -> tuple[int, int]:
        """Return (first base index, first position in ``created``) after a GUID, ascending."""
        if after is None:
            return 0, 0
        index = self.generator.index_of(entity_set, after)
        if index is not None:
            return index + 1, 0
        created = self.overlay.table(entity_set).created
        return n, bisect.bisect_right(created, after)

    def _iterate(self, entity_set: str, after: str | None, descending: bool) -> Iterator[Row]:
        overlay = self.overlay.table(entity_set)
        by_index = overlay.by_index
        by_guid = overlay.by_guid
        created = overlay.created
        build = self.generator.builder(entity_set)
        n = self.generator.count(entity_set)
        if not descending:
            start, created_from = self._start(entity_set, after, n)
            for i in range(start, n):
                entry = by_index.get(i)
                if entry is None:
                    yield build(i)
                elif entry.row is not None:
                    yield entry.row
            for guid in created[created_from:]:
                row = by_guid[guid].row
                if row is not None:
                    yield row
            return
        # Descending: created records (highest first), then base records from the end.
        if after is None:
            created_to, base_from = len(created), n - 1
        else:
            index = self.generator.index_of(entity_set, after)
            if index is not None:
                created_to, base_from = 0, index - 1
            else:
                created_to, base_from = bisect.bisect_left(created, after), n - 1
        for position in range(created_to - 1, -1, -1):
            row = by_guid[created[position]].row
            if row is not None:
                yield row
        for i in range(base_from, -1, -1):
            entry = by_index.get(i)
            if entry is None:
                yield build(i)
            elif entry.row is not None:
                yield entry.row

    def changes(self, entity_set: str, after_version: int, upto_version: int) -> list[OverlayEntry]:
        """Return changed records with versions in ``(after_version, upto_version]``: the
        created or updated ones first, then the deleted ones, each in version order."""
        upserts: list[OverlayEntry] = []
        deletes: list[OverlayEntry] = []
        for entry in self.overlay.table(entity_set).changes(after_version, upto_version):
            (deletes if entry.row is None else upserts).append(entry)
        return upserts + deletes

    # -- writes ---------------------------------------------------------------------------------

    def create(
        self,
        entity_set: str,
        values: dict[str, Any],
        *,
        guid: str | None = None,
        actor: str | None = None,
    ) -> Row:
        """Create a record.

        Args:
            entity_set: Table.
            values: Validated column values (lookups with their annotations), see
                :mod:`infra.dynamics_emulator.payload`.
            guid: Client-chosen id (canonical form); a new one is drawn when ``None``.
            actor: System user GUID recorded as ``modifiedby`` and default owner.

        Returns:
            The stored row.

        Raises:
            DuplicateRecordError: Raised by the caller's check; this method overwrites.
        """
        table = TABLES[entity_set]
        actor = actor or self.default_actor
        version = self.overlay.next_version()
        if guid is None:
            guid = self._new_guid(entity_set, version)
        now = iso_seconds(self.clock.now())
        merged: dict[str, Any] = {c.name: None for c in table.columns}
        if "_ownerid_value" in table.by_name:
            merged["_ownerid_value"] = actor
        if table.has_currency:
            merged["_transactioncurrencyid_value"] = self.generator.currency_guid("EUR")
        if table.has_state:
            merged["statecode"] = 0
            merged["statuscode"] = DEFAULT_STATUS[table.logical_name][0]
        merged.update(values)
        self._reconcile_state(table, merged, values, None)
        merged["createdon"] = now
        row = self._finish(table, merged, guid, version, now, actor)
        index = self.generator.index_of(entity_set, guid)
        self.overlay.put(entity_set, OverlayEntry(guid, index, row, version))
        return row

    def update(
        self, entity_set: str, guid: str, values: dict[str, Any], *, actor: str | None = None
    ) -> Row:
        """Update an existing record with validated column values.

        Raises:
            RecordNotFoundError: The record does not exist.
        """
        table = TABLES[entity_set]
        current = self.require(entity_set, guid)
        actor = actor or self.default_actor
        merged = dict(current)
        merged.update(values)
        self._reconcile_state(table, merged, values, current)
        version = self.overlay.next_version()
        now = iso_seconds(self.clock.now())
        row = self._finish(table, merged, guid, version, now, actor)
        index = self.generator.index_of(entity_set, guid)
        self.overlay.put(entity_set, OverlayEntry(guid, index, row, version))
        return row

    def delete(self, entity_set: str, guid: str) -> None:
        """Delete an existing record (a tombstone that change tracking reports).

        Raises:
            RecordNotFoundError: The record does not exist.
        """
        self.require(entity_set, guid)
        version = self.overlay.next_version()
        index = self.generator.index_of(entity_set, guid)
        self.overlay.put(entity_set, OverlayEntry(guid, index, None, version))

    def _new_guid(self, entity_set: str, version: int) -> str:
        # Deterministic for a given history: derived from the table and the version.
        key = derive_key(self.generator.seed, TABLES[entity_set].code, version)
        guid = format_guid((key << 64) | mix64(key))
        # A generated record's GUID would alias a base record; practically never happens.
        return guid if self.generator.index_of(entity_set, guid) is None else guid[::-1]

    def _reconcile_state(
        self, table: Table, merged: dict[str, Any], values: dict[str, Any], current: Row | None
    ) -> None:
        """Keep statecode and statuscode consistent the way Dataverse does."""
        if not table.has_state:
            return
        status_state = table.status_state()
        if "statuscode" in values and values["statuscode"] is not None:
            state_of_status = status_state[values["statuscode"]]
            if "statecode" in values and values["statecode"] != state_of_status:
                raise InvalidArgumentError(
                    f"{values['statuscode']} is not a valid status code for state code "
                    f"{table.logical_name}State.{values['statecode']}"
                )
            merged["statecode"] = state_of_status
        elif "statecode" in values:
            state = values["statecode"]
            if current is None or current.get("statecode") != state:
                merged["statuscode"] = DEFAULT_STATUS[table.logical_name][state]

    def _finish(
        self, table: Table, merged: dict[str, Any], guid: str, version: int, now: str, actor: str
    ) -> Row:
        """Set computed columns and lay the row out in Dataverse's property order."""
        if table.logical_name in _COMPUTED_FULLNAME:
            parts = [merged.get("firstname"), merged.get("lastname")]
            merged["fullname"] = " ".join(p for p in parts if p) or None
        merged["modifiedon"] = now
        merged["_modifiedby_value"] = actor
        merged["versionnumber"] = version
        merged[table.key] = guid
        row: Row = {"@odata.etag": f'W/"{version}"'}
        for column in table.columns:
            value = merged.get(column.name)
            if column.kind is Kind.LOOKUP and value is not None and len(column.targets) > 1:
                # Only a lookup with several possible tables records which one it points at.
                logical = merged.get(column.name + LOGICAL) or column.targets[0].logical_name
                row[column.name + LOGICAL] = logical
            row[column.name] = value
        return row
