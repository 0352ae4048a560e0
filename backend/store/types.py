"""Values that cross the store port: write batches, feed pages, conflicts, audit entries."""

from __future__ import annotations

from typing import Literal

import msgspec

from sync_protocol.changesets import ChangesetResult
from sync_protocol.checksum import ChannelChecksum
from sync_protocol.records import Record, RecordChange

from .errors import InvalidRequestError


class RecordWrite(msgspec.Struct, kw_only=True):
    """One record's new state, written only if the stored version is still ``expected_version``.

    ``expected_version`` 0 means the record must not exist yet. The store assigns ``seq``.
    The store itself works out removal entries for channels the record left.
    """

    record: Record
    expected_version: int


class ConflictRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A conflict for operators: open (manual policy) or auto-resolved (for the record)."""

    id: str
    entity: str
    record_id: str
    field: str
    device_value: object = None
    server_value: object = None
    status: Literal["open", "auto_resolved", "resolved"] = "open"
    policy: str = ""
    owner: str = ""
    device_id: str = ""
    changeset_id: str = ""
    created_ms: int = 0
    resolved_ms: int = 0
    resolved_by: str = ""
    resolution: str = ""


class AuditEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One write in the append-only audit trail: who, from where, what happened."""

    entity: str
    record_id: str
    user: str
    device_id: str = ""
    source: str = ""
    changeset_id: str = ""
    outcome: str = ""
    version_before: int = 0
    version_after: int = 0
    at_ms: int = 0
    seq: int = 0


class WriteBatch(msgspec.Struct, kw_only=True):
    """Everything one applier transaction writes, atomically.

    ``changeset`` is the per-changeset result stored in the same transaction as the
    writes (idempotent replay); ``state`` updates durable service state in it too (an
    importer checkpoint that must advance exactly when its records land).
    """

    writes: list[RecordWrite] = []
    changeset: ChangesetResult | None = None
    device_id: str = ""
    conflicts: list[ConflictRecord] = []
    audit: list[AuditEntry] = []
    state: dict[str, bytes] = {}


class CommitResult(msgspec.Struct, kw_only=True):
    """What a committed batch was assigned: its records with their sequences."""

    records: list[Record]
    first_seq: int
    last_seq: int


class FeedEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One change-feed entry: a record state, or a removal of a record from a channel.

    A record state comes as devices receive it (``RecordChange``: values, greatest clock,
    all its channels; a tombstone has ``deleted`` and no values), not as the merge keeps
    it: the feed is read for pulls only, and skipping the per-field clocks halves a
    feed read. ``get``/``get_many`` give the whole ``Record``.
    """

    seq: int
    entity: str
    id: str
    change: RecordChange | None = None
    removed_from: str | None = None


class ChangePage(msgspec.Struct, kw_only=True):
    """A page of the change feed for a set of channels.

    ``last_seq`` is the sequence to continue after. When ``has_more`` is false the page
    reached the head, and ``checksums`` (if asked for) are consistent with it.
    """

    entries: list[FeedEntry]
    last_seq: int
    has_more: bool
    checksums: dict[str, ChannelChecksum] = {}


class BlobMeta(msgspec.Struct, kw_only=True):
    """Metadata of a content-addressed attachment, bound to the record it belongs to."""

    sha256: str
    size: int
    content_type: str
    entity: str
    record_id: str
    created_ms: int = 0


def check_batch(batch: WriteBatch) -> None:
    """Reject writes no adapter can apply: an empty key, or a version that does not grow.

    Raises:
        InvalidRequestError: a write is malformed (nothing is written).
    """
    for w in batch.writes:
        rec = w.record
        if not rec.entity or not rec.id:
            raise InvalidRequestError("a record write needs an entity and an id")
        if w.expected_version < 0 or rec.version <= w.expected_version:
            raise InvalidRequestError(
                f"record version {rec.version} must be greater than the expected "
                f"version {w.expected_version}"
            )
