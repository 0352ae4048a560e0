"""The device's encrypted local database: SQLCipher 4 + sqlite-utils + schema migrations.

Files, for a database at ``<path>``:
- ``<path>`` (+ ``-wal``, ``-shm``): the SQLCipher database, every page encrypted with
  the data key (DEK), WAL included.
- ``<path>.key``: the DEK wrapped by the key-encryption key (see :mod:`client_sdk.keys`).
- ``<path>.key.next``: exists only while a rekey is in flight (see :meth:`rekey`).

Invariants:
- The DEK is checked as soon as the database opens: a wrong key raises
  :class:`DatabaseKeyMismatchError` at open, never "file is not a database" later.
- ``search_index`` mirrors the live rows of ``records`` within every transaction;
  write records only through :meth:`LocalDatabase.upsert_records` and
  :meth:`LocalDatabase.purge_records` (a direct ``INSERT INTO records`` would leave
  search stale).
- :meth:`LocalDatabase.wipe` destroys the wrapped key before it deletes any database
  file, so a crash mid-wipe leaves only undecryptable bytes.
- Migrations are versioned rows in ``schema_migrations``; each applies in its own
  transaction, at most once. Versions 1-99 belong to this module; other SDK
  components pass theirs (100 and up) to :meth:`LocalDatabase.open`.

sqlite-utils accepts the sqlcipher3 connection as a DB-API connection as it is
(``sqlite_utils.Database(conn)``): everything goes through ``conn.execute``. One
caveat: the few places where sqlite-utils catches ``sqlite3.OperationalError``
(``Table.drop(ignore=True)``, ``View.drop(ignore=True)``) do not catch sqlcipher3's
own exception class, so use ``DROP TABLE IF EXISTS`` instead of ``ignore=True``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias, cast

import msgspec
import sqlcipher3
import sqlite_utils

from client_sdk import keys, search
from client_sdk.errors import (
    DatabaseBusyError,
    DatabaseClosedError,
    DatabaseKeyMismatchError,
    InvalidRecordError,
    InvalidStateValueError,
    KeyFileExistsError,
    LocalDatabaseError,
    MigrationError,
    RecordExistsError,
    RekeyError,
    SchemaTooNewError,
)
from client_sdk.keys import Kek
from sync_protocol.entities import SCHEMAS, EntitySchema

_log = logging.getLogger(__name__)

DEFAULT_CACHE_KIB: Final = 8192
DEFAULT_BATCH_SIZE: Final = 2000
FIRST_EXTENSION_MIGRATION: Final = 100
_IDENT: Final = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_FIELD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_@.\-]{0,127}\Z")

StateValue: TypeAlias = str | bytes | int | float | None
Connection: TypeAlias = sqlite3.Connection
"""Typing alias: at run time the connection is a ``sqlcipher3`` one (same DB-API)."""


class LocalRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A replicated record as the device stores it.

    ``fields`` hold JSON-compatible values (msgspec encodes datetimes, UUIDs and
    Decimals as strings, so they read back as strings). ``deleted`` marks a
    tombstone: kept for sync, never searchable.
    """

    entity: str
    id: str
    version: int
    seq: int = 0
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    deleted: bool = False
    channels: tuple[str, ...] = ()


class RecordLike(Protocol):
    """What :func:`prepare_records` reads: a :class:`LocalRecord`, or a
    ``sync_protocol.records.RecordChange`` as it was decoded (no copy needed)."""

    @property
    def entity(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...
    @property
    def deleted(self) -> bool: ...
    @property
    def channels(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class PreparedGroup:
    """The records of one entity in a :class:`PreparedRecords`, as JSON arrays."""

    entity: str
    count: int
    rows: bytes
    """``[[id, version, seq, fields, channels_json], ...]``."""
    documents: bytes | None
    """``[[name, city, email, subject, phone], ...]``, one per row; None if the entity is
    not searchable."""


@dataclass(frozen=True, slots=True)
class PreparedRecords:
    """New live records, validated and encoded by :func:`prepare_records`, ready for
    :meth:`LocalDatabase.insert_prepared`.

    Attributes:
        groups: one per entity, in entity-code order (so search rowids only grow).
        fields_json: each record's fields as stored, in input order: canonical JSON
            (keys sorted, as ``sync_protocol.checksum.record_hash`` encodes them).
        count: number of records.
    """

    groups: tuple[PreparedGroup, ...]
    fields_json: tuple[bytes, ...]
    count: int


def _encoded(
    entity: str,
    id_: Any,
    version: Any,
    seq: Any,
    fields: Any,
    channels: Sequence[str],
    channel_cache: dict[tuple[str, ...], str],
) -> tuple[bytes, str]:
    """A record's fields as stored (canonical JSON) and its channels as JSON, once checked.

    ``channel_cache`` keeps the JSON of channel lists already seen in the batch: records
    share few of them.

    Raises:
        InvalidRecordError: A bad id, version or sequence, or fields that are not a dict
            of JSON values.
    """
    if not isinstance(id_, str) or not id_:
        raise InvalidRecordError(f"record id must be a non-empty string: {id_!r}")
    if type(version) is not int or version < 0 or type(seq) is not int:
        raise InvalidRecordError(f"bad version/seq on {entity}/{id_}")
    if not isinstance(fields, dict):
        raise InvalidRecordError(f"fields of {entity}/{id_} must be a dict")
    try:
        encoded = _fields_encoder.encode(fields)
        key = channels if type(channels) is tuple else tuple(channels)
        channels_json = channel_cache.get(key)
        if channels_json is None:
            channels_json = channel_cache[key] = _json_encoder.encode(key).decode()
    except (TypeError, UnicodeError, msgspec.EncodeError) as e:
        raise InvalidRecordError(f"cannot encode {entity}/{id_}: {e}") from e
    return encoded, channels_json


def prepare_records(records: Iterable[RecordLike]) -> PreparedRecords:
    """Validate and encode records that are not stored yet (a bootstrap's batches).

    Touches no database: the CPU work of a batch (validation, JSON, search documents)
    can run on another thread while the previous batch is being written.

    Raises:
        InvalidRecordError: A record is malformed, is a tombstone, or its key repeats.
    """
    groups: dict[str, tuple[list[tuple[Any, ...]], list[search.SearchDocument] | None]] = {}
    builders: dict[str, Callable[[Mapping[str, Any]], search.SearchDocument] | None] = {}
    seen: dict[str, set[str]] = {}
    fields_json: list[bytes] = []
    channel_cache: dict[tuple[str, ...], str] = {}
    encode, raw = _json_encoder.encode, msgspec.Raw
    for r in records:
        entity, id_, version, seq, fields, channels = (
            r.entity,
            r.id,
            r.version,
            r.seq,
            r.fields,
            r.channels,
        )
        group = groups.get(entity)
        if group is None:
            _entity_literal(entity)
            builders[entity] = build = search.document_builder(entity)
            group = groups[entity] = ([], None if build is None else [])
            ids = seen[entity] = set()
        else:
            build, ids = builders[entity], seen[entity]
        encoded, channels_json = _encoded(
            entity, id_, version, seq, fields, channels, channel_cache
        )
        if r.deleted:
            raise InvalidRecordError(f"{entity}/{id_} is a tombstone, not a new record")
        if id_ in ids:
            raise InvalidRecordError(f"{entity}/{id_} appears twice")
        ids.add(id_)
        fields_json.append(encoded)
        rows, documents = group
        rows.append((id_, version, seq, raw(encoded), channels_json))
        if documents is not None and build is not None:
            documents.append(build(fields))
    prepared = []
    try:
        for entity in sorted(groups, key=search.entity_code):
            rows, documents = groups[entity]
            prepared.append(
                PreparedGroup(
                    entity=entity,
                    count=len(rows),
                    rows=encode(rows),
                    documents=None if documents is None else encode(documents),
                )
            )
    except (TypeError, UnicodeError, msgspec.EncodeError) as e:
        raise InvalidRecordError(f"cannot encode a record: {e}") from e
    return PreparedRecords(tuple(prepared), tuple(fields_json), len(fields_json))


@dataclass(frozen=True)
class Migration:
    """One schema step: SQL statements and/or a function, applied in one transaction.

    Attributes:
        version: Unique, strictly increasing within a migration list.
        name: Short label; stored, and checked on later opens.
        statements: SQL run in order.
        apply: Optional function run after the statements (data rewrites).
    """

    version: int
    name: str
    statements: tuple[str, ...] = ()
    apply: Callable[[Connection], None] | None = None


def field_expression(field: str) -> str:
    """The SQL expression that reads a record field; indexes and queries must share it.

    Raises:
        InvalidRecordError: The field name has characters outside [A-Za-z0-9_@.-].
    """
    if not isinstance(field, str) or not _FIELD.match(field):
        raise InvalidRecordError(f"invalid field name {field!r}")
    return f"json_extract(fields, '$.\"{field}\"')"


def _entity_literal(entity: str) -> str:
    if not isinstance(entity, str) or not _IDENT.match(entity):
        raise InvalidRecordError(f"invalid entity name {entity!r}")
    return f"'{entity}'"


def field_index_name(entity: str, field: str) -> str:
    """The name of the partial index on one entity's field (see :func:`field_index_statement`)."""
    return f"records_{entity}_{re.sub(r'[^A-Za-z0-9_]', '_', field)}"


def field_index_statement(entity: str, field: str) -> str:
    """``CREATE INDEX IF NOT EXISTS`` for a partial expression index on one entity's field.

    Used by :meth:`LocalDatabase.find_records` (which writes the same expression and
    a literal entity, so the planner can use the partial index).
    """
    return (
        f'CREATE INDEX IF NOT EXISTS "{field_index_name(entity, field)}"'
        f" ON records({field_expression(field)}) WHERE entity = {_entity_literal(entity)}"
    )


# Fields indexed for equality lookups that are not links between records: accounts by
# city. Checked against the entity schemas when the module loads.
INDEXED_PLAIN_FIELDS: Final[tuple[tuple[str, str], ...]] = (("account", "address1_city"),)


def schema_field_indexes(
    schemas: Mapping[str, EntitySchema] = SCHEMAS,
    plain: Iterable[tuple[str, str]] = INDEXED_PLAIN_FIELDS,
) -> tuple[tuple[str, str], ...]:
    """The (entity, field) pairs the SDK indexes, derived from the entity schemas.

    Every ``lookup`` field whose target is a synced entity (the records linked to a
    record: contacts of an account, opportunities and quotes of a customer, quotes of an
    opportunity, appointments regarding a record, ...), under the name synced records
    carry it (its navigation name, e.g. ``parentcustomerid``), plus the ``plain``
    fields. Lookups to entities the device does not hold (``ownerid``: systemuser,
    currencies) are not indexed. In schema order: entities, then their fields.

    Raises:
        ValueError: A ``plain`` pair names an entity or a field the schemas lack.
    """
    wanted = set(plain)
    for entity, name in wanted:
        if entity not in schemas or name not in schemas[entity].fields:
            raise ValueError(f"indexed field {entity}.{name} is not in the entity schema")
    pairs = []
    for entity, s in schemas.items():
        for name, spec in s.fields.items():
            linked = spec.kind == "lookup" and any(t in schemas for t in spec.target)
            if linked or (entity, name) in wanted:
                pairs.append((entity, name))
    return tuple(pairs)


DEFAULT_FIELD_INDEXES: Final[tuple[tuple[str, str], ...]] = schema_field_indexes()
"""Per-entity partial indexes every replica has (created at open if missing)."""

# What migration 3 created until schema version 5: lookups under their Dynamics Web API
# names (``_parentcustomerid_value``), which synced records never carry, so all their
# entries had NULL keys. Frozen: migration 3 must stay what older replicas applied.
LEGACY_FIELD_INDEXES: Final[tuple[tuple[str, str], ...]] = (
    ("account", "address1_city"),
    ("contact", "_parentcustomerid_value"),
    ("opportunity", "_parentaccountid_value"),
    ("opportunity", "_customerid_value"),
    ("quote", "_opportunityid_value"),
    ("appointment", "_regardingobjectid_value"),
)


def _rebuild_field_indexes(conn: Connection) -> None:
    """Migration 5: replace the legacy field indexes by :data:`DEFAULT_FIELD_INDEXES`.

    Runs in the migration's transaction (DDL is transactional in SQLite), so a crash
    leaves either the old indexes or the new ones. ``CREATE INDEX`` builds the entries
    from the stored records (one scan of ``records`` per index). An index left deferred
    by an interrupted bulk load is rebuilt afterwards by the open; a legacy one is
    forgotten instead.
    """
    current = {field_index_name(e, f) for e, f in DEFAULT_FIELD_INDEXES}
    for entity, field in LEGACY_FIELD_INDEXES:
        name = field_index_name(entity, field)
        if name not in current:
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
            conn.execute("DELETE FROM deferred_indexes WHERE name = ?", (name,))
    _create_missing_field_indexes(conn)


def _missing_field_indexes(conn: Connection) -> list[tuple[str, str]]:
    """The :data:`DEFAULT_FIELD_INDEXES` a replica lacks (deferred ones are not missing)."""
    existing = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'"
            " UNION ALL SELECT name FROM deferred_indexes"
        )
    }
    return [(e, f) for e, f in DEFAULT_FIELD_INDEXES if field_index_name(e, f) not in existing]


def _create_missing_field_indexes(conn: Connection) -> int:
    """Create the missing default field indexes, inside the caller's transaction."""
    missing = _missing_field_indexes(conn)
    for entity, field in missing:
        conn.execute(field_index_statement(entity, field))
    return len(missing)


def _ensure_field_indexes(conn: Connection) -> int:
    """At open: create default field indexes added since the replica was migrated.

    :data:`DEFAULT_FIELD_INDEXES` follows the entity schemas, so a lookup added there
    gets its index on every replica, not only on those created afterwards. A read when
    nothing is missing; otherwise one transaction.
    """
    if not _missing_field_indexes(conn):
        return 0
    with _atomic(conn):
        return _create_missing_field_indexes(conn)


# The columns of ``records`` since migration 1 (which added the key as a constraint).
_RECORDS_TABLE_DDL: Final = (
    "doc INTEGER PRIMARY KEY, entity TEXT NOT NULL, id TEXT NOT NULL,"
    " version INTEGER NOT NULL, seq INTEGER NOT NULL DEFAULT 0, fields BLOB NOT NULL,"
    " deleted INTEGER NOT NULL DEFAULT 0, channels TEXT NOT NULL DEFAULT '[]'"
)
RECORDS_KEY_INDEX: Final = "records_key"
_RECORDS_KEY_SQL: Final = f'CREATE UNIQUE INDEX "{RECORDS_KEY_INDEX}" ON records(entity, id)'


def _records_key_as_index(conn: Connection) -> None:
    """Migration 6: the ``(entity, id)`` key as a named unique index, not a constraint.

    A constraint's index cannot be dropped, a named one can: a first bootstrap defers
    it (:meth:`LocalDatabase.defer_indexes`) and builds it once, by sorting, at the end,
    because a snapshot arrives in sequence order, i.e. random key order, and inserting
    random keys one by one is what made that load 3x slower. SQLite cannot drop a
    constraint, so the table is copied; the other indexes are re-created from their SQL.
    """
    others = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL"
        )
    ]
    conn.execute(f"CREATE TABLE records_v6({_RECORDS_TABLE_DDL})")
    conn.execute(
        "INSERT INTO records_v6(doc, entity, id, version, seq, fields, deleted, channels)"
        " SELECT doc, entity, id, version, seq, fields, deleted, channels FROM records"
    )
    conn.execute("DROP TABLE records")
    conn.execute("ALTER TABLE records_v6 RENAME TO records")
    conn.execute(_RECORDS_KEY_SQL)
    for sql in others:
        conn.execute(sql)


BASE_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        version=1,
        name="records_and_sync_state",
        statements=(
            # A rowid table, not WITHOUT ROWID: rows are ~0.5 KiB and ids are random
            # UUIDs, so a clustered (entity, id) key made every insert land on a random
            # wide leaf page (16k rows/s raw at 100k rows with an 8 MiB cache, vs 77k/s
            # for rowid appends plus a narrow unique index). ``doc`` is the rowid:
            # entity_code << 40 | n (see client_sdk.search), also the search rowid.
            f"CREATE TABLE records({_RECORDS_TABLE_DDL}, UNIQUE (entity, id))",
            """CREATE TABLE doc_counter(
                entity_code INTEGER PRIMARY KEY,
                last_doc INTEGER NOT NULL
            )""",
            """CREATE TABLE sync_state(
                key TEXT PRIMARY KEY,
                value
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(version=2, name="search_index", statements=search.SEARCH_SCHEMA),
    Migration(
        version=3,
        name="record_field_indexes",
        statements=tuple(field_index_statement(e, f) for e, f in LEGACY_FIELD_INDEXES),
    ),
    Migration(
        version=4,
        name="deferred_indexes",
        statements=(
            """CREATE TABLE deferred_indexes(
                name TEXT PRIMARY KEY,
                sql TEXT NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(version=5, name="field_indexes_on_synced_names", apply=_rebuild_field_indexes),
    Migration(version=6, name="records_key_as_index", apply=_records_key_as_index),
)

_UPSERT_RECORD_SQL: Final = (
    "INSERT INTO records(doc, entity, id, version, seq, fields, deleted, channels)"
    " VALUES (?, ?, ?, ?, ?, jsonb(?), ?, ?)"
    " ON CONFLICT(entity, id) DO UPDATE SET version = excluded.version,"
    " seq = excluded.seq, fields = excluded.fields, deleted = excluded.deleted,"
    " channels = excluded.channels"
)
_RECORD_COLUMNS: Final = "entity, id, version, seq, json(fields), deleted, channels"
_INSERT_RECORDS_JSON_SQL: Final = (
    "INSERT INTO records(doc, entity, id, version, seq, fields, deleted, channels)"
    " SELECT ?1 + key, ?2, value ->> 0, value ->> 1, value ->> 2,"
    " jsonb_extract(value, '$[3]'), 0, value ->> 4 FROM jsonb_each(?3)"
)

_json_encoder = msgspec.json.Encoder()
# Fields are stored with their keys sorted: the canonical form sync_protocol.checksum
# hashes, so a bulk load hashes the bytes it stores instead of encoding them twice.
_fields_encoder = msgspec.json.Encoder(order="sorted")
_fields_decoder = msgspec.json.Decoder(dict[str, Any])
_channels_decoder = msgspec.json.Decoder(tuple[str, ...])


def key_path_for(path: str | os.PathLike[str]) -> Path:
    """Where the key file of the database at ``path`` lives."""
    return Path(f"{os.fspath(path)}.key")


def pending_key_path_for(path: str | os.PathLike[str]) -> Path:
    """Where the next key file lives while a rekey is in flight."""
    return Path(f"{os.fspath(path)}.key.next")


def database_files(path: str | os.PathLike[str]) -> tuple[Path, ...]:
    """The database file and its SQLite side files."""
    base = os.fspath(path)
    return tuple(Path(base + suffix) for suffix in ("", "-wal", "-shm", "-journal"))


def _remove_database_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def wipe_database(path: str | os.PathLike[str]) -> None:
    """Crypto-shred a local database without needing its key (e.g. device revoked).

    The wrapped key (and any in-flight rekey key) is overwritten and deleted
    first; only then are the database, ``-wal`` and ``-shm`` files deleted. The
    database must not be open (use :meth:`LocalDatabase.wipe` for an open one).
    """
    for key_file in (key_path_for(path), pending_key_path_for(path)):
        keys.shred_key_file(key_file)
        # A crash inside write_key_file can leave its temp file (a wrapped key too).
        for leftover in key_file.parent.glob(f".{glob.escape(key_file.name)}.*.tmp"):
            keys.shred_key_file(leftover)
    for file in database_files(path):
        _remove_database_file(file)


def _is_not_a_database(error: Exception) -> bool:
    return isinstance(error, sqlcipher3.DatabaseError) and "not a database" in str(error)


def _connect(path: Path, data_key: keys.DataKey) -> Connection:
    """Open and key a connection; verify the key by reading the schema."""
    conn = sqlcipher3.connect(str(path), check_same_thread=False)
    try:
        # SQLCipher logs every failed HMAC to stderr; a wrong key is reported as a
        # typed error instead.
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = {data_key.sqlcipher_pragma_value()}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as e:
        conn.close()
        if _is_not_a_database(e):
            raise DatabaseKeyMismatchError(
                "the data key does not decrypt this database (or it is not a database)"
            ) from e
        raise LocalDatabaseError(f"cannot open database: {e}") from e
    return cast(Connection, conn)


def _configure(conn: Connection, cache_kib: int) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LocalDatabaseError(f"could not enable WAL (journal_mode={mode})")
    for pragma in (
        "synchronous = NORMAL",  # WAL + NORMAL: durable across app crashes, fast commits
        f"cache_size = -{int(cache_kib)}",
        "mmap_size = 0",  # SQLCipher must decrypt every page; mmap would bypass it
        "temp_store = MEMORY",  # temp tables and sorts never hit disk unencrypted
        "foreign_keys = ON",
        "busy_timeout = 5000",
        "journal_size_limit = 8388608",  # shrink the WAL back after big bootstraps
    ):
        conn.execute(f"PRAGMA {pragma}")


def _validate_migrations(migrations: Sequence[Migration]) -> None:
    previous = 0
    for m in migrations:
        if not isinstance(m.version, int) or m.version <= previous:
            raise MigrationError(f"migration versions must increase: {m.version!r}")
        if not m.name:
            raise MigrationError(f"migration {m.version} has no name")
        previous = m.version


def _migrate(conn: Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply missing migrations in order; returns the versions applied now."""
    _validate_migrations(migrations)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
    )
    if conn.in_transaction:
        conn.execute("COMMIT")
    applied: dict[int, str] = dict(conn.execute("SELECT version, name FROM schema_migrations"))
    known_max = migrations[-1].version if migrations else 0
    if applied and max(applied) > known_max:
        raise SchemaTooNewError(
            f"database schema version {max(applied)} is newer than this app's {known_max}"
        )
    done: list[int] = []
    for m in migrations:
        if m.version in applied:
            if applied[m.version] != m.name:
                raise MigrationError(
                    f"migration {m.version} was applied as {applied[m.version]!r}, not {m.name!r}"
                )
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in m.statements:
                conn.execute(statement)
            if m.apply is not None:
                m.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations(version, name) VALUES (?, ?)", (m.version, m.name)
            )
            conn.execute("COMMIT")
        except Exception as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(f"migration {m.version} ({m.name}) failed: {e}") from e
        done.append(m.version)
    return done


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _row_to_record(row: tuple[Any, ...]) -> LocalRecord:
    entity, id_, version, seq, fields, deleted, channels = row
    return LocalRecord(
        entity=entity,
        id=id_,
        version=version,
        seq=seq,
        fields=_fields_decoder.decode(fields),
        deleted=bool(deleted),
        channels=_channels_decoder.decode(channels),
    )


def allocate_docs(conn: Connection, entity: str, count: int) -> int:
    """Reserve ``count`` new ``records.doc`` values for an entity; returns the first.

    Docs are ``entity_code << 40 | n`` with ``n`` from a per-code counter, never
    reused (a purged record's doc could otherwise resurface in a stale search hit).
    Must run inside the caller's write transaction.
    """
    code = search.entity_code(entity)
    low, high = search.doc_range(code)
    # One statement (nothing is written when the range would overflow).
    rows = conn.execute(
        "INSERT INTO doc_counter(entity_code, last_doc) SELECT ?1, ?2 + ?3 WHERE ?2 + ?3 <= ?4"
        " ON CONFLICT(entity_code) DO UPDATE SET last_doc = last_doc + ?3"
        " WHERE last_doc + ?3 <= ?4 RETURNING last_doc",
        (code, low, count, high),
    ).fetchall()
    if not rows:
        raise LocalDatabaseError(f"document ids of entity code {code} exhausted")
    return int(rows[0][0]) - count + 1


def _existing_docs(conn: Connection, entity: str, ids: list[str]) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT id, doc FROM records WHERE entity = ?"
            " AND id IN (SELECT value FROM json_each(?))",
            (entity, _json_encoder.encode(ids).decode()),
        ).fetchall()
    )


@contextlib.contextmanager
def _atomic(conn: Connection) -> Iterator[None]:
    """A write transaction, or a savepoint inside the caller's one."""
    nested = conn.in_transaction
    conn.execute("SAVEPOINT crmsync_atomic" if nested else "BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            if nested:
                conn.execute("ROLLBACK TO crmsync_atomic")
                conn.execute("RELEASE crmsync_atomic")
            else:
                conn.execute("ROLLBACK")
        raise
    conn.execute("RELEASE crmsync_atomic" if nested else "COMMIT")


def _defer_indexes(conn: Connection, entity: str | None) -> int:
    """Drop indexes of ``records``, remembering them: the partial ones scoped to
    ``entity``, or every one (the unique key included) when ``entity`` is None.

    Runs inside the caller's transaction, so the drop and its record commit together.
    """
    scoped = (
        re.compile(rf"\bWHERE\s+entity\s*=\s*'{re.escape(entity)}'\s*$", re.IGNORECASE)
        if entity is not None
        else None
    )
    dropped = 0
    for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master"
        " WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL"
    ).fetchall():
        if scoped is None or scoped.search(sql):
            conn.execute(
                "INSERT OR REPLACE INTO deferred_indexes(name, sql) VALUES (?, ?)", (name, sql)
            )
            conn.execute(f'DROP INDEX "{name}"')
            dropped += 1
    return dropped


def _key_deferred(conn: Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM deferred_indexes WHERE name = ?", (RECORDS_KEY_INDEX,)
        ).fetchone()
        is not None
    )


def _restore_deferred_indexes(conn: Connection) -> tuple[int, int]:
    """Re-create indexes dropped by a bulk load (a sort each: far cheaper than inserts).

    Returns:
        ``(indexes rebuilt, records removed as duplicates)``: without its unique key a
        load may have stored a record twice; the copy with the higher ``seq`` (then the
        later one) stays.
    """
    # The key first: the duplicates it removes are then absent from the other indexes.
    pending = conn.execute(
        "SELECT name, sql FROM deferred_indexes ORDER BY name != ?", (RECORDS_KEY_INDEX,)
    ).fetchall()
    if not pending:
        return 0, 0
    duplicates = 0
    with _atomic(conn):
        for name, sql in pending:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
            ).fetchone()
            if exists is None:
                try:
                    conn.execute(sql)
                except sqlcipher3.IntegrityError:
                    if name != RECORDS_KEY_INDEX:
                        raise
                    duplicates = _remove_duplicate_records(conn)
                    conn.execute(sql)
            conn.execute("DELETE FROM deferred_indexes WHERE name = ?", (name,))
    return len(pending), duplicates


def _remove_duplicate_records(conn: Connection) -> int:
    """Keep one row per ``(entity, id)`` (highest ``seq``, then latest), and its search doc."""
    removed = conn.execute(
        "DELETE FROM records WHERE doc IN (SELECT doc FROM (SELECT doc, row_number() OVER"
        " (PARTITION BY entity, id ORDER BY seq DESC, doc DESC) AS n FROM records)"
        " WHERE n > 1) RETURNING doc, entity"
    ).fetchall()
    conn.executemany(
        search.DELETE_DOCUMENT_SQL, [(doc,) for doc, e in removed if search.entity_code(e)]
    )
    return len(removed)


class LocalDatabase:
    """An open, unlocked local replica. Not thread-safe: use from one thread at a time.

    Create with :meth:`create` (first run) or :meth:`open`; close with :meth:`close`
    or a ``with`` block.
    """

    def __init__(
        self, path: Path, conn: Connection, key_id: str, applied_migrations: list[int]
    ) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.path = path
        self._conn: Connection | None = conn
        self._key_id = key_id
        self._db: sqlite_utils.Database | None = None
        self._savepoints = itertools.count()
        self._bulk_depth = 0
        self._bulk_entities: set[str] = set()
        self.migrations_applied_at_open = applied_migrations

    # --- lifecycle -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        kek: Kek,
        *,
        migrations: Sequence[Migration] = (),
        cache_kib: int = DEFAULT_CACHE_KIB,
    ) -> LocalDatabase:
        """Create a new key file and database (first run on a device).

        Leftover database files without a key file (an interrupted wipe) are
        removed first: without their key they are undecryptable anyway.

        Args:
            path: Database file path; the key file goes to ``<path>.key``.
            kek: Passphrase or keystore key to wrap the new DEK with.
            migrations: Extra migrations (versions >= 100) after the base schema.
            cache_kib: SQLite page cache size.

        Raises:
            KeyFileExistsError: A database already exists here (use :meth:`open`).
        """
        db_path = Path(path)
        key_path = key_path_for(db_path)
        if key_path.exists():
            raise KeyFileExistsError(f"a database key already exists at {key_path}")
        keys.shred_key_file(pending_key_path_for(db_path))
        for file in database_files(db_path):
            _remove_database_file(file)
        data_key = keys.create_key_file(key_path, kek)
        return cls._finish_open(db_path, data_key, migrations, cache_kib)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        kek: Kek,
        *,
        migrations: Sequence[Migration] = (),
        cache_kib: int = DEFAULT_CACHE_KIB,
    ) -> LocalDatabase:
        """Unlock and open an existing database, finishing an interrupted rekey if any.

        Raises:
            KeyFileNotFoundError: No key file (never created, or wiped).
            WrongPassphraseError / WrongKeystoreKeyError / KekKindMismatchError: The
                KEK does not unlock the key file.
            DatabaseKeyMismatchError: The key file's DEK does not decrypt the database.
            SchemaTooNewError: A newer app version migrated this database.
            MigrationError: A migration failed (nothing of it was applied).
        """
        db_path = Path(path)
        data_key = keys.unlock_key_file(key_path_for(db_path), kek)
        data_key = cls._recover_pending_rekey(db_path, data_key, kek)
        return cls._finish_open(db_path, data_key, migrations, cache_kib)

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """Whether a database (its key file) exists at ``path``."""
        return key_path_for(path).exists()

    @staticmethod
    def _recover_pending_rekey(db_path: Path, data_key: keys.DataKey, kek: Kek) -> keys.DataKey:
        pending = pending_key_path_for(db_path)
        if not pending.exists():
            return data_key
        try:
            _connect(db_path, data_key).close()
        except DatabaseKeyMismatchError:
            # The rekey committed but the key file swap did not happen: finish it.
            next_key = keys.unlock_key_file(pending, kek)
            _connect(db_path, next_key).close()
            keys.replace_key_file(pending, key_path_for(db_path))
            _log.info("finished an interrupted rekey")
            return next_key
        # The database still uses the current key: the rekey never happened.
        keys.shred_key_file(pending)
        return data_key

    @classmethod
    def _finish_open(
        cls,
        db_path: Path,
        data_key: keys.DataKey,
        migrations: Sequence[Migration],
        cache_kib: int,
    ) -> LocalDatabase:
        for m in migrations:
            if m.version < FIRST_EXTENSION_MIGRATION:
                raise MigrationError(
                    f"extra migration versions start at {FIRST_EXTENSION_MIGRATION}: {m.version}"
                )
        conn = _connect(db_path, data_key)
        try:
            _configure(conn, cache_kib)
            applied = _migrate(conn, (*BASE_MIGRATIONS, *migrations))
            # A bulk load that never finished (app killed mid-bootstrap) left its
            # indexes dropped: queries would still be right, only slow. Rebuild now.
            _restore_deferred_indexes(conn)
            _ensure_field_indexes(conn)
        except BaseException:
            conn.close()
            raise
        return cls(db_path, conn, data_key.key_id, applied)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            conn, self._conn, self._db = self._conn, None, None
            conn.close()

    def __enter__(self) -> LocalDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- accessors -------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        """The key file that wraps this database's DEK."""
        return key_path_for(self.path)

    @property
    def key_id(self) -> str:
        """Id of the current data key (changes on :meth:`rekey`, not on KEK changes)."""
        return self._key_id

    @property
    def closed(self) -> bool:
        """Whether the database was closed or wiped."""
        return self._conn is None

    @property
    def conn(self) -> Connection:
        """The raw sqlcipher3 connection (legacy transaction control)."""
        if self._conn is None:
            raise DatabaseClosedError()
        return self._conn

    @property
    def db(self) -> sqlite_utils.Database:
        """A ``sqlite_utils.Database`` over the same connection (for app tables)."""
        if self._db is None:
            self._db = sqlite_utils.Database(self.conn, execute_plugins=False)
        return self._db

    def schema_version(self) -> int:
        """Highest applied migration version."""
        row = self.conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE``); nested calls use savepoints.

        Everything done inside commits together, which is how the sync engine stores
        a pulled page and its checkpoint atomically.
        """
        conn = self.conn
        if conn.in_transaction:
            name = f"crmsync_sp_{next(self._savepoints)}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                raise
            conn.execute(f"RELEASE {name}")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Defer the per-entity field indexes while loading many records (bootstrap).

        Inside, the first ``upsert_records`` of each entity drops that entity's partial
        indexes (``... WHERE entity = '<entity>'``, e.g. contacts by parent account);
        they are rebuilt once, by sorting, when the outermost ``bulk_load`` exits.
        Their keys are random, so maintaining them row by row rewrites pages all over
        them in every transaction and the load slows down as the replica grows, while
        ``records`` and ``search_index`` only append (a snapshot arrives in key order).
        Queries inside stay correct, only index-less. Re-entrant; may span many
        transactions. If the app dies inside, the next :meth:`open` rebuilds them.
        """
        self.conn  # noqa: B018 - raises DatabaseClosedError when closed
        self._bulk_depth += 1
        try:
            yield
        finally:
            self._bulk_depth -= 1
            if self._bulk_depth == 0:
                self._bulk_entities.clear()
                if self._conn is not None:
                    _restore_deferred_indexes(self._conn)

    def defer_indexes(self) -> int:
        """Drop every index of ``records``, its unique key included, for a load into an
        empty replica (a first bootstrap); returns how many were dropped.

        A snapshot arrives in sequence order, so its keys are random and maintaining
        the indexes row by row rewrites pages all over them. Without them the rows only
        append; :meth:`restore_indexes` builds each once, by sorting. Meanwhile
        :meth:`insert_prepared` cannot see a record stored twice (the rebuild keeps the
        copy with the higher ``seq``), lookups scan, and the first
        :meth:`upsert_records` or :meth:`purge_records` rebuilds them before it writes.
        If the app dies first, the next :meth:`open` rebuilds them. Joins the caller's
        transaction if one is open.
        """
        with self.transaction() as conn:
            return _defer_indexes(conn, None)

    def restore_indexes(self) -> int:
        """Rebuild the indexes :meth:`defer_indexes` (or :meth:`bulk_load`) dropped.

        Returns:
            Number of records removed because they were stored twice.
        """
        with self.transaction() as conn:
            return _restore_deferred_indexes(conn)[1]

    def _require_key(self, conn: Connection) -> None:
        # Upserts name the key in ON CONFLICT, and purges must meet every copy.
        if _key_deferred(conn):
            _restore_deferred_indexes(conn)

    # --- records ---------------------------------------------------------------------

    def upsert_records(
        self, records: Iterable[LocalRecord], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> int:
        """Insert or overwrite records and their search documents in one transaction.

        The bulk path of bootstrap: rows are validated, encoded and written with
        ``executemany`` in batches (memory stays flat for a streamed iterable).
        Later duplicates of an (entity, id) win. No version check happens here:
        deciding which version wins is the sync engine's job.

        Args:
            records: Records to write (a generator is fine).
            batch_size: Rows per ``executemany``.

        Returns:
            Number of records written.

        Raises:
            InvalidRecordError: A record is malformed; nothing of the call is written.
        """
        total = 0
        with self.transaction() as conn:
            self._require_key(conn)
            batch: dict[tuple[str, str], LocalRecord] = {}
            for record in records:
                if not isinstance(record, LocalRecord):
                    raise InvalidRecordError(f"expected LocalRecord, got {type(record).__name__}")
                batch[(record.entity, record.id)] = record
                if len(batch) >= batch_size:
                    total += self._write_batch(conn, list(batch.values()))
                    batch.clear()
            if batch:
                total += self._write_batch(conn, list(batch.values()))
        return total

    def insert_prepared(self, prepared: PreparedRecords) -> int:
        """Insert records that are not stored yet, and their search documents.

        The bootstrap path (see :func:`prepare_records`): one ``INSERT ... SELECT`` from
        a JSON array per entity for the records and one for their documents, so SQLite
        (and SQLCipher's page encryption) runs a whole batch without taking the GIL
        back row by row, and other Python threads do not stall it. Joins the caller's
        transaction if one is open.

        Returns:
            Number of records written.

        Raises:
            RecordExistsError: One of them is already stored; nothing was written.
                (Not while :meth:`defer_indexes` has the key dropped.)
        """
        with self.transaction() as conn:
            for group in prepared.groups:
                if self._bulk_depth and group.entity not in self._bulk_entities:
                    _defer_indexes(conn, group.entity)
                    self._bulk_entities.add(group.entity)
                first = allocate_docs(conn, group.entity, group.count)
                try:
                    conn.execute(_INSERT_RECORDS_JSON_SQL, (first, group.entity, group.rows))
                except sqlcipher3.IntegrityError as e:
                    raise RecordExistsError(
                        f"a {group.entity} record inserted as new is already stored"
                    ) from e
                if group.documents is not None:
                    conn.execute(search.INSERT_DOCUMENTS_JSON_SQL, (first, group.documents))
        return prepared.count

    def _write_batch(self, conn: Connection, batch: list[LocalRecord]) -> int:
        # Every record gets a freshly allocated doc, contiguous per entity; the upsert
        # keeps the old doc on conflict. A rowid-range read then tells which records
        # were new (all of them during a bootstrap, so no per-id lookup is needed).
        counts: dict[str, int] = {}
        for r in batch:
            n = counts.get(r.entity)
            if n is None:
                _entity_literal(r.entity)
                n = 0
            counts[r.entity] = n + 1
        if self._bulk_depth:
            for entity in counts.keys() - self._bulk_entities:
                _defer_indexes(conn, entity)
                self._bulk_entities.add(entity)
        first_doc = {e: allocate_docs(conn, e, n) for e, n in counts.items()}
        next_doc = dict(first_doc)
        record_rows = []
        proposed: list[int] = []
        channel_cache: dict[tuple[str, ...], str] = {}
        for r in batch:
            encoded, channels = _encoded(
                r.entity, r.id, r.version, r.seq, r.fields, r.channels, channel_cache
            )
            fields_json = encoded.decode()
            doc = next_doc[r.entity]
            next_doc[r.entity] = doc + 1
            proposed.append(doc)
            record_rows.append(
                (doc, r.entity, r.id, r.version, r.seq, fields_json, int(r.deleted), channels)
            )
        conn.executemany(_UPSERT_RECORD_SQL, record_rows)

        actual: dict[tuple[str, str], int] = {}
        for entity, first in first_doc.items():
            last = next_doc[entity] - 1
            inserted = {
                doc
                for (doc,) in conn.execute(
                    "SELECT doc FROM records WHERE doc BETWEEN ? AND ?", (first, last)
                )
            }
            if len(inserted) == last - first + 1:
                continue
            updated = [
                r.id
                for r, doc in zip(batch, proposed, strict=True)
                if r.entity == entity and doc not in inserted
            ]
            for id_, doc in _existing_docs(conn, entity, updated).items():
                actual[(entity, id_)] = doc

        new_documents = []
        replaced_documents = []
        deleted_docs = []
        document_for = search.document_for
        searchable = search.SEARCHABLE_ENTITIES
        for r, doc in zip(batch, proposed, strict=True):
            if r.entity not in searchable:
                continue
            old_doc = actual.get((r.entity, r.id)) if actual else None
            if r.deleted:
                if old_doc is not None:
                    deleted_docs.append((old_doc,))
                continue
            document = document_for(r.entity, r.fields)
            if document is None:
                continue
            if old_doc is None:
                new_documents.append((doc, *document))
            else:
                replaced_documents.append((old_doc, *document))
        # FTS5 flushes its pending-terms buffer to a new segment whenever a write's
        # rowid is lower than the previous one: write each group in rowid order.
        if deleted_docs:
            deleted_docs.sort()
            conn.executemany(search.DELETE_DOCUMENT_SQL, deleted_docs)
        if replaced_documents:
            replaced_documents.sort(key=_first)
            conn.executemany(search.REPLACE_DOCUMENT_SQL, replaced_documents)
        if new_documents:
            new_documents.sort(key=_first)
            conn.executemany(search.INSERT_DOCUMENT_SQL, new_documents)
        return len(record_rows)

    def purge_records(self, keys_: Iterable[tuple[str, str]]) -> int:
        """Remove records entirely (no tombstone), e.g. when they leave the user's scope.

        Args:
            keys_: ``(entity, id)`` pairs; unknown ones are ignored.

        Returns:
            Number of records removed.
        """
        removed = 0
        with self.transaction() as conn:
            self._require_key(conn)
            for entity, id_ in keys_:
                row = conn.execute(
                    "DELETE FROM records WHERE entity = ? AND id = ? RETURNING doc", (entity, id_)
                ).fetchone()
                if row is None:
                    continue
                removed += 1
                if search.entity_code(entity):
                    conn.execute(search.DELETE_DOCUMENT_SQL, (row[0],))
        return removed

    def get_record(self, entity: str, id: str) -> LocalRecord | None:
        """One record (tombstones included: check ``deleted``), or None."""
        row = self.conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE entity = ? AND id = ?", (entity, id)
        ).fetchone()
        return _row_to_record(row) if row else None

    def iter_records(self, entity: str, *, include_deleted: bool = False) -> Iterator[LocalRecord]:
        """All records of an entity in id order (streamed)."""
        sql = f"SELECT {_RECORD_COLUMNS} FROM records WHERE entity = ?"
        if not include_deleted:
            sql += " AND deleted = 0"
        for row in self.conn.execute(sql + " ORDER BY id", (entity,)):
            yield _row_to_record(row)

    def count_records(self, entity: str | None = None, *, include_deleted: bool = False) -> int:
        """Number of records (of one entity, or all)."""
        clauses = ([] if include_deleted else ["deleted = 0"]) + (["entity = ?"] if entity else [])
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params = (entity,) if entity else ()
        return int(self.conn.execute(f"SELECT count(*) FROM records{where}", params).fetchone()[0])

    def find_records(
        self,
        entity: str,
        field: str,
        value: str | int | float,
        *,
        limit: int | None = None,
        include_deleted: bool = False,
    ) -> list[LocalRecord]:
        """Records of ``entity`` whose ``field`` equals ``value`` (index-backed).

        Fast for the pairs in :data:`DEFAULT_FIELD_INDEXES` and for any pair given an
        index with :meth:`ensure_field_index`; a full entity scan otherwise.
        """
        sql = (
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE entity = {_entity_literal(entity)}"
            f" AND {field_expression(field)} = ?"
        )
        if not include_deleted:
            sql += " AND deleted = 0"
        params: tuple[Any, ...] = (value,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (value, limit)
        return [_row_to_record(row) for row in self.conn.execute(sql, params)]

    def ensure_field_index(self, entity: str, field: str) -> None:
        """Create the partial index :meth:`find_records` uses for (entity, field)."""
        with self.transaction() as conn:
            conn.execute(field_index_statement(entity, field))

    def rebuild_search_index(self) -> int:
        """Re-create every search document from ``records`` (after a mapping change).

        Records of an entity that became searchable get docs in its range first.
        Meant to be called from a migration's ``apply``-equivalent step at open, or
        by hand; it runs in one transaction.

        Returns:
            Number of documents written.
        """
        written = 0
        with self.transaction() as conn:
            conn.execute(search.DELETE_ALL_DOCUMENTS_SQL)
            for entity in search.SEARCHABLE_ENTITIES:
                low, high = search.doc_range(search.entity_code(entity))
                stray = [
                    doc
                    for (doc,) in conn.execute(
                        "SELECT doc FROM records WHERE entity = ? AND doc NOT BETWEEN ? AND ?",
                        (entity, low, high),
                    )
                ]
                if stray:
                    first = allocate_docs(conn, entity, len(stray))
                    conn.executemany(
                        "UPDATE records SET doc = ? WHERE doc = ?",
                        [(first + i, doc) for i, doc in enumerate(stray)],
                    )
                after = low - 1
                while True:
                    # Keyset pages by rowid: never iterate a cursor over rows being written.
                    rows = conn.execute(
                        "SELECT doc, json(fields) FROM records"
                        " WHERE doc > ? AND doc <= ? AND deleted = 0 ORDER BY doc LIMIT ?",
                        (after, high, DEFAULT_BATCH_SIZE),
                    ).fetchall()
                    if not rows:
                        break
                    documents = []
                    for doc, fields in rows:
                        document = search.document_for(entity, _fields_decoder.decode(fields))
                        if document is not None:
                            documents.append((doc, *document))
                    conn.executemany(search.INSERT_DOCUMENT_SQL, documents)
                    written += len(documents)
                    after = rows[-1][0]
        return written

    # --- search ----------------------------------------------------------------------

    def search(
        self, text: str, entities: Sequence[str] | None = None, limit: int = 50
    ) -> list[search.SearchHit]:
        """Offline full-text search; see :func:`client_sdk.search.search`."""
        return search.search(self.conn, text, entities=entities, limit=limit)

    # --- sync state ------------------------------------------------------------------

    def get_state(self, key: str, default: StateValue = None) -> StateValue:
        """A value from the ``sync_state`` key/value table."""
        row = self.conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_state(self, key: str, value: StateValue) -> None:
        """Store a ``sync_state`` value (joins the caller's transaction if one is open).

        Raises:
            InvalidStateValueError: The key is not a non-empty str or the value is not
                str, bytes, int, float or None.
        """
        if not isinstance(key, str) or not key:
            raise InvalidStateValueError("state key must be a non-empty string")
        if value is not None and not isinstance(value, str | bytes | int | float):
            raise InvalidStateValueError(f"unsupported state value type {type(value).__name__}")
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO sync_state(key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def delete_state(self, key: str) -> None:
        """Remove a ``sync_state`` key (no error if absent)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM sync_state WHERE key = ?", (key,))

    # --- keys ------------------------------------------------------------------------

    def change_kek(self, old: Kek, new: Kek) -> None:
        """Re-wrap the data key under a new KEK; the database itself is not rewritten.

        Changes the passphrase, or switches between passphrase and platform keystore.

        Raises:
            WrongPassphraseError / WrongKeystoreKeyError: ``old`` is not the current KEK.
            DatabaseKeyMismatchError: The key file no longer matches this database.
        """
        self.conn  # noqa: B018 - raises DatabaseClosedError when closed
        data_key = keys.unlock_key_file(self.key_path, old)
        if data_key.key_id != self._key_id:
            raise DatabaseKeyMismatchError("the key file was replaced under the open database")
        keys.write_key_file(self.key_path, keys.wrap_data_key(data_key, new))

    def rekey(self, kek: Kek) -> str:
        """Re-encrypt the whole database under a new random DEK.

        Crash-safe order:
        1. the new DEK, wrapped by ``kek``, is written durably to ``<path>.key.next``;
        2. ``PRAGMA rekey`` re-encrypts every page in one transaction (so the file is
           entirely under the old or entirely under the new key), then the WAL is
           checkpointed and truncated so no old-key page remains;
        3. ``.key.next`` atomically replaces ``.key``.
        On open, a leftover ``.key.next`` is either shredded (the database still opens
        with ``.key``: the crash was before step 2 committed) or promoted (the
        database only opens with ``.key.next``: the crash was before step 3).

        Args:
            kek: The current KEK (also wraps the new DEK; its scrypt params apply).

        Returns:
            The new key id.

        Raises:
            DatabaseBusyError: A transaction is open.
            RekeyError: SQLCipher failed to re-encrypt (the old key stays valid).
        """
        conn = self.conn
        if conn.in_transaction:
            raise DatabaseBusyError("rekey needs the database outside of any transaction")
        current = keys.unlock_key_file(self.key_path, kek)
        if current.key_id != self._key_id:
            raise DatabaseKeyMismatchError("the key file was replaced under the open database")
        new_key = keys.new_data_key()
        pending = pending_key_path_for(self.path)
        keys.write_key_file(pending, keys.wrap_data_key(new_key, kek))
        try:
            conn.execute(f"PRAGMA rekey = {new_key.sqlcipher_pragma_value()}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlcipher3.Error as e:
            keys.shred_key_file(pending)
            raise RekeyError(f"PRAGMA rekey failed: {e}") from e
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            _log.warning("WAL checkpoint after rekey was blocked by a reader")
        keys.replace_key_file(pending, self.key_path)
        self._key_id = new_key.key_id
        return new_key.key_id

    def wipe(self) -> None:
        """Crypto-shred this database: close, destroy the wrapped key, delete the files.

        The key file goes first (see :func:`wipe_database`); the object is unusable
        afterwards.
        """
        with contextlib.suppress(Exception):
            self.close()
        wipe_database(self.path)


__all__ = [
    "BASE_MIGRATIONS",
    "DEFAULT_FIELD_INDEXES",
    "INDEXED_PLAIN_FIELDS",
    "LEGACY_FIELD_INDEXES",
    "LocalDatabase",
    "LocalRecord",
    "Migration",
    "PreparedGroup",
    "PreparedRecords",
    "RecordLike",
    "StateValue",
    "database_files",
    "field_expression",
    "field_index_name",
    "field_index_statement",
    "key_path_for",
    "prepare_records",
    "schema_field_indexes",
    "wipe_database",
]
