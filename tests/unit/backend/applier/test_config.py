"""Applier configuration, settings loading and the ``crmsync applier`` command's errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from backend.applier.config import ApplierConfig
from backend.applier.errors import ApplierConfigError
from backend.applier.runner import load_rules, load_settings
from backend.cli import main
from sync_protocol.errors import RulesError


def _env(tmp_path, **extra: str) -> dict[str, str]:
    return {
        "CRMSYNC_GATEWAY_DEV_AUTH": "true",
        "CRMSYNC_GATEWAY_DEV_KEY_DIR": str(tmp_path / "keys"),
        "CRMSYNC_STORE_SQLITE_PATH": str(tmp_path / "x.db"),
        **extra,
    }


def test_from_env_parses_and_validates() -> None:
    cfg = ApplierConfig.from_env(
        {"CRMSYNC_APPLIER_MAX_CONCURRENCY": "4", "CRMSYNC_APPLIER_FETCH_WAIT_S": "0.2"}
    )
    assert (cfg.max_concurrency, cfg.fetch_wait_s) == (4, 0.2)
    with pytest.raises(ApplierConfigError) as info:
        ApplierConfig.from_env({"CRMSYNC_APPLIER_MAX_RETRIES": "many"})
    assert info.value.code == "applier.config_invalid"
    with pytest.raises(ApplierConfigError):
        ApplierConfig(changeset_batch=0)
    with pytest.raises(ApplierConfigError):
        ApplierConfig(changesets_durable="bad.name")


def test_settings_follow_the_gateway_skew_and_the_store_retention(tmp_path) -> None:
    env = _env(
        tmp_path,
        CRMSYNC_GATEWAY_MAX_CLOCK_SKEW_MS="5000",
        CRMSYNC_STORE_MAX_OFFLINE_AGE="86400",
    )
    settings = load_settings(environ=env)
    assert settings.applier.max_skew_ms == 5000
    assert settings.applier.tombstone_retention_ms == 86_400_000
    assert settings.store.sqlite_path == str(tmp_path / "x.db")

    explicit = load_settings(environ={**env, "CRMSYNC_APPLIER_MAX_SKEW_MS": "100"})
    assert explicit.applier.max_skew_ms == 100


def test_rules_file_is_loaded_and_bad_rules_fail_with_their_key(tmp_path) -> None:
    assert load_rules(None).profiles["sales_rep"].name == "sales_rep"
    bad = tmp_path / "rules.toml"
    bad.write_text("version = 2\n")
    with pytest.raises(RulesError) as info:
        load_rules(str(bad))
    assert "version" in str(info.value)


def test_cli_reports_a_bad_setting_with_its_code(tmp_path) -> None:
    result = CliRunner().invoke(
        main, ["applier"], env=_env(tmp_path, CRMSYNC_APPLIER_MAX_CONCURRENCY="0")
    )
    assert result.exit_code == 2
    assert "applier.config_invalid" in result.output


def test_cli_lists_the_service_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "applier", "gateway"):
        assert command in result.output
