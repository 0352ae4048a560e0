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
