"""Configuration: defaults, validation and CRMSYNC_EMULATOR_* variables."""

from __future__ import annotations

import pytest

from infra.dynamics_emulator.config import ENV_VARIABLES, EmulatorConfig, parse_counts
from infra.dynamics_emulator.errors import EmulatorConfigError


def test_defaults_are_valid_and_match_dataverse_limits() -> None:
    config = EmulatorConfig()
    assert config.limits.max_requests == 6_000
    assert config.limits.max_execution_ms == 1_200_000
    assert config.limits.max_concurrent == 52
    assert config.limits.window_s == 300
    assert config.retention_days == 7
    assert config.max_page_size == 5_000
    assert config.batch_max_requests == 1_000
    assert config.count("accounts") > 0


def test_from_env_reads_every_section() -> None:
    env = {
        "CRMSYNC_EMULATOR_SEED": "99",
        "CRMSYNC_EMULATOR_COUNTS": "accounts=1_000_000,contacts=5",
        "CRMSYNC_EMULATOR_PORT": "0",
        "CRMSYNC_EMULATOR_RETENTION_DAYS": "0.5",
        "CRMSYNC_EMULATOR_EXPIRED_TOKEN_STATUS": "410",
        "CRMSYNC_EMULATOR_AUTH_REQUIRED": "false",
        "CRMSYNC_EMULATOR_CLIENTS": "a:b,c:d",
        "CRMSYNC_EMULATOR_TOKEN_LIFETIME_S": "60",
        "CRMSYNC_EMULATOR_LIMIT_REQUESTS": "10",
        "CRMSYNC_EMULATOR_LIMIT_CONCURRENT": "3",
        "CRMSYNC_EMULATOR_FAULT_503_RATE": "0.25",
        "CRMSYNC_EMULATOR_FAULT_SEED": "5",
        "CRMSYNC_EMULATOR_OVERLAY_PATH": "none",
    }
    config = EmulatorConfig.from_env(env)
    assert config.seed == 99
    assert config.count("accounts") == 1_000_000
    assert config.count("contacts") == 5
    assert config.count("leads") > 0  # unset sets keep their default
    assert config.port == 0
    assert config.retention_days == 0.5
    assert config.expired_token_status == 410
    assert config.auth.required is False
    assert config.auth.clients == {"a": "b", "c": "d"}
    assert config.auth.token_lifetime_s == 60
    assert config.limits.max_requests == 10
    assert config.limits.max_concurrent == 3
    assert config.faults.error_503_rate == 0.25
    assert config.faults.seed == 5
    assert config.overlay_path is None


def test_overrides_win_over_the_environment() -> None:
    config = EmulatorConfig.from_env({"CRMSYNC_EMULATOR_SEED": "1"}, seed=2)
    assert config.seed == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CRMSYNC_EMULATOR_SEED", "abc"),
        ("CRMSYNC_EMULATOR_COUNTS", "accounts"),
        ("CRMSYNC_EMULATOR_COUNTS", "widgets=5"),
        ("CRMSYNC_EMULATOR_EXPIRED_TOKEN_STATUS", "500"),
        ("CRMSYNC_EMULATOR_AUTH_REQUIRED", "maybe"),
        ("CRMSYNC_EMULATOR_FAULT_DROP_RATE", "1.5"),
        ("CRMSYNC_EMULATOR_MAX_PAGE_SIZE", "5001"),
        ("CRMSYNC_EMULATOR_DATASET_EPOCH", "yesterday"),
    ],
)
def test_invalid_values_fail_with_a_typed_error(name: str, value: str) -> None:
    with pytest.raises(EmulatorConfigError) as info:
        EmulatorConfig.from_env({name: value})
    assert info.value.code == "dynamics_emulator.config_invalid"


def test_parse_counts_and_variable_list() -> None:
    assert parse_counts("accounts=3")["accounts"] == 3
    assert "CRMSYNC_EMULATOR_FAULT_LATENCY_MS" in ENV_VARIABLES
