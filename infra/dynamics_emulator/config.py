"""Configuration of the Dynamics 365 Web API emulator.

One frozen :class:`EmulatorConfig` holds everything: the dataset (seed and record counts per
entity set), OAuth, service protection limits, injected faults, change-tracking retention and
where to listen. Build it in code, or from ``CRMSYNC_EMULATOR_*`` environment variables with
:meth:`EmulatorConfig.from_env` (every variable is listed in ``docs/dynamics_emulator.md``).
Invalid values fail when the configuration is loaded, with :class:`EmulatorConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from infra.dynamics_emulator.errors import EmulatorConfigError

ENV_PREFIX = "CRMSYNC_EMULATOR_"

#: Record counts used when a configuration names none: small enough for tests and dev machines.
DEFAULT_COUNTS: dict[str, int] = {
    "accounts": 1_000,
    "contacts": 3_000,
    "leads": 1_000,
    "opportunities": 1_000,
    "quotes": 500,
    "appointments": 2_000,
    "systemusers": 2_000,
}

#: Entity sets whose size the configuration may set (territories and currencies are fixed).
SIZED_ENTITY_SETS = tuple(DEFAULT_COUNTS)

#: Largest count per entity set; keeps generated indices and version numbers well inside 64 bits.
MAX_RECORDS_PER_SET = 1_000_000_000


class AuthConfig(msgspec.Struct, frozen=True, kw_only=True):
    """OAuth2 client-credentials settings.

    Attributes:
        required: When false the API accepts requests without a bearer token (user "anonymous").
        clients: Registered confidential clients, client id -> client secret.
        token_lifetime_s: Lifetime of issued access tokens in seconds.
        signing_key: HMAC key for access tokens; tokens survive restarts with the same key.
    """

    required: bool = True
    clients: dict[str, str] = msgspec.field(
        default_factory=lambda: {"crmsync-importer": "emulator-secret"}
    )
    token_lifetime_s: int = 3_600
    signing_key: str = "crmsync-dynamics-emulator"

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            EmulatorConfigError: A value is out of range.
        """
        if self.token_lifetime_s <= 0:
            raise EmulatorConfigError("auth.token_lifetime_s must be positive")
        if not self.signing_key:
            raise EmulatorConfigError("auth.signing_key must not be empty")


class LimitsConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Service protection limits, applied per user (token subject) over a sliding window.

    Attributes:
        enabled: Switches all three limits.
        window_s: Length of the sliding window in seconds.
        max_requests: Requests allowed per window (Dataverse: 6,000).
        max_execution_ms: Combined execution time allowed per window (Dataverse: 1,200,000 ms).
        max_concurrent: Requests allowed in flight at once (Dataverse: 52).
        dop_hint: Value of the ``x-ms-dop-hint`` response header.
    """

    enabled: bool = True
    window_s: float = 300.0
    max_requests: int = 6_000
    max_execution_ms: int = 1_200_000
    max_concurrent: int = 52
    dop_hint: int = 4

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            EmulatorConfigError: A value is out of range.
        """
        if self.window_s <= 0:
            raise EmulatorConfigError("limits.window_s must be positive")
        if self.max_requests < 1 or self.max_execution_ms < 1 or self.max_concurrent < 1:
            raise EmulatorConfigError("limits must allow at least one request")
        if self.dop_hint < 1:
            raise EmulatorConfigError("limits.dop_hint must be positive")


class FaultConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Injected faults; each rate is the probability per API request (0 disables it).

    Attributes:
        seed: Seed of the fault dice, so a storm is reproducible.
        error_503_rate: Answer 503 Service Unavailable.
        error_500_rate: Answer 500 with an unexpected-error body.
        drop_rate: Start a response and close the connection without a body.
        latency_rate: Add ``latency_ms`` before handling the request.
        latency_ms: Added latency in milliseconds.
    """

    seed: int = 0
    error_503_rate: float = 0.0
    error_500_rate: float = 0.0
    drop_rate: float = 0.0
    latency_rate: float = 0.0
    latency_ms: int = 0

    def __post_init__(self) -> None:
        """Validate.

        Raises:
            EmulatorConfigError: A rate is outside 0..1 or the latency is negative.
        """
        for rate_name in ("error_503_rate", "error_500_rate", "drop_rate", "latency_rate"):
            rate = getattr(self, rate_name)
            if not 0.0 <= rate <= 1.0:
                raise EmulatorConfigError(f"faults.{rate_name} must be within 0..1")
        if self.error_503_rate + self.error_500_rate + self.drop_rate > 1.0:
            raise EmulatorConfigError("faults: 503, 500 and drop rates must add up to at most 1")
        if self.latency_ms < 0:
            raise EmulatorConfigError("faults.latency_ms must not be negative")


class EmulatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the emulator needs; see the module docstring.

    Attributes:
        seed: Dataset seed: record i of a table depends only on (seed, table, i).
        counts: Records per entity set (missing sets use :data:`DEFAULT_COUNTS`).
        dataset_epoch: ISO-8601 instant; generated ``modifiedon`` values are not later.
        host: Interface the runner listens on.
        port: Port the runner listens on (0: any free port).
        public_url: Base URL used in links (``@odata.nextLink``...); default: the request's.
        overlay_path: SQLite file persisting API changes; ``None`` keeps them in memory.
        retention_days: Change-tracking retention (Dataverse default 7 days).
        expired_token_status: HTTP status of an expired delta token, 400 or 410.
        max_page_size: Largest page (Dataverse: 5,000).
        batch_max_requests: Largest ``$batch`` (Dataverse: 1,000).
        auth: OAuth settings.
        limits: Service protection limits.
        faults: Injected faults.
    """

    seed: int = 42
    counts: dict[str, int] = msgspec.field(default_factory=lambda: dict(DEFAULT_COUNTS))
    dataset_epoch: str = "2025-01-01T00:00:00Z"
    host: str = "127.0.0.1"
    port: int = 8765
    public_url: str | None = None
    overlay_path: str | None = None
    retention_days: float = 7.0
    expired_token_status: int = 400
    max_page_size: int = 5_000
    batch_max_requests: int = 1_000
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    faults: FaultConfig = msgspec.field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        """Validate the configuration.

        Raises:
            EmulatorConfigError: A value is out of range or unknown.
        """
        for name, count in self.counts.items():
            if name not in SIZED_ENTITY_SETS:
                raise EmulatorConfigError(
                    f"unknown entity set {name!r} in counts; known: {', '.join(SIZED_ENTITY_SETS)}"
                )
            if not 0 <= count <= MAX_RECORDS_PER_SET:
                raise EmulatorConfigError(f"count of {name} must be 0..{MAX_RECORDS_PER_SET}")
        if self.counts.get("systemusers", 1) < 1:
            raise EmulatorConfigError("at least one systemuser is needed to own records")
        self.epoch()  # validates the timestamp
        if self.expired_token_status not in (400, 410):
            raise EmulatorConfigError("expired_token_status must be 400 or 410")
        if not 0 <= self.retention_days <= 365:
            raise EmulatorConfigError("retention_days must be 0..365")
        if not 1 <= self.max_page_size <= 5_000:
            raise EmulatorConfigError("max_page_size must be 1..5000")
        if not 1 <= self.batch_max_requests <= 1_000:
            raise EmulatorConfigError("batch_max_requests must be 1..1000")
        if not 0 <= self.port <= 65_535:
            raise EmulatorConfigError("port must be 0..65535")

    def count(self, entity_set: str) -> int:
        """Return the configured number of records of a sized entity set."""
        return self.counts.get(entity_set, DEFAULT_COUNTS.get(entity_set, 0))

    def epoch(self) -> datetime:
        """Return :attr:`dataset_epoch` as an aware UTC datetime.

        Raises:
            EmulatorConfigError: The timestamp is not ISO-8601.
        """
        try:
            parsed = datetime.fromisoformat(self.dataset_epoch.replace("Z", "+00:00"))
        except ValueError as e:
            raise EmulatorConfigError(f"dataset_epoch is not ISO-8601: {e}") from e
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EmulatorConfig:
        """Load a configuration from ``CRMSYNC_EMULATOR_*`` variables.

        Args:
            environ: Variables to read (defaults to ``os.environ``).
            **overrides: Top-level fields that win over the environment.

        Returns:
            The validated configuration.

        Raises:
            EmulatorConfigError: A variable has an invalid value.
        """
        env = os.environ if environ is None else environ
        top: dict[str, Any] = {}
        auth: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        faults: dict[str, Any] = {}
        for suffix, (target, field, parse) in _ENV_FIELDS.items():
            raw = env.get(ENV_PREFIX + suffix)
            if raw is None or raw == "":
                continue
            try:
                value = parse(raw)
            except (ValueError, TypeError) as e:
                raise EmulatorConfigError(f"{ENV_PREFIX}{suffix}={raw!r}: {e}") from e
            {"top": top, "auth": auth, "limits": limits, "faults": faults}[target][field] = value
        if auth:
            top["auth"] = AuthConfig(**auth)
        if limits:
            top["limits"] = LimitsConfig(**limits)
        if faults:
            top["faults"] = FaultConfig(**faults)
        top.update(overrides)
        return cls(**top)


def parse_counts(raw: str) -> dict[str, int]:
    """Parse ``"accounts=1000,contacts=5000"`` into a counts mapping (unset sets keep defaults).

    Raises:
        ValueError: An item is not ``name=integer``.
    """
    counts = dict(DEFAULT_COUNTS)
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected name=count, got {item!r}")
        counts[name.strip()] = int(value.replace("_", ""))
    return counts


def parse_bool(raw: str) -> bool:
    """Parse a boolean environment value (1/0, true/false, yes/no, on/off).

    Raises:
        ValueError: The value is none of these.
    """
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected a boolean (1/0, true/false, yes/no, on/off)")


def parse_clients(raw: str) -> dict[str, str]:
    """Parse ``"id1:secret1,id2:secret2"`` into registered OAuth clients.

    Raises:
        ValueError: An item is not ``id:secret``.
    """
    clients: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        client_id, sep, secret = item.strip().partition(":")
        if not sep or not client_id:
            raise ValueError(f"expected client_id:secret, got {item!r}")
        clients[client_id] = secret
    return clients


_T = TypeVar("_T")


def _optional(parse: Callable[[str], _T]) -> Callable[[str], _T | None]:
    def parse_optional(raw: str) -> _T | None:
        return None if raw.strip().lower() in ("none", "-") else parse(raw)

    return parse_optional


_ENV_FIELDS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "SEED": ("top", "seed", int),
    "COUNTS": ("top", "counts", parse_counts),
    "DATASET_EPOCH": ("top", "dataset_epoch", str),
    "HOST": ("top", "host", str),
    "PORT": ("top", "port", int),
    "PUBLIC_URL": ("top", "public_url", _optional(str)),
    "OVERLAY_PATH": ("top", "overlay_path", _optional(str)),
    "RETENTION_DAYS": ("top", "retention_days", float),
    "EXPIRED_TOKEN_STATUS": ("top", "expired_token_status", int),
    "MAX_PAGE_SIZE": ("top", "max_page_size", int),
    "BATCH_MAX_REQUESTS": ("top", "batch_max_requests", int),
    "AUTH_REQUIRED": ("auth", "required", parse_bool),
    "CLIENTS": ("auth", "clients", parse_clients),
    "TOKEN_LIFETIME_S": ("auth", "token_lifetime_s", int),
    "SIGNING_KEY": ("auth", "signing_key", str),
    "LIMITS_ENABLED": ("limits", "enabled", parse_bool),
    "LIMIT_WINDOW_S": ("limits", "window_s", float),
    "LIMIT_REQUESTS": ("limits", "max_requests", int),
    "LIMIT_EXECUTION_MS": ("limits", "max_execution_ms", int),
    "LIMIT_CONCURRENT": ("limits", "max_concurrent", int),
    "DOP_HINT": ("limits", "dop_hint", int),
    "FAULT_SEED": ("faults", "seed", int),
    "FAULT_503_RATE": ("faults", "error_503_rate", float),
    "FAULT_500_RATE": ("faults", "error_500_rate", float),
    "FAULT_DROP_RATE": ("faults", "drop_rate", float),
    "FAULT_LATENCY_RATE": ("faults", "latency_rate", float),
    "FAULT_LATENCY_MS": ("faults", "latency_ms", int),
}

#: Names of every environment variable :meth:`EmulatorConfig.from_env` reads.
ENV_VARIABLES = tuple(ENV_PREFIX + suffix for suffix in _ENV_FIELDS)
