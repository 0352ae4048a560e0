"""Store configuration: one frozen value, validated when it is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from .errors import StoreConfigError

STORE_ENV_PREFIX = "CRMSYNC_STORE_"
COUCHBASE_ENV_PREFIX = "CRMSYNC_COUCHBASE_"
_DAY_S = 86_400.0
_COUCHBASE_SCHEMES = ("couchbase://", "couchbases://")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-%")

Backend = Literal["sqlite", "couchbase"]


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Which record store to use and how long it keeps history.

    Durations are in seconds (float).

    Attributes:
        backend: ``sqlite`` (embedded, the default) or ``couchbase``.
        sqlite_path: The SQLite database file; its directory is created on start.
        sqlite_synchronous: ``NORMAL`` (durable against process crashes, the default in
            WAL mode) or ``FULL`` (also against power loss, slower commits).
        sqlite_busy_timeout: How long a writer waits for another process's write lock.
        sqlite_readers: Read connections (and threads) per process.
        couchbase_url: Connection string (``couchbase://host`` or ``couchbases://host``).
        couchbase_username: RBAC user name.
        couchbase_password: RBAC password.
        couchbase_bucket: The one bucket the store uses.
        couchbase_scope: The scope holding one collection per kind of document.
        couchbase_timeout: KV and query timeout, and the transaction expiry.
        max_offline_age: Tombstone and removal retention: a device offline longer than
            this gets "checkpoint too old" and resyncs.
        changeset_retention: How long changeset results are kept for idempotent replay.
        seq_block_size: Couchbase: the most sequences one counter increment reserves.
    """

    backend: Backend = "sqlite"
    sqlite_path: str = "var/crmsync.db"
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    sqlite_busy_timeout: float = 30.0
    sqlite_readers: int = 4
    couchbase_url: str | None = None
    couchbase_username: str | None = None
    couchbase_password: str | None = field(default=None, repr=False)
    couchbase_bucket: str = "crmsync"
    couchbase_scope: str = "crmsync"
    couchbase_timeout: float = 15.0
    max_offline_age: float = 30 * _DAY_S
    changeset_retention: float = 30 * _DAY_S
    seq_block_size: int = 1000

    def __post_init__(self) -> None:
        if self.backend not in ("sqlite", "couchbase"):
            raise StoreConfigError(f"backend must be 'sqlite' or 'couchbase', not {self.backend!r}")
        if not self.sqlite_path:
            raise StoreConfigError("sqlite_path must not be empty")
        if self.sqlite_synchronous not in ("NORMAL", "FULL"):
            raise StoreConfigError("sqlite_synchronous must be NORMAL or FULL")
        for name in (
            "sqlite_busy_timeout",
            "couchbase_timeout",
            "max_offline_age",
            "changeset_retention",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value != value or value <= 0:
                raise StoreConfigError(f"{name} must be a positive number of seconds")
        if not 1 <= self.sqlite_readers <= 64:
            raise StoreConfigError("sqlite_readers must be between 1 and 64")
        if not 1 <= self.seq_block_size <= 1_000_000:
            raise StoreConfigError("seq_block_size must be between 1 and 1,000,000")
        for name in ("couchbase_bucket", "couchbase_scope"):
            value = getattr(self, name)
            if not value or len(value) > 100 or not set(value) <= _NAME_CHARS:
                raise StoreConfigError(f"{name} {value!r} is not a valid Couchbase name")
        if self.backend == "couchbase":
            if not self.couchbase_url:
                raise StoreConfigError("couchbase backend needs couchbase_url")
            if not self.couchbase_url.startswith(_COUCHBASE_SCHEMES):
                raise StoreConfigError(
                    "couchbase_url must start with couchbase:// or couchbases://"
                )
            if not self.couchbase_username or self.couchbase_password is None:
                raise StoreConfigError("couchbase backend needs couchbase_username and password")

    @property
    def max_offline_age_ms(self) -> int:
        """:attr:`max_offline_age` in milliseconds."""
        return int(self.max_offline_age * 1000)

    @property
    def changeset_retention_ms(self) -> int:
        """:attr:`changeset_retention` in milliseconds."""
        return int(self.changeset_retention * 1000)

    def with_overrides(self, **changes: Any) -> StoreConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StoreConfig:
        """Build a config from the environment; unset variables keep their default.

        ``CRMSYNC_STORE_<FIELD>`` sets any field (``CRMSYNC_STORE_BACKEND``,
        ``CRMSYNC_STORE_SQLITE_PATH``, ``CRMSYNC_STORE_MAX_OFFLINE_AGE`` ...);
        ``CRMSYNC_COUCHBASE_URL``, ``_USERNAME``, ``_PASSWORD``, ``_BUCKET``, ``_SCOPE``
        and ``_TIMEOUT`` set the ``couchbase_*`` fields.

        Args:
            environ: The environment, e.g. ``os.environ``.

        Returns:
            The validated config.

        Raises:
            StoreConfigError: A value cannot be parsed or is out of range.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name.startswith("couchbase_"):
                key = COUCHBASE_ENV_PREFIX + f.name.removeprefix("couchbase_").upper()
            else:
                key = STORE_ENV_PREFIX + f.name.upper()
            raw = environ.get(key)
            if raw is None:
                continue
            # Annotations are strings here (``from __future__ import annotations``).
            try:
                if f.type == "int":
                    values[f.name] = int(raw)
                elif f.type == "float":
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as e:
                raise StoreConfigError(f"{key}={raw!r} is not a valid {f.type}") from e
        return cls(**values)
