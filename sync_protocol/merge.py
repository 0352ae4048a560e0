"""Field-level, deterministic merge of one mutation into one record.

The model is a map of last-writer-wins registers ordered by ``(rank, clock)``, plus a
delete register; ``base_version`` and ``field_versions`` only decide whether a write is
*concurrent* with a server change (and so what the outcome says, and whether a
``manual`` policy holds it). For ``lww`` and ``upstream_wins`` fields the result is a
pure function of the set of writes, so replicas converge whatever the arrival order,
and applying a mutation twice changes nothing.

* Fast-forward: the device saw the field's current value, so its write wins. Its clock
  is lifted just past the current one if it trails (a device that never observed it).
* Concurrent, ``lww``: higher clock wins; device clocks are first bounded to server time
  plus the allowed skew, so a fast phone cannot win every conflict.
* Concurrent, ``upstream_wins``: a write from the system of record ranks above device
  writes; between equals, ``lww``.
* Concurrent, ``manual`` (device writes only): the server value stays live and the
  device value is held in an open conflict.
* Deletes: the delete register keeps the winning delete clock. A record is deleted when
  that delete came from upstream, the entity's policy is ``delete_wins``, or (``lww``)
  it outranks every field clock. ``update_wins`` lets a concurrent update resurrect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from .changesets import FieldOutcome, Mutation, MutationResult, Outcome
from .entities import is_uuid, schema, validate_fields
from .errors import (
    FieldNotWritableError,
    InvalidRecordIdError,
    OperationNotAllowedError,
    ProtocolError,
    RecordNotFoundError,
    StaleBaseVersionError,
)
from .hlc import HLC, bound, validate
from .policy import DEFAULT_POLICY, EntityPolicy, WritePermission
from .records import Record, is_upstream

Source = Literal["device", "upstream"]


@dataclass(frozen=True, slots=True)
class MergeContext:
    """What the merge needs to know besides the record and the mutation.

    Attributes:
        source: ``device`` for pushes; ``upstream`` for Dynamics and CRM file imports.
        origin: recorded as the record's ``origin`` (``device:<id>``, ``upstream:dynamics``).
        policy: the entity's conflict policy.
        permission: the caller's write permission on the entity; ``None`` = unrestricted.
        now_ms: server wall time, used to bound device clocks and stamp the record.
        max_skew_ms: how far a device clock may run ahead of ``now_ms``.
    """

    source: Source = "device"
    origin: str = ""
    policy: EntityPolicy = DEFAULT_POLICY
    permission: WritePermission | None = None
    now_ms: int = 0
    max_skew_ms: int = 60_000


class ConflictEntry(msgspec.Struct, frozen=True, gc=False):
    """A field (or delete) where the device's write did not become the live value."""

    field: str
    device_value: Any
    server_value: Any
    status: Literal["open", "auto_resolved"]
    policy: str


class MergeResult(msgspec.Struct, gc=False):
    """The merge's answer: the new record (``None`` if rejected) and what happened."""

    record: Record | None
    changed: bool
    result: MutationResult
    conflicts: list[ConflictEntry] = []


def _rank(clock: HLC, upstream_ranked: bool) -> tuple[int, HLC]:
    return (1 if upstream_ranked and is_upstream(clock) else 0, clock)


def _after(clock: HLC, floor: HLC | None) -> HLC:
    """``clock`` lifted just past ``floor`` if it does not already exceed it."""
    if floor is None or clock >= floor:
        return clock
    return HLC(floor.wall_ms, floor.counter + 1, clock.node)


def _reject(index: int, m: Mutation, error: ProtocolError) -> MergeResult:
    return MergeResult(
        record=None,
        changed=False,
        result=MutationResult(
            index=index,
            entity=m.entity[:64],
            id=m.id[:64],
            outcome="rejected",
            code=error.code,
            message=error.detail,
        ),
    )


def _check(m: Mutation, current: Record | None, ctx: MergeContext) -> HLC:
    """Validate the mutation and return its (bounded) clock, or raise a ProtocolError."""
    if m.op == "upsert":
        validate_fields(m.entity, m.fields, allow_system=ctx.source == "upstream")
    else:
        schema(m.entity)
    # A stored record's id was checked when it was created (and the caller found it by id).
    if (current is None or current.id != m.id) and not is_uuid(m.id):
        raise InvalidRecordIdError("record id must be a lower-case UUID", entity=m.entity)
    clock = validate(m.clock)
    perm = ctx.permission
    if perm is not None:
        exists = current is not None and not current.deleted
        if m.op == "delete":
            if not perm.delete:
                raise OperationNotAllowedError(f"may not delete {m.entity}", entity=m.entity)
        elif not exists and not perm.create:
            raise OperationNotAllowedError(f"may not create {m.entity}", entity=m.entity)
        elif exists and not perm.update:
            raise OperationNotAllowedError(f"may not update {m.entity}", entity=m.entity)
        if perm.fields is not None:
            for name in m.fields.keys() - perm.fields:
                raise FieldNotWritableError(
                    f"{m.entity}.{name} is not writable", entity=m.entity, field=name
                )
    if current is None:
        if m.base_version > 0 and m.op == "upsert" and ctx.source == "device":
            raise RecordNotFoundError(f"{m.entity} does not exist", entity=m.entity)
    elif m.base_version > current.version:
        raise StaleBaseVersionError(
            f"base version {m.base_version} is ahead of the record", entity=m.entity
        )
    if ctx.source == "device":
        clock = bound(clock, ctx.now_ms, ctx.max_skew_ms)
    return clock


def is_deleted(record: Record, policy: EntityPolicy) -> bool:
    """Whether the record's delete register outranks its fields under ``policy``."""
    dc = record.deleted_clock
    if dc is None:
        return False
    if is_upstream(dc) or policy.delete == "delete_wins":
        return True
    if not record.clocks:
        return True
    return dc > max(record.clocks.values())


def merge(current: Record | None, m: Mutation, ctx: MergeContext, index: int = 0) -> MergeResult:
    """Merge mutation ``m`` into ``current`` (``None`` if the record does not exist).

    Args:
        current: the record as stored, or ``None``.
        m: the mutation.
        ctx: source, policy, permission and server time.
        index: the mutation's position in its changeset, echoed in the result.

    Returns:
        The new record (a new object; ``current`` is not modified), whether it changed,
        the per-mutation result and any conflict entries. Expected failures (schema,
        permission, stale base) come back as a ``rejected`` result, never as exceptions.
    """
    try:
        clock = _check(m, current, ctx)
    except ProtocolError as e:
        return _reject(index, m, e)

    base = current or Record(entity=m.entity, id=m.id)
    rec = msgspec.structs.replace(
        base,
        fields=dict(base.fields),
        clocks=dict(base.clocks),
        field_versions=dict(base.field_versions),
    )
    new_version = rec.version + 1
    outcomes: dict[str, FieldOutcome] = {}
    conflicts: list[ConflictEntry] = []
    concurrent_any = current is not None and m.base_version < current.version
    lost_any = False
    content_changed = False

    if m.op == "delete":
        content_changed, lost_any = _merge_delete(rec, m, ctx, clock, conflicts)
    else:
        was_deleted = rec.deleted
        for name, value in m.fields.items():
            fo, changed = _merge_field(rec, m, ctx, clock, name, value, new_version, conflicts)
            outcomes[name] = fo
            if changed:
                content_changed = True
            elif fo == "overridden" or fo == "held":
                lost_any = True
        if was_deleted:
            content_changed |= _after_update_of_deleted(rec, m, ctx)
            if is_deleted(rec, ctx.policy):
                lost_any = True
                conflicts.append(
                    ConflictEntry("$deleted", m.fields, None, "auto_resolved", ctx.policy.delete)
                )

    if rec.deleted_clock is not None or rec.deleted:
        deleted_now = is_deleted(rec, ctx.policy)
        if deleted_now != rec.deleted:
            rec.deleted = deleted_now
            content_changed = True

    if content_changed:
        rec.version = new_version
        rec.origin = ctx.origin or rec.origin
        rec.updated_ms = ctx.now_ms
        if m.etag is not None:
            rec.upstream_etag = m.etag
    elif m.etag is not None and m.etag != rec.upstream_etag:
        rec.upstream_etag = m.etag
        content_changed = True
        rec.version = new_version

    outcome: Outcome
    if lost_any:
        outcome = "conflict"
    elif concurrent_any:
        outcome = "merged"
    else:
        outcome = "applied"
    fields = rec.fields
    result = MutationResult(
        index=index,
        entity=m.entity,
        id=m.id,
        outcome=outcome,
        version=rec.version,
        fields={k: fields.get(k) for k in m.fields} if m.op == "upsert" else {},
        field_outcomes=outcomes,
        deleted=rec.deleted,
        code=_conflict_code(m, rec, conflicts) if lost_any else None,
    )
    return MergeResult(record=rec, changed=content_changed, result=result, conflicts=conflicts)


def _conflict_code(m: Mutation, rec: Record, conflicts: list[ConflictEntry]) -> str:
    if m.op == "delete":
        return "record_updated"
    if rec.deleted:
        return "record_deleted"
    if any(c.status == "open" for c in conflicts):
        return "conflict_held"
    return "conflict_overridden"


def _merge_field(
    rec: Record,
    m: Mutation,
    ctx: MergeContext,
    clock: HLC,
    name: str,
    value: Any,
    new_version: int,
    conflicts: list[ConflictEntry],
) -> tuple[FieldOutcome, bool]:
    """Merge one field; returns its outcome and whether the record content changed."""
    cur_clock = rec.clocks.get(name)
    cur_value = rec.fields.get(name)

    if cur_clock is None:
        pass  # a field the record never had: nothing to lose
    elif rec.field_versions.get(name, 0) <= m.base_version:
        # Fast-forward: the writer saw the current value.
        if clock < cur_clock:
            clock = HLC(cur_clock.wall_ms, cur_clock.counter + 1, clock.node)
    else:
        policy = ctx.policy.for_field(name)
        if policy == "manual" and ctx.source == "device" and value != cur_value:
            conflicts.append(ConflictEntry(name, value, cur_value, "open", policy))
            return "held", False
        upstream_ranked = policy == "upstream_wins"
        win = _rank(clock, upstream_ranked) > _rank(cur_clock, upstream_ranked)
        if not win:
            if clock == cur_clock:
                return "unchanged", False  # the same write again
            if value != cur_value and ctx.source == "device":
                conflicts.append(ConflictEntry(name, value, cur_value, "auto_resolved", policy))
            return ("unchanged" if value == cur_value else "overridden"), False

    if cur_clock == clock and cur_value == value:
        return "unchanged", False
    rec.fields[name] = value
    rec.clocks[name] = clock
    if cur_value != value or name not in rec.field_versions:
        rec.field_versions[name] = new_version
    return ("applied" if cur_value != value or cur_clock is None else "unchanged"), True


def _merge_delete(
    rec: Record, m: Mutation, ctx: MergeContext, clock: HLC, conflicts: list[ConflictEntry]
) -> tuple[bool, bool]:
    """Merge a delete into the delete register; returns (changed, lost)."""
    concurrent = any(v > m.base_version for v in rec.field_versions.values())
    if not concurrent:
        clock = _after(clock, max(rec.clocks.values()) if rec.clocks else None)
    elif ctx.policy.delete == "update_wins" and ctx.source == "device" and not rec.deleted:
        conflicts.append(ConflictEntry("$deleted", True, None, "auto_resolved", "update_wins"))
        return False, True
    old = rec.deleted_clock
    if old is None or _rank(clock, True) > _rank(old, True):
        rec.deleted_clock = clock
        changed = True
    else:
        changed = False
    lost = not is_deleted(rec, ctx.policy)
    if lost and ctx.source == "device":
        conflicts.append(ConflictEntry("$deleted", True, None, "auto_resolved", ctx.policy.delete))
    return changed, lost


def _after_update_of_deleted(rec: Record, m: Mutation, ctx: MergeContext) -> bool:
    """An update reached a tombstone: ``update_wins`` resurrects it (unless upstream deleted)."""
    if (
        ctx.policy.delete == "update_wins"
        and rec.deleted_clock is not None
        and not is_upstream(rec.deleted_clock)
        and m.base_version < rec.version
    ):
        rec.deleted_clock = None
        return True
    return False
