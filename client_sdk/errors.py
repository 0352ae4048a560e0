"""Typed errors of the client SDK, each with a stable string code.

The host app switches on ``code`` (never on the message, which may change and may be
localised later). Families: key management, local database, search.
"""

from __future__ import annotations

from typing import ClassVar


class ClientSdkError(Exception):
    """Base class of every error the client SDK raises on purpose."""

    code: ClassVar[str] = "client_sdk_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)

    @property
    def message(self) -> str:
        """The human-readable message (not stable; switch on ``code``)."""
        return str(self.args[0]) if self.args else self.code


# --- key management ------------------------------------------------------------------


class KeyManagementError(ClientSdkError):
    """A key file could not be created, read, unlocked or rewritten."""

    code = "key_management_error"


class KeyFileNotFoundError(KeyManagementError):
    """The key file does not exist (never created, wiped, or lost)."""

    code = "key_file_not_found"


class KeyFileExistsError(KeyManagementError):
    """A key file already exists where a new one was to be created."""

    code = "key_file_exists"


class KeyFileCorruptError(KeyManagementError):
    """The key file is not a well-formed crmsync key file."""

    code = "key_file_corrupt"


class UnsupportedKeyFileError(KeyManagementError):
    """The key file has a version or KDF this SDK does not understand."""

    code = "key_file_unsupported"


class InvalidKekError(KeyManagementError):
    """The key-encryption key material is unusable (empty passphrase, wrong length)."""

    code = "invalid_kek"


class WrongPassphraseError(KeyManagementError):
    """The passphrase does not unlock the key file."""

    code = "wrong_passphrase"


class WrongKeystoreKeyError(KeyManagementError):
    """The keystore-provided key-encryption key does not unlock the key file."""

    code = "wrong_keystore_key"


class KekKindMismatchError(KeyManagementError):
    """The key file is wrapped by another kind of KEK (passphrase vs keystore)."""

    code = "kek_kind_mismatch"


# --- local database ------------------------------------------------------------------


class LocalDatabaseError(ClientSdkError):
    """The local encrypted database could not be opened or used."""

    code = "local_database_error"


class DatabaseKeyMismatchError(LocalDatabaseError):
    """The data key does not decrypt the database file (or the file is not a database)."""

    code = "database_key_mismatch"


class DatabaseClosedError(LocalDatabaseError):
    """The database was closed or wiped and can no longer be used."""

    code = "database_closed"


class DatabaseBusyError(LocalDatabaseError):
    """The operation needs the database outside of any open transaction."""

    code = "database_busy"


class MigrationError(LocalDatabaseError):
    """A schema migration is malformed or failed to apply."""

    code = "migration_failed"


class SchemaTooNewError(LocalDatabaseError):
    """The database was migrated by a newer app version than this one."""

    code = "schema_too_new"


class RekeyError(LocalDatabaseError):
    """Re-encrypting the database under a new data key failed."""

    code = "rekey_failed"


class InvalidRecordError(LocalDatabaseError):
    """A record handed to the database is malformed (bad entity, id, version...)."""

    code = "invalid_record"


class RecordExistsError(LocalDatabaseError):
    """A record inserted as new is already stored (nothing of the call was written)."""

    code = "record_exists"


class InvalidStateValueError(LocalDatabaseError):
    """A sync_state key or value has an unsupported type."""

    code = "invalid_state_value"


# --- search --------------------------------------------------------------------------


class SearchError(ClientSdkError):
    """A search request is invalid (user text never causes this: it is always safe)."""

    code = "search_error"


class InvalidSearchTextError(SearchError):
    """The search text is not a string (any string is accepted, whatever it contains)."""

    code = "invalid_search_text"


class UnknownSearchEntityError(SearchError):
    """The entity filter names an entity that is not searchable."""

    code = "unknown_search_entity"


class InvalidSearchLimitError(SearchError):
    """The result limit is out of range."""

    code = "invalid_search_limit"


# --- local entity API ----------------------------------------------------------------


class LocalApiError(ClientSdkError):
    """A local read or write was refused (field validation errors are the protocol's own
    :class:`sync_protocol.errors.SchemaError` types, with the same codes as the server's)."""

    code = "local_api_error"


class LocalRecordNotFoundError(LocalApiError):
    """The record does not exist in the local replica (or was deleted)."""

    code = "record_not_found"


class InvalidQueryError(LocalApiError):
    """A query names an unknown field or operator, or has a bad limit, offset or order."""

    code = "invalid_query"


class MutationNotFoundError(LocalApiError):
    """No outbox mutation has this id (already synced, discarded, or never existed)."""

    code = "mutation_not_found"


class MutationNotRejectedError(LocalApiError):
    """Only a rejected mutation can be retried or discarded."""

    code = "mutation_not_rejected"


# --- client set-up -------------------------------------------------------------------


class ClientConfigError(ClientSdkError):
    """The client was opened with unusable settings."""

    code = "invalid_client_config"


class InvalidDeviceIdError(ClientConfigError):
    """The device id is not 1-64 characters of letters, digits, ``_`` and ``-``."""

    code = "invalid_device_id"


class DeviceIdMismatchError(ClientConfigError):
    """The replica belongs to another device id (changeset ids would collide)."""

    code = "device_id_mismatch"


# --- sync ----------------------------------------------------------------------------


class SyncError(ClientSdkError):
    """Synchronisation with the server failed."""

    code = "sync_error"

    #: Whether trying again later may succeed (the background loop backs off and retries).
    retryable: ClassVar[bool] = False


class NetworkError(SyncError):
    """The server could not be reached, or the connection dropped mid-request."""

    code = "network_error"
    retryable = True


class ServerUnavailableError(SyncError):
    """The server answered 5xx or 429 (overloaded, restarting): try again later."""

    code = "server_unavailable"
    retryable = True


class AuthenticationError(SyncError):
    """The server refused the access token, even after a fresh one was asked for."""

    code = "authentication_failed"


class RequestRejectedError(SyncError):
    """The server refused the request itself (4xx); ``server_code`` is its stable code."""

    code = "request_rejected"

    def __init__(
        self, message: str | None = None, *, status: int = 0, server_code: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.server_code = server_code


class ProtocolMismatchError(SyncError):
    """The server no longer (or not yet) speaks this SDK's protocol version: update the app."""

    code = "unsupported_protocol_version"


class CheckpointTooOldError(SyncError):
    """The stored checkpoint predates the server's retention: a full resync is needed."""

    code = "checkpoint_too_old"
    retryable = True


class DeviceRevokedError(SyncError):
    """This device was revoked; its replica has been crypto-shredded."""

    code = "device_revoked"


class MalformedResponseError(SyncError):
    """A server response or bootstrap stream could not be decoded."""

    code = "malformed_response"
    retryable = True


class SyncStoppedError(SyncError):
    """The sync engine was stopped or its replica closed or wiped."""

    code = "sync_stopped"
