"""Configuration: TOML plus CRMSYNC_* variables, validated when loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import ConfigError, GatewayConfig, load_config, parse_key

KEY = "hex:" + "ab" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crmsync.toml"
    path.write_text(text)
    return path


def test_file_then_env(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[gateway]
port = 9000
push_wait_ms = 1500
jwks_url = "https://idp.example/keys"
issuer = "https://idp.example"
audience = "api://crmsync"
checkpoint_key = "{KEY}"
algorithms = ["RS256"]

[nats]
servers = ["nats://10.0.0.5:4222"]

[store]
sqlite_path = "/data/crm.db"
""",
    )
    env = {
        "CRMSYNC_GATEWAY_PUSH_WAIT_MS": "900",
        "CRMSYNC_GATEWAY_CORS_ORIGINS": "capacitor://localhost, https://app.example",
        "CRMSYNC_NATS_URL": "nats://10.0.0.6:4222",
    }
    cfg = load_config(path, env)
    assert cfg.gateway.port == 9000
    assert cfg.gateway.push_wait_ms == 900
    assert cfg.gateway.cors_origins == ("capacitor://localhost", "https://app.example")
    assert cfg.gateway.algorithms == ("RS256",)
    assert cfg.gateway.checkpoint_key == bytes.fromhex("ab" * 32)
    assert cfg.nats.servers == ("nats://10.0.0.6:4222",)
    assert cfg.store.sqlite_path == "/data/crm.db"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[gateway]\nnope = 1\n", {}, "gateway.nope: unknown key"),
        ("[gateway]\nport = 'x'\n", {}, "gateway.port"),
        ("[mystery]\n", {}, "unknown tables"),
        ("[gateway\n", {}, "not valid TOML"),
        ("", {"CRMSYNC_GATEWAY_DEV_AUTH": "maybe"}, "dev_auth"),
        ("", {}, "jwks_file or jwks_url"),
        (
            f'[gateway]\njwks_file = "k.json"\ncheckpoint_key = "{KEY}"\nalgorithms=["HS256"]\n',
            {},
            "only RS256 and ES256",
        ),
        ('[gateway]\njwks_file = "k.json"\ncheckpoint_key = "hex:abcd"\n', {}, "at least 32"),
        (
            f'[gateway]\njwks_file = "k.json"\ncheckpoint_key = "{KEY}"\npull_max_limit = 9000\n',
            {},
            "pull_max_limit",
        ),
    ],
)
def test_bad_configuration_fails_at_load(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), env)


def test_dev_auth_creates_and_keeps_a_checkpoint_key(tmp_path: Path) -> None:
    env = {"CRMSYNC_GATEWAY_DEV_AUTH": "true", "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(tmp_path / "k")}
    first = load_config(write(tmp_path, ""), env).gateway.checkpoint_key
    second = load_config(write(tmp_path, ""), env).gateway.checkpoint_key
    assert len(first) == 32 and first == second


def test_keys_in_hex_or_base64() -> None:
    assert parse_key("hex:00ff") == b"\x00\xff"
    assert parse_key("base64:AP8=") == b"\x00\xff"
    assert parse_key("00ff") == b"\x00\xff"
    for bad in ("hex:zz", "base64:!!", "rot13:abc"):
        with pytest.raises(ConfigError):
            parse_key(bad)


def test_overrides_are_validated_again() -> None:
    cfg = GatewayConfig.for_tests()
    with pytest.raises(ConfigError):
        cfg.with_overrides(push_wait_ms=-1)
    assert cfg.with_overrides(push_wait_ms=5).push_wait_ms == 5
