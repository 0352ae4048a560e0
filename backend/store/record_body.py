"""The compact stored form of a :class:`~sync_protocol.records.Record` (SQLite ``records.data``).

A record's merge bookkeeping is one clock and one version per field. Stored as a plain
``Record`` (msgpack maps) that is 60 % of the bytes, yet almost always redundant: every
field of an upstream record carries the same clock, and most fields of any record still
carry the version at which the record was created. So the body keeps one *default* clock
and one *default* version, and only the fields that differ from them::

    [version, deleted, fields, channels, field_clock, deleted_clock,   # devices need these
     clock_exceptions, field_version, version_exceptions, origin, upstream_etag, updated_ms]

``field_clock`` is the greatest per-field clock and the clock of every field not in
``clock_exceptions`` (``None``: the record has no field clocks); an exception maps a name
to its own clock, or to ``None`` for a field of ``fields`` that has none. Names in the
exceptions but not in ``fields`` are bookkeeping of fields the record no longer has.
Versions work the same way, the default being the smallest (``-1``: none). Entity, id
and seq live in their own columns.

The six leading elements are what the change feed needs: :func:`decode_change` decodes
only them (msgspec skips the rest of an array), so a feed read never builds the per-field
dicts. Bodies written before this form (a msgpack *map* of the whole ``Record``) are told
apart by their first byte and still decode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from sync_protocol.hlc import HLC
from sync_protocol.records import Record, RecordChange


class _Body(msgspec.Struct, array_like=True):
    version: int
    deleted: bool
    fields: dict[str, Any]
    channels: list[str]
    field_clock: HLC | None
    deleted_clock: HLC | None
    clock_exceptions: dict[str, HLC | None] = {}
    field_version: int = -1
    version_exceptions: dict[str, int | None] = {}
    origin: str = ""
    upstream_etag: str | None = None
    updated_ms: int = 0


class _Head(msgspec.Struct, array_like=True, gc=False):
    """The leading elements of a body: what a feed entry needs."""

    version: int
    deleted: bool
    fields: dict[str, Any]
    channels: tuple[str, ...]
    field_clock: HLC | None
    deleted_clock: HLC | None


_encode = msgspec.msgpack.Encoder().encode
_decode_body = msgspec.msgpack.Decoder(_Body).decode
_decode_head = msgspec.msgpack.Decoder(_Head).decode
_decode_legacy = msgspec.msgpack.Decoder(Record).decode
_decode_legacy_change = msgspec.msgpack.Decoder(RecordChange).decode
_decode_clock = msgspec.msgpack.Decoder(HLC | None).decode


def _is_legacy(data: bytes) -> bool:
    # A map (fixmap 0x80-0x8f, map16 0xde, map32 0xdf) is a whole Record; a body is an array.
    first = data[0]
    return 0x80 <= first <= 0x8F or first >= 0xDE


def _split(
    values: dict[str, Any], fields: dict[str, Any], pick: Callable[[list[Any]], Any]
) -> tuple[Any, dict[str, Any]]:
    """``values`` as a default and the exceptions to it (``None``: a field it lacks).

    The default is the one value when all are equal (the usual case, checked at C speed,
    identity first), else ``pick`` of them.
    """
    listed = list(values.values())
    first = listed[0]
    same_keys = values.keys() == fields.keys()
    if listed.count(first) == len(listed):
        return first, ({} if same_keys else _exceptions(values, fields, first))
    default = pick(listed)
    return default, _exceptions(values, fields, default)


def _exceptions(values: dict[str, Any], fields: dict[str, Any], default: Any) -> dict[str, Any]:
    """The entries of ``values`` that differ from ``default``, and ``None`` for fields it lacks."""
    if values.keys() == fields.keys():
        return {k: v for k, v in values.items() if v != default}
    out = {k: v for k, v in values.items() if v != default or k not in fields}
    for k in fields:
        if k not in values:
            out[k] = None
    return out


def _expand(fields: dict[str, Any], default: Any, exceptions: dict[str, Any]) -> dict[str, Any]:
    out = dict.fromkeys(fields, default)
    for k, v in exceptions.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def encode_body(rec: Record) -> bytes:
    """The stored body of ``rec`` (entity, id and seq are not in it)."""
    field_clock, clock_exceptions = (
        _split(rec.clocks, rec.fields, max) if rec.clocks else (None, {})
    )
    field_version, version_exceptions = (
        _split(rec.field_versions, rec.fields, min) if rec.field_versions else (-1, {})
    )
    return _encode(
        _Body(
            rec.version,
            rec.deleted,
            rec.fields,
            rec.channels,
            field_clock,
            rec.deleted_clock,
            clock_exceptions,
            field_version,
            version_exceptions,
            rec.origin,
            rec.upstream_etag,
            rec.updated_ms,
        )
    )


def decode_record(data: bytes, entity: str, id: str, seq: int) -> Record:
    """The whole record stored as ``data`` (either form)."""
    if _is_legacy(data):
        rec = _decode_legacy(data)
        rec.seq = seq
        return rec
    b = _decode_body(data)
    field_clock = b.field_clock
    clocks = {} if field_clock is None else _expand(b.fields, field_clock, b.clock_exceptions)
    versions = {}
    if b.field_version >= 0:
        versions = _expand(b.fields, b.field_version, b.version_exceptions)
    return Record(
        entity=entity,
        id=id,
        version=b.version,
        seq=seq,
        fields=b.fields,
        clocks=clocks,
        field_versions=versions,
        deleted=b.deleted,
        deleted_clock=b.deleted_clock,
        channels=b.channels,
        origin=b.origin,
        upstream_etag=b.upstream_etag,
        updated_ms=b.updated_ms,
    )


def decode_change(
    data: bytes, entity: str, id: str, seq: int, legacy_clock: bytes | None = None
) -> RecordChange:
    """What devices receive of the record stored as ``data``, without its bookkeeping.

    ``legacy_clock`` is the ``records.clock`` column, set only beside old-form bodies.
    """
    if _is_legacy(data):
        if legacy_clock is None:  # written before the clock column existed
            return decode_record(data, entity, id, seq).to_change()
        change = _decode_legacy_change(data)
        change.seq = seq
        change.clock = _decode_clock(legacy_clock)
        if change.deleted:
            change.fields = {}
        return change
    h = _decode_head(data)
    clock = h.field_clock
    dc = h.deleted_clock
    if dc is not None and (clock is None or dc > clock):
        clock = dc
    return RecordChange(
        entity=entity,
        id=id,
        version=h.version,
        seq=seq,
        fields={} if h.deleted else h.fields,
        deleted=h.deleted,
        clock=clock,
        channels=h.channels,
    )
