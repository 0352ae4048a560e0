"""Store errors with stable codes; adapters translate their driver's exceptions into these."""

from __future__ import annotations

from typing import ClassVar


class StoreError(Exception):
    """Base of every store error."""

    code: ClassVar[str] = "store_error"
    status: ClassVar[int] = 503


class VersionConflictError(StoreError):
    """A write's expected version no longer matches: re-read, re-merge and retry."""

    code = "version_conflict"
    status = 409

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        self.keys = keys
        super().__init__(f"version changed for {len(keys)} record(s)")


class CheckpointTooOldError(StoreError):
    """The requested sequence predates the retained change feed."""

    code = "checkpoint_too_old"
    status = 410

    def __init__(self, after_seq: int, oldest_seq: int) -> None:
        self.after_seq = after_seq
        self.oldest_seq = oldest_seq
        super().__init__(f"sequence {after_seq} is older than retained {oldest_seq}")


class StoreUnavailableError(StoreError):
    """The backing database cannot be reached or is closed."""

    code = "store_unavailable"


class NotFoundError(StoreError):
    """A conflict, blob or other store object does not exist."""

    code = "not_found"
    status = 404


class DuplicateChangesetError(VersionConflictError):
    """The batch's changeset result is already stored: another worker applied it first.

    A :class:`VersionConflictError`, so a read-merge-retry loop re-reads and then finds the
    stored result to replay.
    """

    code = "duplicate_changeset"

    def __init__(self, changeset_id: str) -> None:
        self.changeset_id = changeset_id
        super().__init__([("$changeset", changeset_id)])


class InvalidRequestError(StoreError):
    """A store call with arguments no adapter can honour (a bad limit, a malformed write)."""

    code = "invalid_store_request"
    status = 400


class StoreConfigError(StoreError):
    """The store configuration is invalid (raised when it is loaded)."""

    code = "store_config_invalid"
    status = 500
