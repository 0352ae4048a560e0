"""Planning one transaction: a changeset (or an upstream batch) merged into its records.

Pure code: given the records as read, the rules and the server time, a plan holds the
:class:`~backend.store.types.WriteBatch` to commit, the changeset result stored with it
and the channels to poke afterwards. The service reads, plans and commits; when another
writer got there first (optimistic concurrency) it reads and plans again, so planning
must not depend on anything but its arguments.

Scope is enforced here, before and after the merge:

* an existing record none of whose channels the actor holds is rejected ``not_found``,
  with no detail (nothing is said about records outside the caller's scope);
* a new record gets ``ownerid`` = the pushing user when the device did not set one (as
  Dynamics does), then its channels are computed; it must land in at least one of the
  actor's channels, else it is rejected ``operation_not_allowed``.

Within one changeset the merged record is carried into later mutations of the same record,
so a create followed by an edit becomes one write at version 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from backend.applier.messages import Actor, ChangesetEnvelope, OutboundChange
from backend.store.types import AuditEntry, ConflictRecord, RecordWrite, WriteBatch
from sync_protocol.changesets import ChangesetResult, Mutation, MutationResult, UpstreamBatch
from sync_protocol.entities import is_uuid
from sync_protocol.errors import (
    ClockError,
    OperationNotAllowedError,
    OutOfScopeError,
    RecordNotFoundError,
    RulesError,
)
from sync_protocol.merge import MergeContext, MergeResult, merge
from sync_protocol.policy import DEFAULT_POLICY, EntityPolicy
from sync_protocol.records import Record, is_upstream
from sync_protocol.rules import Profile, SyncRules

Key = tuple[str, str]
"""A record's identity: ``(entity, id)``."""

UPSTREAM_RESULT_PREFIX = "upstream:"
"""Upstream batch results are stored under ``upstream:<batch_id>``."""

OWNER_FIELD = "ownerid"
_OUT_OF_SCOPE_CREATE = "the new record would be outside your scope"


def upstream_result_id(batch_id: str) -> str:
    """The changeset-result key an upstream batch is stored under."""
    return UPSTREAM_RESULT_PREFIX + batch_id


def touched_keys(mutations: Iterable[Mutation]) -> list[Key]:
    """The distinct records a list of mutations touches, in first-touch order."""
    return list(dict.fromkeys((m.entity, m.id) for m in mutations))


@dataclass(slots=True)
class Plan:
    """One transaction, ready to commit.

    Attributes:
        batch: What the store writes atomically (records, result, conflicts, audit).
        result: The changeset result (also in ``batch``); its ``seq`` is set after commit.
        channels: Channels to poke after commit: every channel a written record was in
            before or is in now (a record that left a channel must reach its devices as a
            removal).
        written: Keys of the records written, in first-write order.
    """

    batch: WriteBatch
    result: ChangesetResult
    channels: set[str] = field(default_factory=set)
    written: list[Key] = field(default_factory=list)


class _Working:
    """The records of one plan as they evolve mutation by mutation."""

    def __init__(self, current: Mapping[Key, Record]) -> None:
        self.records: dict[Key, Record] = dict(current)
        self.read_version = {k: r.version for k, r in current.items()}
        self.dirty: dict[Key, None] = {}

    def put(self, key: Key, record: Record) -> None:
        self.records[key] = record
        self.dirty[key] = None

    def writes(self) -> list[RecordWrite]:
        return [
            RecordWrite(record=self.records[k], expected_version=self.read_version.get(k, 0))
            for k in self.dirty
        ]

    def touched_channels(self) -> set[str]:
        """Old and new channels of the written records only."""
        out: set[str] = set()
        for k in self.dirty:
            out.update(self.records[k].channels)
        return out


def _rejected(index: int, m: Mutation, code: str, message: str | None) -> MutationResult:
    return MutationResult(
        index=index,
        entity=m.entity[:64],
        id=m.id[:64],
        outcome="rejected",
        code=code,
        message=message or None,
    )


def _audit_outcome(result: MutationResult) -> str:
    return result.outcome if result.code is None else f"{result.outcome}:{result.code}"


def _stamp_owner(record: Record, result: MutationResult, user: str) -> None:
    """Give a device-created record its creator as owner, as Dynamics does."""
    if record.deleted or record.fields.get(OWNER_FIELD) or not is_uuid(user):
        return
    clock = record.max_clock()
    record.fields[OWNER_FIELD] = user
    if clock is not None:
        record.clocks[OWNER_FIELD] = clock
    record.field_versions[OWNER_FIELD] = record.version
    result.fields = {**result.fields, OWNER_FIELD: user}
    result.field_outcomes = {**result.field_outcomes, OWNER_FIELD: "applied"}


def _policy(rules: SyncRules, entity: str) -> EntityPolicy:
    # Unknown entities get the default; the merge rejects them with ``unknown_entity``.
    return rules.policies.get(entity, DEFAULT_POLICY)


def plan_changeset(
    envelope: ChangesetEnvelope,
    current: Mapping[Key, Record],
    rules: SyncRules,
    now_ms: int,
    max_skew_ms: int,
) -> Plan:
    """Merge a device changeset into the records it touches.

    Args:
        envelope: The changeset and the actor the gateway resolved.
        current: The touched records as read (missing keys do not exist).
        rules: Sync rules (channels, policies, profiles).
        now_ms: Server wall time.
        max_skew_ms: How far ahead of ``now_ms`` a device clock may be.

    Returns:
        The plan. Expected failures are per-mutation ``rejected`` results, never raised.
    """
    push, actor = envelope.push, envelope.actor
    origin = f"device:{push.device_id}"
    profile: Profile | None
    profile_error: RulesError | None = None
    try:
        profile = rules.profile(actor.profile)
    except RulesError as e:
        profile, profile_error = None, e
    granted = frozenset(actor.channels)
    w = _Working(current)
    contexts: dict[str, MergeContext] = {}
    results: list[MutationResult] = []
    conflicts: list[ConflictRecord] = []
    audit: list[AuditEntry] = []

    for index, m in enumerate(push.mutations):
        key = (m.entity, m.id)
        before = w.records.get(key)
        if profile is None:
            assert profile_error is not None
            result = _rejected(index, m, profile_error.code, profile_error.detail)
        elif before is not None and granted.isdisjoint(before.channels):
            result = _rejected(index, m, OutOfScopeError.code, None)
        else:
            ctx = contexts.get(m.entity)
            if ctx is None:
                ctx = contexts[m.entity] = MergeContext(
                    source="device",
                    origin=origin,
                    policy=_policy(rules, m.entity),
                    permission=profile.permission(m.entity),
                    now_ms=now_ms,
                    max_skew_ms=max_skew_ms,
                )
            merged = merge(before, m, ctx, index)
            result = _accept_device(merged, before, m, index, actor, rules, granted, w)
            if result.outcome != "rejected" and merged.conflicts:
                live = w.records.get(key)
                owner = str(live.fields.get(OWNER_FIELD) or "") if live is not None else ""
                ids = _conflicts(merged, push.changeset_id, push.device_id, owner, now_ms, m)
                conflicts.extend(ids)
                result.conflict_ids = [c.id for c in ids]
        results.append(result)
        audit.append(
            AuditEntry(
                entity=m.entity[:64],
                record_id=m.id[:64],
                user=actor.user,
                device_id=push.device_id,
                source="device",
                changeset_id=push.changeset_id,
                outcome=_audit_outcome(result),
                version_before=before.version if before is not None else 0,
                version_after=result.version if result.outcome != "rejected" else 0,
                at_ms=now_ms,
            )
        )

    changeset = ChangesetResult(changeset_id=push.changeset_id, results=results)
    batch = WriteBatch(
        writes=w.writes(),
        changeset=changeset,
        device_id=push.device_id,
        conflicts=conflicts,
        audit=audit,
    )
    channels = _channels_to_poke(w, current)
    return Plan(batch=batch, result=changeset, channels=channels, written=list(w.dirty))


def _accept_device(
    merged: MergeResult,
    before: Record | None,
    m: Mutation,
    index: int,
    actor: Actor,
    rules: SyncRules,
    granted: frozenset[str],
    w: _Working,
) -> MutationResult:
    """Scope-check a device merge's new record and carry it into the working set."""
    result = merged.result
    if result.code == RecordNotFoundError.code:
        # The same answer as a record outside the caller's scope: a device must not be
        # able to tell a record that does not exist from one it may not see.
        return _rejected(index, m, OutOfScopeError.code, None)
    record = merged.record
    if record is None or not merged.changed:
        return result
    if before is None:
        _stamp_owner(record, result, actor.user)
    record.channels = rules.channels_for(m.entity, record.fields)
    if before is None and granted.isdisjoint(record.channels):
        return _rejected(index, m, OperationNotAllowedError.code, _OUT_OF_SCOPE_CREATE)
    w.put((m.entity, m.id), record)
    return result


def _conflicts(
    merged: MergeResult,
    changeset_id: str,
    device_id: str,
    owner: str,
    now_ms: int,
    m: Mutation,
) -> list[ConflictRecord]:
    # Ids are derived from the changeset so that a re-plan (after a version conflict)
    # and a replay name the same conflicts.
    return [
        ConflictRecord(
            id=f"{changeset_id}/{merged.result.index}/{c.field}",
            entity=m.entity,
            record_id=m.id,
            field=c.field,
            device_value=c.device_value,
            server_value=c.server_value,
            status=c.status,
            policy=c.policy,
            owner=owner,
            device_id=device_id,
            changeset_id=changeset_id,
            created_ms=now_ms,
        )
        for c in merged.conflicts
    ]


def _channels_to_poke(w: _Working, current: Mapping[Key, Record]) -> set[str]:
    out = w.touched_channels()
    for k in w.dirty:
        old = current.get(k)
        if old is not None:
            out.update(old.channels)
    return out


def plan_upstream(
    batch: UpstreamBatch,
    current: Mapping[Key, Record],
    rules: SyncRules,
    now_ms: int,
    state: Mapping[str, bytes] | None = None,
) -> Plan:
    """Merge a batch from the system of record (Dynamics, a CRM file import).

    Upstream writes have no permission limits and no scope; their clocks must carry an
    ``upstream:`` node id (that is what ranks them above devices for ``upstream_wins``
    fields), else the mutation is rejected ``invalid_clock``. The stored result is slim
    (no field values): batches hold thousands of records and nobody replays their values.

    Args:
        batch: The batch.
        current: The touched records as read.
        rules: Sync rules.
        now_ms: Server wall time.
        state: Durable state to write in the same transaction (an importer checkpoint).

    Returns:
        The plan.
    """
    origin = f"{UPSTREAM_RESULT_PREFIX}{batch.source}"
    w = _Working(current)
    contexts: dict[str, MergeContext] = {}
    results: list[MutationResult] = []
    audit: list[AuditEntry] = []
    for index, m in enumerate(batch.mutations):
        key = (m.entity, m.id)
        if not is_upstream(m.clock):
            results.append(
                _rejected(index, m, ClockError.code, "upstream clocks need an upstream: node")
            )
            continue
        ctx = contexts.get(m.entity)
        if ctx is None:
            ctx = contexts[m.entity] = MergeContext(
                source="upstream", origin=origin, policy=_policy(rules, m.entity), now_ms=now_ms
            )
        before = w.records.get(key)
        merged = merge(before, m, ctx, index)
        r = merged.result
        results.append(
            MutationResult(
                index=index,
                entity=r.entity,
                id=r.id,
                outcome=r.outcome,
                version=r.version,
                deleted=r.deleted,
                code=r.code,
                message=r.message,
            )
        )
        record = merged.record
        if record is None or not merged.changed:
            continue
        record.channels = rules.channels_for(m.entity, record.fields)
        w.put(key, record)
        audit.append(
            AuditEntry(
                entity=m.entity,
                record_id=m.id,
                user=origin,
                source="upstream",
                changeset_id=upstream_result_id(batch.batch_id),
                outcome=r.outcome,
                version_before=before.version if before is not None else 0,
                version_after=record.version,
                at_ms=now_ms,
            )
        )
    changeset = ChangesetResult(changeset_id=upstream_result_id(batch.batch_id), results=results)
    write_batch = WriteBatch(
        writes=w.writes(), changeset=changeset, audit=audit, state=dict(state or {})
    )
    channels = _channels_to_poke(w, current)
    return Plan(batch=write_batch, result=changeset, channels=channels, written=list(w.dirty))


def outbound_changes(
    envelope: ChangesetEnvelope,
    result: ChangesetResult,
    etags: Mapping[Key, str | None],
) -> list[OutboundChange]:
    """The device-made changes writeback must send to Dynamics, one per effective mutation.

    Built only from the envelope and the stored result, so a replay after a crash
    publishes the same messages (same ``change_id``, which is the ``Nats-Msg-Id``). Only
    device values that are live go out: a field that lost a conflict stays out, a delete
    that lost stays out. A create carries ``created=True``.

    Args:
        envelope: The changeset.
        result: Its committed result (``seq`` set).
        etags: The records' upstream ETags as of the commit, for ``If-Match``.

    Returns:
        The messages, in mutation order.
    """
    push = envelope.push
    out: list[OutboundChange] = []
    for m, r in zip(push.mutations, result.results, strict=False):
        if r.outcome == "rejected":
            continue
        if m.op == "delete":
            if not r.deleted:
                continue
            fields: dict[str, object] = {}
        else:
            fields = {k: r.fields.get(k) for k, fo in r.field_outcomes.items() if fo == "applied"}
            if not fields:
                continue
        out.append(
            OutboundChange(
                change_id=f"{push.changeset_id}/{r.index}",
                entity=m.entity,
                id=m.id,
                op=m.op,
                fields=fields,
                created=m.op == "upsert" and m.base_version == 0 and r.version == 1,
                version=r.version,
                seq=result.seq,
                upstream_etag=etags.get((m.entity, m.id)),
                changeset_id=push.changeset_id,
                device_id=push.device_id,
                user=envelope.actor.user,
            )
        )
    return out


def result_keys(results: Sequence[MutationResult]) -> list[Key]:
    """Distinct record keys of a result's non-rejected mutations (for a replay's re-read)."""
    return list(dict.fromkeys((r.entity, r.id) for r in results if r.outcome != "rejected"))
