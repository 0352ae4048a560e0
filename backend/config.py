"""Service configuration: one frozen type per concern, loaded once from TOML and env.

Sources, later ones winning: built-in defaults, a TOML file (``crmsync.toml`` in the
working directory, or the path in ``CRMSYNC_CONFIG``), then environment variables.
The TOML file has one table per concern::

    [gateway]
    port = 8080
    issuer = "https://login.example.com/tenant/v2.0"
    audience = "api://crmsync"
    jwks_url = "https://login.example.com/tenant/discovery/v2.0/keys"
    checkpoint_key = "hex:3f9a..."      # or "base64:..."; at least 32 bytes

    [nats]
    servers = ["nats://10.0.0.5:4222"]

    [store]
    ...                                 # see backend/store/config.py

Gateway variables are ``CRMSYNC_GATEWAY_<FIELD>`` (``CRMSYNC_GATEWAY_PUSH_WAIT_MS=1500``);
lists are comma-separated. NATS and store variables belong to their own config types.
Bad configuration fails here, when it is loaded, with :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from backend.messaging.config import NatsConfig
from backend.messaging.errors import MessagingConfigError
from backend.store.config import StoreConfig
from backend.store.errors import StoreConfigError

ENV_PREFIX = "CRMSYNC_GATEWAY_"
CONFIG_ENV = "CRMSYNC_CONFIG"
DEFAULT_CONFIG_FILE = "crmsync.toml"
DEV_KEY_DIR = "var/dev-keys"
_MIN_KEY_BYTES = 32


class ConfigError(Exception):
    """The configuration is invalid; the message names the offending key."""

    code = "invalid_config"


def _positive(name: str, value: float) -> None:
    if not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"gateway.{name} must be a positive number")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway (and its admin port) needs besides the store and NATS.

    Attributes:
        host: interface of the sync API.
        port: port of the sync API.
        admin_host: interface of the admin API and metrics (keep it on the operators' network).
        admin_port: port of the admin API, ``/metrics``, ``/healthz``, ``/readyz``.
        push_wait_ms: how long a push waits for the applier's result before answering 202.
        max_body_bytes: largest push body.
        max_mutations: most mutations in one changeset.
        max_fields_per_mutation: most fields one mutation may set.
        pull_default_limit: changes per pull page when the client does not say.
        pull_max_limit: most changes per pull page.
        bootstrap_batch: records per bootstrap frame.
        blob_max_bytes: largest attachment.
        jwks_file: path of a JWKS file (one of ``jwks_file``/``jwks_url``; neither with
            ``dev_auth``, which trusts the dev signer).
        jwks_url: URL of the identity provider's JWKS.
        jwks_ttl_s: refresh the key set after this long.
        jwks_min_refresh_s: refresh on an unknown key id at most this often.
        issuer: required token ``iss``.
        audience: required token ``aud``.
        algorithms: accepted token algorithms (RS256 and/or ES256).
        token_leeway_s: clock skew tolerated on ``exp``/``nbf``.
        checkpoint_key: HMAC key for checkpoints and bootstrap resume tokens; every
            gateway replica needs the same one.
        rules_file: sync rules TOML; the built-in default rules if unset.
        max_clock_skew_ms: how far ahead of server time a device clock may be before
            the applier bounds it (reported in metadata; the applier enforces it).
        tombstone_retention_s: how long tombstones are kept (the maximum offline age
            before a device must resync).
        auto_register_devices: bind an unknown device to the caller on its first sync.
        ws_max_connections: WebSocket connections one process accepts.
        cors_origins: origins allowed to call the API from a browser (hybrid app).
        dev_auth: trust the dev signer (``var/dev-keys``) and serve ``/dev/token``;
            never in production.
        dev_key_dir: where the dev signer keeps its key pair.
        log_level: root log level.
        log_json: structured JSON logs (else plain text, for a terminal).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    push_wait_ms: int = 2000
    max_body_bytes: int = 4 * 1024 * 1024
    max_mutations: int = 500
    max_fields_per_mutation: int = 200
    pull_default_limit: int = 1000
    pull_max_limit: int = 5000
    bootstrap_batch: int = 500
    blob_max_bytes: int = 10 * 1024 * 1024
    jwks_file: str | None = None
    jwks_url: str | None = None
    jwks_ttl_s: float = 3600.0
    jwks_min_refresh_s: float = 30.0
    issuer: str = "https://crmsync.local/dev-idp"
    audience: str = "crmsync"
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    token_leeway_s: int = 30
    checkpoint_key: bytes = field(default=b"", repr=False)
    rules_file: str | None = None
    max_clock_skew_ms: int = 60_000
    tombstone_retention_s: int = 30 * 86_400
    auto_register_devices: bool = True
    ws_max_connections: int = 20_000
    cors_origins: tuple[str, ...] = ()
    dev_auth: bool = False
    dev_key_dir: str = DEV_KEY_DIR
    log_level: str = "INFO"
    log_json: bool = True

    def __post_init__(self) -> None:
        for name in ("port", "admin_port"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 65535:
                raise ConfigError(f"gateway.{name} must be a port number 0-65535")
        if self.port == self.admin_port and self.port != 0:
            raise ConfigError("gateway.admin_port must differ from gateway.port")
        for name in (
            "max_body_bytes",
            "max_mutations",
            "max_fields_per_mutation",
            "pull_default_limit",
            "pull_max_limit",
            "bootstrap_batch",
            "blob_max_bytes",
            "jwks_ttl_s",
            "jwks_min_refresh_s",
            "max_clock_skew_ms",
            "tombstone_retention_s",
            "ws_max_connections",
        ):
            _positive(name, getattr(self, name))
        if self.push_wait_ms < 0 or self.push_wait_ms > 30_000:
            raise ConfigError("gateway.push_wait_ms must be 0-30000")
        if self.pull_max_limit > 5000 or self.pull_default_limit > self.pull_max_limit:
            raise ConfigError("gateway.pull_default_limit <= gateway.pull_max_limit <= 5000")
        if self.bootstrap_batch > 5000:
            raise ConfigError("gateway.bootstrap_batch must be at most 5000")
        if not 0 <= self.token_leeway_s <= 300:
            raise ConfigError("gateway.token_leeway_s must be 0-300 seconds")
        bad = [a for a in self.algorithms if a not in ("RS256", "ES256")]
        if not self.algorithms or bad:
            raise ConfigError(f"gateway.algorithms: only RS256 and ES256 are allowed, got {bad}")
        if self.jwks_file and self.jwks_url:
            raise ConfigError("gateway: set jwks_file or jwks_url, not both")
        if not self.dev_auth and not (self.jwks_file or self.jwks_url):
            raise ConfigError("gateway: set jwks_file or jwks_url (or dev_auth for local use)")
        if self.jwks_url and not self.jwks_url.startswith(("https://", "http://")):
            raise ConfigError("gateway.jwks_url must be an http(s) URL")
        if not self.issuer or not self.audience:
            raise ConfigError("gateway.issuer and gateway.audience are required")
        if len(self.checkpoint_key) < _MIN_KEY_BYTES:
            raise ConfigError(f"gateway.checkpoint_key must be at least {_MIN_KEY_BYTES} bytes")

    @classmethod
    def for_tests(cls, **overrides: Any) -> GatewayConfig:
        """A dev-auth config with a random checkpoint key (tests and local experiments)."""
        values: dict[str, Any] = {
            "dev_auth": True,
            "checkpoint_key": secrets.token_bytes(32),
            "port": 0,
            "admin_port": 0,
            "log_json": False,
        }
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> GatewayConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class CrmsyncConfig:
    """The whole service configuration.

    Attributes:
        gateway: gateway settings.
        nats: NATS connection and stream settings.
        store: the record store's config.
        source: where the file part came from (for messages), or ``""``.
    """

    gateway: GatewayConfig
    nats: NatsConfig
    store: StoreConfig = field(default_factory=StoreConfig)
    source: str = ""


# -- parsing ------------------------------------------------------------------------------


def parse_key(text: str, name: str = "gateway.checkpoint_key") -> bytes:
    """Decode a key written as ``hex:...``, ``base64:...`` or plain hex.

    Raises:
        ConfigError: not decodable.
    """
    kind, sep, body = text.partition(":")
    if not sep:
        kind, body = "hex", text
    try:
        if kind == "hex":
            return bytes.fromhex(body.strip())
        if kind == "base64":
            return base64.b64decode(body.strip(), validate=True)
    except (ValueError, binascii.Error) as e:
        raise ConfigError(f"{name}: not valid {kind}") from e
    raise ConfigError(f"{name}: write the key as 'hex:...' or 'base64:...'")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(GatewayConfig)


def _coerce(name: str, hint: Any, raw: Any) -> Any:
    """Convert a TOML or env value to the field's type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if raw is None or raw == "":
            return None
        return _coerce(name, inner[0], raw)
    if hint is bytes:
        if isinstance(raw, bytes):
            return raw
        return parse_key(str(raw), f"gateway.{name}")
    if origin is tuple:
        if isinstance(raw, str):
            raw = [p.strip() for p in raw.split(",") if p.strip()]
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"gateway.{name} must be a list")
        return tuple(str(v) for v in raw)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"gateway.{name} must be true or false")
    try:
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if hint is float:
            return float(raw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"gateway.{name} must be a {hint.__name__}") from e
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(f"gateway.{name} must be a string")
        return raw
    return raw


def gateway_from(table: Mapping[str, Any], environ: Mapping[str, str]) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from a TOML table and ``CRMSYNC_GATEWAY_*`` variables.

    Without a configured checkpoint key and with ``dev_auth`` on, a key is generated once
    and kept in the dev key directory, so local restarts keep devices' checkpoints valid.

    Raises:
        ConfigError: an unknown key or an invalid value.
    """
    hints = _field_types()
    names = {f.name for f in fields(GatewayConfig)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in names:
            raise ConfigError(f"gateway.{key}: unknown key")
        values[key] = _coerce(key, hints[key], raw)
    for name in names:
        raw_env = environ.get(ENV_PREFIX + name.upper())
        if raw_env is not None:
            values[name] = _coerce(name, hints[name], raw_env)
    if not values.get("checkpoint_key") and values.get("dev_auth"):
        values["checkpoint_key"] = dev_checkpoint_key(Path(values.get("dev_key_dir", DEV_KEY_DIR)))
    try:
        return GatewayConfig(**values)
    except TypeError as e:
        raise ConfigError(f"gateway: {e}") from e


def dev_checkpoint_key(directory: Path) -> bytes:
    """The local stack's checkpoint key, created (owner-only) on first use."""
    path = directory / "checkpoint.key"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    directory.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


def _nats_from(table: Mapping[str, Any], environ: Mapping[str, str]) -> NatsConfig:
    try:
        base = NatsConfig.from_env(environ)
        if not table:
            return base
        values = dict(table)
        if "servers" in values and isinstance(values["servers"], list):
            values["servers"] = tuple(values["servers"])
        # Env wins over the file: apply the file first, then re-apply env-set fields.
        from_env = {
            f.name: getattr(base, f.name)
            for f in fields(NatsConfig)
            if f.name in _env_fields(environ)
        }
        return NatsConfig(**{**values, **from_env})
    except (MessagingConfigError, TypeError) as e:
        raise ConfigError(f"nats: {e}") from e


def _env_fields(environ: Mapping[str, str]) -> set[str]:
    prefix = "CRMSYNC_NATS_"
    out = {k[len(prefix) :].lower() for k in environ if k.startswith(prefix)}
    if "url" in out:
        out.add("servers")
    return out


def _store_env_key(name: str) -> str:
    if name.startswith("couchbase_"):
        return "CRMSYNC_COUCHBASE_" + name.removeprefix("couchbase_").upper()
    return "CRMSYNC_STORE_" + name.upper()


def _store_from(table: Mapping[str, Any], environ: Mapping[str, str]) -> StoreConfig:
    try:
        base = StoreConfig.from_env(environ)
        if not table:
            return base
        # Env wins over the file: apply the file first, then re-apply env-set fields.
        from_env = {
            f.name: getattr(base, f.name)
            for f in fields(StoreConfig)
            if _store_env_key(f.name) in environ
        }
        return StoreConfig(**{**dict(table), **from_env})
    except (StoreConfigError, TypeError) as e:
        raise ConfigError(f"store: {e}") from e


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> CrmsyncConfig:
    """Load the configuration once at start-up.

    Args:
        path: a TOML file; defaults to ``$CRMSYNC_CONFIG`` or ``./crmsync.toml`` if present.
        environ: environment variables; ``os.environ`` by default.

    Raises:
        ConfigError: unreadable file, unknown table or key, or an invalid value.
    """
    env = os.environ if environ is None else environ
    file_path = Path(path) if path is not None else None
    if file_path is None and env.get(CONFIG_ENV):
        file_path = Path(env[CONFIG_ENV])
    if file_path is None and Path(DEFAULT_CONFIG_FILE).exists():
        file_path = Path(DEFAULT_CONFIG_FILE)
    doc: dict[str, Any] = {}
    if file_path is not None:
        try:
            doc = tomllib.loads(file_path.read_text())
        except OSError as e:
            raise ConfigError(f"{file_path}: cannot read ({type(e).__name__})") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file_path}: not valid TOML: {e}") from e
    unknown = set(doc) - {"gateway", "nats", "store", "applier", "importer"}
    if unknown:
        raise ConfigError(f"{file_path}: unknown tables {sorted(unknown)}")
    gateway = gateway_from(doc.get("gateway", {}), env)
    nats = _nats_from(doc.get("nats", {}), env)
    store = _store_from(doc.get("store", {}), env)
    return CrmsyncConfig(gateway=gateway, nats=nats, store=store, source=str(file_path or ""))
