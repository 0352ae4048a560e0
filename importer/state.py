"""The importer's durable state, kept in the record store's service-state table.

Everything the importer must remember across a crash lives under one key prefix per
concern, msgpack-encoded:

=====================================  ==================================================
key                                    value
=====================================  ==================================================
``importer:sync:<entity>``             :class:`EntitySync`: full-load page checkpoint
                                       (the next page's URL) or the delta link
``importer:echo:<entity>:<id>``        :class:`Echo`: what writeback last wrote to a row
``importer:wb:done:<change_id>``       :class:`WritebackDone`: change already written
``importer:deadletter:<change_id>``    :class:`DeadLetter`: change given up on
``importer:file:<sha256>:<entity>``    :class:`FileProgress`: file import progress
``importer:columns:<entity>``          :class:`MissingColumns`: columns Dynamics lacks
=====================================  ==================================================
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

from backend.applier.messages import OutboundChange
from backend.store.base import RecordStore

from .errors import StateCorruptError

PREFIX = "importer:"
SYNC_PREFIX = "importer:sync:"
ECHO_PREFIX = "importer:echo:"
DONE_PREFIX = "importer:wb:done:"
DEAD_LETTER_PREFIX = "importer:deadletter:"
FILE_PREFIX = "importer:file:"
COLUMNS_PREFIX = "importer:columns:"

T = TypeVar("T", bound=msgspec.Struct)

_encode = msgspec.msgpack.Encoder().encode


class EntitySync(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where the Dynamics sync of one entity stands.

    Attributes:
        phase: ``full`` while the full load runs (``next_url`` is the page to fetch next),
            ``delta`` once it finished (``delta_link`` is where the next delta starts).
        run_id: Identifies one full load; part of every batch id it publishes.
        next_url: The next page of the full load (``None`` before the first page).
        pages: Pages published in this phase.
        records: Rows published in this phase.
        delta_link: The change-tracking link to follow next.
        started_ms: When the full load started.
        updated_ms: When this state was last written.
        full_loads: Full loads completed (a delta-token expiry starts another).
    """

    phase: Literal["full", "delta"] = "full"
    run_id: str = ""
    next_url: str | None = None
    pages: int = 0
    records: int = 0
    delta_link: str | None = None
    started_ms: int = 0
    updated_ms: int = 0
    full_loads: int = 0


class Echo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A row version writeback produced: when it comes back in a delta it is our own write.

    Attributes:
        etag: The row's ETag after our write.
        fields: The values we wrote (ours, not Dynamics' names).
        at_ms: When we wrote it.
    """

    etag: str
    fields: dict[str, Any] = {}
    at_ms: int = 0


class WritebackDone(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A change written to Dynamics (so a redelivery is skipped)."""

    etag: str | None = None
    at_ms: int = 0


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A device change writeback gave up on, for an admin to inspect and retry.

    Attributes:
        change: The change as the applier published it.
        code: Stable error code of the last failure.
        message: Its text (no field values: those may be personal data).
        attempts: Failed attempts so far.
        first_failed_ms: When it first failed.
        last_failed_ms: When it last failed.
    """

    change: OutboundChange
    code: str
    message: str = ""
    attempts: int = 0
    first_failed_ms: int = 0
    last_failed_ms: int = 0


class FileProgress(msgspec.Struct, kw_only=True, omit_defaults=True):
    """How far an import of one file (by content hash) into one entity got.

    Attributes:
        file_name: Name of the file when it was imported (for operators).
        batches: Batches published, in order (the next run resumes after them).
        rows: Rows read up to the end of the last published batch.
        valid: Valid rows published.
        rejected: Rows rejected so far.
        status: ``running`` or ``done``.
        batch_ids: Ids of the published batches (to wait for them to be applied).
        as_of_ms: The time the rows' clocks are based on (fixed at the first run, so a
            resumed or repeated import issues the very same clocks).
        started_ms: When the first run started.
        finished_ms: When it finished.
    """

    file_name: str = ""
    batches: int = 0
    rows: int = 0
    valid: int = 0
    rejected: int = 0
    status: Literal["running", "done"] = "running"
    batch_ids: list[str] = []
    as_of_ms: int = 0
    started_ms: int = 0
    finished_ms: int = 0


class MissingColumns(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Columns of our schema the Dynamics organisation does not have (found by probing)."""

    columns: list[str] = []


def columns_key(entity: str) -> str:
    """State key of an entity's missing columns."""
    return f"{COLUMNS_PREFIX}{entity}"


def sync_key(entity: str) -> str:
    """State key of an entity's sync position."""
    return f"{SYNC_PREFIX}{entity}"


def echo_key(entity: str, record_id: str) -> str:
    """State key of the echo record of one row."""
    return f"{ECHO_PREFIX}{entity}:{record_id}"


def done_key(change_id: str) -> str:
    """State key marking a change as written."""
    return f"{DONE_PREFIX}{change_id}"


def dead_letter_key(change_id: str) -> str:
    """State key of a dead letter."""
    return f"{DEAD_LETTER_PREFIX}{change_id}"


def file_key(sha256: str, entity: str) -> str:
    """State key of a file import."""
    return f"{FILE_PREFIX}{sha256}:{entity}"


def encode(value: msgspec.Struct) -> bytes:
    """The stored form of a state value."""
    return _encode(value)


def decode(raw: bytes, kind: type[T], key: str = "") -> T:
    """Decode a stored state value.

    Raises:
        StateCorruptError: The bytes are not a ``kind``.
    """
    try:
        return msgspec.msgpack.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise StateCorruptError(f"state {key or kind.__name__} is unreadable: {e}") from e


class StateStore:
    """Typed access to the importer's durable state on top of a :class:`RecordStore`."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def get(self, key: str, kind: type[T]) -> T | None:
        """The value under ``key``, or ``None``.

        Raises:
            StateCorruptError: It cannot be decoded.
        """
        raw = await self.store.get_state(key)
        return None if raw is None else decode(raw, kind, key)

    async def put(self, key: str, value: msgspec.Struct | None) -> None:
        """Store (or with ``None`` delete) a value."""
        await self.store.put_state(key, None if value is None else encode(value))

    async def scan(self, prefix: str, kind: type[T]) -> dict[str, T]:
        """Every value under ``prefix``, decoded (unreadable entries are skipped)."""
        out: dict[str, T] = {}
        for key, raw in (await self.store.list_state(prefix)).items():
            try:
                out[key] = decode(raw, kind, key)
            except StateCorruptError:
                continue
        return out
