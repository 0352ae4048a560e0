"""Importer configuration: defaults, env loading, validation."""

from __future__ import annotations

import pytest

from importer.config import ImporterConfig
from importer.errors import ImporterConfigError


def test_from_env_reads_prefixed_variables() -> None:
    cfg = ImporterConfig.from_env(
        {
            "CRMSYNC_DYNAMICS_URL": "https://contoso.crm4.dynamics.com/api/data/v9.2",
            "CRMSYNC_DYNAMICS_TENANT_ID": "contoso.onmicrosoft.com",
            "CRMSYNC_DYNAMICS_CLIENT_ID": "app",
            "CRMSYNC_DYNAMICS_CLIENT_SECRET": "s3cret",
            "CRMSYNC_DYNAMICS_PAGE_SIZE": "2000",
            "CRMSYNC_DYNAMICS_BACKOFF_MAX_S": "5.5",
            "CRMSYNC_DYNAMICS_ENTITIES": "account, contact",
        }
    )
    assert cfg.base_url == "https://contoso.crm4.dynamics.com/api/data/v9.2/"
    assert cfg.page_size == 2000 and cfg.backoff_max_s == 5.5
    assert cfg.entities == ("account", "contact")
    assert cfg.uses_client_credentials
    assert cfg.resolved_scope == "https://contoso.crm4.dynamics.com/.default"
    assert cfg.resolved_token_url == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert cfg.node == "upstream:dynamics"
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize(
    "env",
    [
        {"CRMSYNC_DYNAMICS_PAGE_SIZE": "5001"},
        {"CRMSYNC_DYNAMICS_PAGE_SIZE": "many"},
        {"CRMSYNC_DYNAMICS_BASE_URL": "ftp://x/"},
        {"CRMSYNC_DYNAMICS_ENTITIES": "account,invoice"},
        {"CRMSYNC_DYNAMICS_WRITEBACK_BATCH": "1001"},
        {"CRMSYNC_DYNAMICS_CLIENT_ID": "app"},
        {"CRMSYNC_DYNAMICS_DELTA_INTERVAL_S": "0"},
        {"CRMSYNC_DYNAMICS_SOURCE": "dyn:1"},
    ],
)
def test_bad_values_fail_at_load(env: dict[str, str]) -> None:
    with pytest.raises(ImporterConfigError) as info:
        ImporterConfig.from_env(env)
    assert info.value.code == "importer.config_invalid"


def test_token_url_needs_a_tenant() -> None:
    cfg = ImporterConfig(client_id="a", client_secret="b")
    with pytest.raises(ImporterConfigError):
        _ = cfg.resolved_token_url
