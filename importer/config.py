"""Importer configuration: one frozen value, validated when it is built."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sync_protocol.entities import ENTITY_NAMES

from .errors import ImporterConfigError

ENV_PREFIX = "CRMSYNC_DYNAMICS_"

_MAX_PAGE_SIZE = 5000  # the Web API's own ceiling for odata.maxpagesize
_MAX_BATCH_REQUESTS = 1000  # at most 1,000 requests in one $batch


@dataclass(frozen=True, slots=True)
class ImporterConfig:
    """How to reach Dynamics and how hard to push it.

    Attributes:
        base_url: Web API root, e.g. ``https://contoso.crm4.dynamics.com/api/data/v9.2/``.
        tenant_id: Entra ID tenant (GUID or domain) of the app registration.
        client_id: Application (client) id of the app registration.
        client_secret: Its client secret.
        scope: OAuth2 scope; defaults to ``https://<org host>/.default``.
        token_url: Token endpoint; defaults to the Microsoft identity platform v2 endpoint
            of ``tenant_id`` (an emulator or a proxy may override it).
        access_token: A fixed bearer token instead of client credentials (tests, tooling).
        entities: Entities to load and follow, in load order.
        page_size: ``odata.maxpagesize`` (at most 5,000).
        max_parallel: Concurrent requests to Dynamics; the service's ``x-ms-dop-hint``
            lowers it further when it is smaller.
        parallel_entities: Entities a full load reads at the same time.
        request_timeout_s: Timeout of one HTTP request.
        max_attempts: Attempts per request before a retryable error is given up.
        backoff_base_s: First back-off after a 5xx or connection error (doubles per try).
        backoff_max_s: Longest single back-off or ``Retry-After`` honoured.
        token_refresh_margin_s: Refresh the access token this long before it expires.
        batch_mutations: Records per upstream batch message (split further if a message
            would exceed ``max_message_bytes``).
        max_message_bytes: Largest upstream batch message (the NATS max payload).
        delta_interval_s: Pause between incremental (delta) syncs of all entities.
        writeback_batch: Outbound changes sent in one ``$batch`` request.
        writeback_fetch: Outbound messages fetched from JetStream at once.
        writeback_attempts: Failures after which a change goes to the dead-letter list.
        writeback_durable: Durable consumer name on the outbound stream.
        source: Origin name of the Dynamics connection (clock node ``upstream:<source>``).
        territory_column: Dynamics column holding a record's sales territory code; empty
            means "take it from the owner".
        country_column: Dynamics column holding a country (ISO code or English name); empty
            means "take it from the owner".
    """

    base_url: str = "http://127.0.0.1:8090/api/data/v9.2/"
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    scope: str = ""
    token_url: str = ""
    access_token: str = field(default="", repr=False)
    entities: tuple[str, ...] = ENTITY_NAMES
    page_size: int = _MAX_PAGE_SIZE
    max_parallel: int = 4
    parallel_entities: int = 3
    request_timeout_s: float = 60.0
    max_attempts: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    token_refresh_margin_s: float = 300.0
    batch_mutations: int = 1000
    max_message_bytes: int = 1024 * 1024
    delta_interval_s: float = 30.0
    writeback_batch: int = 100
    writeback_fetch: int = 100
    writeback_attempts: int = 5
    writeback_durable: str = "importer-writeback"
    source: str = "dynamics"
    territory_column: str = ""
    country_column: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.entities, str):
            object.__setattr__(
                self, "entities", tuple(e.strip() for e in self.entities.split(",") if e.strip())
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise ImporterConfigError(f"base_url {self.base_url!r} must be an http(s) URL")
        if not self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")
        if not self.entities:
            raise ImporterConfigError("entities: at least one entity is required")
        for name in self.entities:
            if name not in ENTITY_NAMES:
                raise ImporterConfigError(f"entities: {name!r} is not a synced entity")
        if not 1 <= self.page_size <= _MAX_PAGE_SIZE:
            raise ImporterConfigError(f"page_size must be between 1 and {_MAX_PAGE_SIZE}")
        if not 1 <= self.writeback_batch <= _MAX_BATCH_REQUESTS:
            raise ImporterConfigError(
                f"writeback_batch must be between 1 and {_MAX_BATCH_REQUESTS}"
            )
        for name in (
            "max_parallel",
            "parallel_entities",
            "max_attempts",
            "batch_mutations",
            "writeback_fetch",
            "writeback_attempts",
        ):
            if int(getattr(self, name)) < 1:
                raise ImporterConfigError(f"{name} must be at least 1")
        if self.max_message_bytes < 64 * 1024:
            raise ImporterConfigError("max_message_bytes must be at least 64 KiB")
        for name in ("request_timeout_s", "backoff_max_s", "delta_interval_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ImporterConfigError(f"{name} must be a positive number of seconds")
        for name in ("backoff_base_s", "token_refresh_margin_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ImporterConfigError(f"{name} must be zero or a positive number of seconds")
        if not self.source or any(ch in self.source for ch in " .*>:"):
            raise ImporterConfigError(f"source {self.source!r} must be a plain name")
        if not self.writeback_durable or any(ch in self.writeback_durable for ch in ".*>/\\ "):
            raise ImporterConfigError("writeback_durable is not a valid consumer name")
        if not self.access_token and self.client_id and not self.client_secret:
            raise ImporterConfigError("client_secret is required with client_id")

    @property
    def node(self) -> str:
        """Clock node id of writes from this connection (``upstream:dynamics``)."""
        return f"upstream:{self.source}"

    @property
    def uses_client_credentials(self) -> bool:
        """True when tokens come from the OAuth2 client-credentials flow."""
        return not self.access_token and bool(self.client_id)

    @property
    def resolved_token_url(self) -> str:
        """The token endpoint (explicit, or Microsoft's for ``tenant_id``)."""
        if self.token_url:
            return self.token_url
        if not self.tenant_id:
            raise ImporterConfigError("tenant_id or token_url is required for client credentials")
        return f"https://login.microsoftonline.com/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def resolved_scope(self) -> str:
        """The OAuth2 scope (explicit, or ``https://<org host>/.default``)."""
        if self.scope:
            return self.scope
        scheme, _, rest = self.base_url.partition("://")
        host = rest.split("/", 1)[0]
        return f"{scheme}://{host}/.default"

    def with_overrides(self, **changes: Any) -> ImporterConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ImporterConfig:
        """Build a config from ``CRMSYNC_DYNAMICS_<FIELD>`` variables (unset keep defaults).

        ``CRMSYNC_DYNAMICS_URL`` is accepted as an alias of ``..._BASE_URL`` and
        ``CRMSYNC_DYNAMICS_ENTITIES`` is a comma-separated list.

        Raises:
            ImporterConfigError: A value cannot be parsed or is out of range.
        """
        values: dict[str, Any] = {}
        alias = environ.get(ENV_PREFIX + "URL")
        if alias:
            values["base_url"] = alias
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                if f.type == "int":
                    values[f.name] = int(raw)
                elif f.type == "float":
                    values[f.name] = float(raw)
                elif f.name == "entities":
                    values[f.name] = tuple(e.strip() for e in raw.split(",") if e.strip())
                else:
                    values[f.name] = raw
            except ValueError as e:
                raise ImporterConfigError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {f.type}"
                ) from e
        return cls(**values)
