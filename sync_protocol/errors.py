"""Typed protocol errors with stable codes.

Every error a client or operator can see has a stable ``code`` (snake_case, never
renamed) and the HTTP status the gateway maps it to. Messages are rendered in the
caller's language from :mod:`sync_protocol.messages`; ``params`` carries the values the
message needs, and must never carry data outside the caller's scope.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ProtocolError(Exception):
    """Base of every error the sync protocol defines."""

    code: ClassVar[str] = "protocol_error"
    status: ClassVar[int] = 400

    def __init__(self, detail: str = "", **params: Any) -> None:
        self.detail = detail
        self.params = params
        super().__init__(f"{self.code}: {detail}" if detail else self.code)


# -- payloads ---------------------------------------------------------------------------


class PayloadError(ProtocolError):
    """The request body could not be accepted."""

    code = "invalid_payload"


class MalformedPayloadError(PayloadError):
    """The body is not valid JSON or msgpack, or does not match the message schema."""

    code = "malformed_payload"


class PayloadTooLargeError(PayloadError):
    """The body, a changeset or a field exceeds a size limit."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaTypeError(PayloadError):
    """The body's content type is neither JSON nor msgpack."""

    code = "unsupported_media_type"
    status = 415


class UnsupportedProtocolVersionError(ProtocolError):
    """The client speaks a protocol version this server no longer (or not yet) serves."""

    code = "unsupported_protocol_version"
    status = 426


# -- schema -----------------------------------------------------------------------------


class SchemaError(ProtocolError):
    """A mutation does not fit the entity schema."""

    code = "schema_violation"
    status = 422


class UnknownEntityError(SchemaError):
    """The entity name is not one of the synced entities."""

    code = "unknown_entity"


class UnknownFieldError(SchemaError):
    """A field is not part of the entity's schema."""

    code = "unknown_field"


class InvalidFieldValueError(SchemaError):
    """A field value has the wrong type, length or option-set value."""

    code = "invalid_field_value"


class InvalidRecordIdError(SchemaError):
    """A record id is not a canonical UUID."""

    code = "invalid_record_id"


# -- permissions and scope --------------------------------------------------------------


class AccessError(ProtocolError):
    """The caller may not do this."""

    code = "forbidden"
    status = 403


class FieldNotWritableError(AccessError):
    """The caller's profile may not write this field."""

    code = "field_not_writable"


class OperationNotAllowedError(AccessError):
    """The caller's profile may not create or delete records of this entity."""

    code = "operation_not_allowed"


class OutOfScopeError(AccessError):
    """The record is not in the caller's channels; deliberately says nothing more."""

    code = "not_found"
    status = 404


# -- records and merge ------------------------------------------------------------------


class RecordError(ProtocolError):
    """A mutation cannot be applied to the record as it stands."""

    code = "record_error"
    status = 409


class RecordDeletedError(RecordError):
    """The record was deleted and the entity's policy lets the delete win."""

    code = "record_deleted"


class RecordNotFoundError(RecordError):
    """An update or delete names a record that does not exist."""

    code = "record_not_found"
    status = 404


class RecordExistsError(RecordError):
    """A create (base version 0) names an id that already exists with other content."""

    code = "record_exists"


class StaleBaseVersionError(RecordError):
    """The base version is newer than the server's record: the client state is corrupt."""

    code = "invalid_base_version"


# -- clocks and checkpoints -------------------------------------------------------------


class ClockError(ProtocolError):
    """A hybrid logical clock value is unusable."""

    code = "invalid_clock"


class CheckpointError(ProtocolError):
    """A checkpoint cannot be used."""

    code = "invalid_checkpoint"


class InvalidCheckpointError(CheckpointError):
    """The checkpoint is malformed, tampered with, or belongs to another user."""

    code = "invalid_checkpoint"


class CheckpointTooOldError(CheckpointError):
    """The checkpoint predates tombstone retention: resync, keeping local changes."""

    code = "checkpoint_too_old"
    status = 410


# -- configuration ----------------------------------------------------------------------


class RulesError(ProtocolError):
    """The sync rules file is invalid; ``detail`` names the offending key."""

    code = "invalid_sync_rules"
    status = 500


class ChannelLimitError(RulesError):
    """A user's grants expand to more channels than the rules allow."""

    code = "too_many_channels"
    status = 403
