"""What of a Dynamics row is news for the store, field by field.

Dynamics has one ``modifiedon`` per row, not per column. Publishing a whole changed row
under that clock would let a CRM edit of one column override every column a device
changed since the last writeback (the merge is field-wise and the row clock is newer).
So for a record the store already holds, a row from a delta (or from a reload after a
delta token expired) is reduced to the columns Dynamics really changed:

* a field whose stored clock is an **upstream** clock holds the last value Dynamics sent:
  the row's value goes out only if it differs;
* a field whose stored clock is a **device** clock holds a device edit. If writeback wrote
  that very value (the echo registry says so) and Dynamics still has it, it goes out
  unchanged to *re-stamp* the field with an upstream clock (so later CRM edits of it are
  recognised); if Dynamics now has something else, the CRM changed it after our write and
  it goes out. Otherwise the device edit is still on its way to Dynamics (writeback will
  merge it there) and the field is left out;
* a field the store never had goes out (unless Dynamics has it null: the same thing).

The ETag always goes out (the store needs it for the next ``If-Match``). The mutation's
clock is the row's clock, lifted above the device clocks of re-stamped fields (their
values are equal, so the lift cannot override anything). A record the store does not
have yet gets the whole row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backend.store.base import RecordStore
from sync_protocol.changesets import Mutation
from sync_protocol.hlc import HLC
from sync_protocol.records import Record, is_upstream

from .echo import EchoRegistry
from .mapping import MODIFIED_COLUMN

_MAX_COUNTER = 0xFFFF


def _lift(clock: HLC, above: HLC) -> HLC:
    if clock > above:
        return clock
    if above.counter < _MAX_COUNTER:
        return HLC(above.wall_ms, above.counter + 1, clock.node)
    return HLC(above.wall_ms + 1, 0, clock.node)


def reduce_row(
    m: Mutation, rec: Record | None, written: Mapping[str, Any] | None = None
) -> Mutation | None:
    """The part of upstream upsert ``m`` that is news for stored record ``rec``.

    Args:
        m: The upsert built from the whole Dynamics row.
        rec: The record as stored (``None``: not stored, the whole row is news).
        written: Values writeback last wrote to this row (from the echo registry).

    Returns:
        The reduced mutation, or ``None`` when the store already has all of it.
    """
    if rec is None or rec.deleted:
        return m
    written = written or {}
    fields: dict[str, Any] = {}
    clock = m.clock
    news = False
    for name, value in m.fields.items():
        stored_clock = rec.clocks.get(name)
        if stored_clock is None:
            if value is not None:  # a null the store never had is no news
                fields[name] = value
                news = True
            continue
        stored = rec.fields.get(name)
        if is_upstream(stored_clock):
            if value != stored:
                fields[name] = value
                news = news or name != MODIFIED_COLUMN
            continue
        if name in written:
            if value != written[name]:
                fields[name] = value  # the CRM changed it after our write
                news = True
            elif stored == value:
                fields[name] = value  # re-stamp our own write with an upstream clock
                clock = _lift(clock, stored_clock)
                news = True
        # else: a device edit not yet written back; writeback merges it in Dynamics.
    if not news:
        fields.pop(MODIFIED_COLUMN, None)
        if m.etag is None or m.etag == rec.upstream_etag:
            return None
    return Mutation(entity=m.entity, id=m.id, clock=clock, fields=fields, etag=m.etag)


def _has_device_clock(rec: Record) -> bool:
    return any(not is_upstream(c) for c in rec.clocks.values())


def etag_version(etag: str | None) -> int | None:
    """The row version in a Dataverse ETag (``W/"915244"`` -> 915244), if it is one."""
    if not etag:
        return None
    digits = etag.removeprefix("W/").strip('"')
    return int(digits) if digits.isdigit() else None


def _older(row_etag: str | None, echo_etag: str) -> bool:
    """True if the row version is known to predate the version writeback produced."""
    row_v, echo_v = etag_version(row_etag), etag_version(echo_etag)
    return row_v is not None and echo_v is not None and row_v < echo_v


class RowDiffer:
    """Reduces pages of upstream upserts against the store (see the module docstring).

    Args:
        store: The record store.
        echoes: Writeback's record of its own writes.
    """

    def __init__(self, store: RecordStore, echoes: EchoRegistry) -> None:
        self.store = store
        self.echoes = echoes
        self.echoes_seen = 0

    async def reduce(self, entity: str, mutations: Sequence[Mutation]) -> list[Mutation]:
        """Reduce the upserts of one page; echoes of our writes are consumed on the way."""
        if not mutations:
            return []
        stored = await self.store.get_many([(entity, m.id) for m in mutations])
        out: list[Mutation] = []
        for m in mutations:
            rec = stored.get((entity, m.id))
            echo = self.echoes.get(entity, m.id)
            if echo is None and rec is not None and _has_device_clock(rec):
                # Writeback may run in another process: its durable record is the truth.
                echo = await self.echoes.fetch(entity, m.id)
            written: Mapping[str, Any] | None = None
            if echo is not None and not _older(m.etag, echo.etag):
                # This row version is our write or a later one: the entry has served.
                written = echo.fields
                await self.echoes.seen(entity, m.id)
                if echo.etag == m.etag:
                    self.echoes_seen += 1
            reduced = reduce_row(m, rec, written)
            if reduced is not None:
                out.append(reduced)
        return out
