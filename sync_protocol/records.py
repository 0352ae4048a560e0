"""Records: the server's stored form and the lighter form devices receive.

Schema evolution (msgspec rules): new fields get defaults, no field changes type, and
the golden fixtures in ``tests/fixtures/wire`` must keep decoding.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .hlc import HLC

UPSTREAM_NODE_PREFIX = "upstream:"
"""Clock node ids of writes from the system of record (Dynamics, CRM file imports)."""


def is_upstream(clock: HLC) -> bool:
    """True if ``clock`` was issued for a write from the system of record."""
    return clock.node.startswith(UPSTREAM_NODE_PREFIX)


class Record(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A record as the store keeps it, with the merge bookkeeping.

    Attributes:
        entity: entity name (``account`` ...).
        id: canonical lower-case UUID, the same as the Dynamics primary key.
        version: per-record version, +1 on every write that changes content.
        seq: global change sequence of the last write (assigned by the store).
        fields: current field values.
        clocks: per-field HLC of the write that set the current value.
        field_versions: per-field record version at which the field last changed; a
            mutation based on an older version is concurrent with that change.
        deleted: tombstone flag.
        deleted_clock: the winning delete's clock, kept even while an update outranks it.
        channels: channels the record is in (computed by the sync rules).
        origin: who made the last write (``device:<id>``, ``upstream:dynamics``, ...).
        upstream_etag: the Dynamics ``@odata.etag`` last seen for this record.
        updated_ms: server wall time of the last write.
    """

    entity: str
    id: str
    version: int = 0
    seq: int = 0
    fields: dict[str, Any] = {}
    clocks: dict[str, HLC] = {}
    field_versions: dict[str, int] = {}
    deleted: bool = False
    deleted_clock: HLC | None = None
    channels: list[str] = []
    origin: str = ""
    upstream_etag: str | None = None
    updated_ms: int = 0

    def max_clock(self) -> HLC | None:
        """The greatest clock of any field or delete in the record."""
        candidates = list(self.clocks.values())
        if self.deleted_clock is not None:
            candidates.append(self.deleted_clock)
        return max(candidates) if candidates else None

    def content(self) -> tuple[Any, ...]:
        """What replicas must agree on: values, clocks and the delete state (not bookkeeping)."""
        return (
            self.entity,
            self.id,
            msgspec.json.encode(self.fields, order="sorted"),
            tuple(sorted(self.clocks.items())),
            self.deleted,
            self.deleted_clock,
        )

    def to_change(self) -> RecordChange:
        """The form sent to devices in pulls and bootstraps."""
        return RecordChange(
            entity=self.entity,
            id=self.id,
            version=self.version,
            seq=self.seq,
            fields={} if self.deleted else self.fields,
            deleted=self.deleted,
            clock=self.max_clock(),
            channels=tuple(self.channels),
        )


class RecordChange(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A record as a device receives it.

    ``clock`` is the record's greatest clock: the SDK feeds it to its HLC so that its next
    local edit is ordered after everything it has seen. ``channels`` lets the SDK keep
    per-channel checksums and purge a record only when no granted channel holds it.

    Pages of these are the bulk of what a device decodes, so a decoded one holds nothing
    the cyclic garbage collector has to visit: the struct is not GC-tracked (``gc=False``),
    ``fields`` holds only JSON values (a dict of atoms is never tracked), ``clock`` is an
    untracked :class:`HLC` and ``channels`` is a tuple of strings (untracked by the first
    young collection; a list would stay tracked while the page lives). ``gc=False`` is safe
    because a ``RecordChange`` cannot be part of a reference cycle: its fields are atoms,
    an ``HLC``, a tuple of strings and a dict of JSON values, none of which can refer back
    to it (``tests/unit/sync_protocol/test_gc.py``). Storing a ``RecordChange`` inside its
    own ``fields`` would leak it; nothing does. On the wire ``channels`` is an array as
    before: the bytes are unchanged.
    """

    entity: str
    id: str
    version: int
    seq: int = 0
    fields: dict[str, Any] = {}
    deleted: bool = False
    clock: HLC | None = None
    channels: tuple[str, ...] = ()
