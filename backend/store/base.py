"""The record store port: the only way services read and write records.

Adapters (``sqlite.py``, ``couchbase.py``) implement :class:`RecordStore`; one contract
suite (``tests/contract``) holds them to the same behaviour.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence

from sync_protocol.changesets import ChangesetResult
from sync_protocol.checksum import ChannelChecksum
from sync_protocol.records import Record

from .errors import InvalidRequestError, VersionConflictError
from .types import AuditEntry, BlobMeta, ChangePage, CommitResult, ConflictRecord, WriteBatch

GroupOutcome = CommitResult | VersionConflictError | InvalidRequestError
"""What :meth:`RecordStore.apply_group` says of one batch: its commit, or why it was refused."""


class RecordStore(ABC):
    """Async record store with optimistic concurrency and a per-channel change feed."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections, run migrations. Called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The store is unusable afterwards."""

    # -- records ------------------------------------------------------------------------

    @abstractmethod
    async def get(self, entity: str, id: str) -> Record | None:
        """One record (tombstones included), or ``None``."""

    @abstractmethod
    async def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        """Several records by ``(entity, id)``; missing ones are absent from the result."""

    @abstractmethod
    async def apply(self, batch: WriteBatch) -> CommitResult:
        """Write a batch atomically, assigning strictly increasing sequence numbers.

        Every write is compare-and-swap on its ``expected_version``; if any fails nothing
        is written and :class:`~backend.store.errors.VersionConflictError` names the keys.
        The changeset result, conflicts, audit entries, state updates, feed entries
        (including removals for channels a record left) and channel checksums are
        written in the same transaction.
        """

    async def apply_group(self, batches: Sequence[WriteBatch]) -> list[GroupOutcome]:
        """Apply several batches, each atomically and in order, as cheaply as the adapter can.

        Every batch keeps :meth:`apply`'s guarantees on its own: a batch whose
        compare-and-swap fails (``VersionConflictError``, ``DuplicateChangesetError``) or
        that is malformed (``InvalidRequestError``) writes nothing and its slot holds the
        error; the others are written, in order, with increasing sequences. Adapters that
        can share one transaction among the batches do (SQLite: one commit for the group).
        This default applies them one by one.

        Raises:
            StoreError: The store itself failed; the outcome of each batch is unknown (a
                retry with the same changeset ids is safe: stored ones are refused as
                duplicates).
        """
        out: list[GroupOutcome] = []
        for batch in batches:
            try:
                out.append(await self.apply(batch))
            except (VersionConflictError, InvalidRequestError) as e:
                out.append(e)
        return out

    # -- change feed --------------------------------------------------------------------

    @abstractmethod
    async def changes(
        self,
        channels: Collection[str],
        after_seq: int,
        limit: int = 1000,
        with_checksums: bool = False,
    ) -> ChangePage:
        """Feed entries in ``channels`` with ``seq > after_seq``, in sequence order.

        A record in several requested channels appears once per sequence. Raises
        :class:`~backend.store.errors.CheckpointTooOldError` if ``after_seq`` predates
        the retained feed (``after_seq`` 0 always works: it means "from the start").
        """

    @abstractmethod
    async def scan(
        self, channels: Collection[str], after_seq: int = 0, limit: int = 1000
    ) -> list[Record]:
        """Live records in ``channels`` with ``seq > after_seq``, in sequence order, each once:
        the snapshot a bootstrap streams, resumable by the last record's ``seq``.

        A record written while a scan is under way moves to a higher sequence, so a
        resumed scan meets it again (if it is still live and in scope); nothing moves
        backwards, so nothing is skipped.
        """

    @abstractmethod
    async def head_seq(self) -> int:
        """The highest committed sequence."""

    @abstractmethod
    async def oldest_seq(self) -> int:
        """The oldest sequence a checkpoint may be at; older ones get "checkpoint too old"."""

    @abstractmethod
    async def checksums(self, channels: Collection[str]) -> dict[str, ChannelChecksum]:
        """Current per-channel checksums of live records."""

    @abstractmethod
    async def compact(self, older_than_ms: int) -> int:
        """Drop tombstones and removal entries written before ``older_than_ms`` (and
        changeset results past retention); raise :meth:`oldest_seq` accordingly.
        Returns how many entries were dropped."""

    # -- changeset results --------------------------------------------------------------

    @abstractmethod
    async def changeset_result(self, changeset_id: str) -> ChangesetResult | None:
        """The stored result of a changeset, if it was applied."""

    @abstractmethod
    async def device_results(self, device_id: str, after_seq: int) -> list[ChangesetResult]:
        """Results of a device's changesets committed after ``after_seq``, in order."""

    # -- conflicts and audit ------------------------------------------------------------

    @abstractmethod
    async def conflicts(
        self, status: str | None = None, owner: str | None = None, limit: int = 100
    ) -> list[ConflictRecord]:
        """Conflicts, newest first, filtered by status and owner."""

    @abstractmethod
    async def resolve_conflict(self, conflict_id: str, resolution: str, by: str) -> ConflictRecord:
        """Mark a conflict resolved (the chosen value is written separately, as a mutation)."""

    @abstractmethod
    async def audit_trail(
        self, entity: str | None = None, record_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Audit entries, newest first."""

    # -- durable service state ----------------------------------------------------------

    @abstractmethod
    async def get_state(self, key: str) -> bytes | None:
        """A small durable value (importer checkpoint, delta token, device entry)."""

    async def get_states(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Several durable values in one read; missing keys are absent from the result."""
        out: dict[str, bytes] = {}
        for key in keys:
            value = await self.get_state(key)
            if value is not None:
                out[key] = value
        return out

    @abstractmethod
    async def put_state(self, key: str, value: bytes | None) -> None:
        """Set (or with ``None`` delete) a durable value."""

    @abstractmethod
    async def list_state(self, prefix: str) -> dict[str, bytes]:
        """All durable values whose key starts with ``prefix``."""

    # -- blobs --------------------------------------------------------------------------

    @abstractmethod
    async def put_blob(self, meta: BlobMeta, data: bytes) -> None:
        """Store an attachment by its sha256 (idempotent)."""

    @abstractmethod
    async def get_blob(self, sha256: str) -> tuple[BlobMeta, bytes] | None:
        """An attachment and its metadata, or ``None``."""
