"""StoreConfig: defaults, environment loading and validation."""

from __future__ import annotations

import pytest

from backend.store.config import StoreConfig
from backend.store.errors import StoreConfigError


def test_defaults_are_an_embedded_sqlite_store_with_30_day_retention() -> None:
    config = StoreConfig()
    assert config.backend == "sqlite"
    assert config.sqlite_path == "var/crmsync.db"
    assert config.max_offline_age_ms == 30 * 86_400_000
    assert config.changeset_retention_ms == 30 * 86_400_000
    assert config.seq_block_size == 1000


def test_from_env_reads_store_and_couchbase_variables() -> None:
    config = StoreConfig.from_env(
        {
            "CRMSYNC_STORE_BACKEND": "couchbase",
            "CRMSYNC_STORE_MAX_OFFLINE_AGE": "86400",
            "CRMSYNC_STORE_SEQ_BLOCK_SIZE": "500",
            "CRMSYNC_COUCHBASE_URL": "couchbases://cb.example.com",
            "CRMSYNC_COUCHBASE_USERNAME": "crmsync",
            "CRMSYNC_COUCHBASE_PASSWORD": "s3cret",
            "CRMSYNC_COUCHBASE_BUCKET": "crm",
            "CRMSYNC_COUCHBASE_SCOPE": "prod",
            "UNRELATED": "x",
        }
    )
    assert config.backend == "couchbase"
    assert config.max_offline_age_ms == 86_400_000
    assert config.seq_block_size == 500
    assert (config.couchbase_url, config.couchbase_bucket, config.couchbase_scope) == (
        "couchbases://cb.example.com",
        "crm",
        "prod",
    )
    assert "s3cret" not in repr(config)


def test_from_env_without_variables_gives_the_defaults() -> None:
    assert StoreConfig.from_env({}) == StoreConfig()


def test_a_value_that_does_not_parse_names_the_variable() -> None:
    with pytest.raises(StoreConfigError, match="CRMSYNC_STORE_SQLITE_READERS"):
        StoreConfig.from_env({"CRMSYNC_STORE_SQLITE_READERS": "many"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "postgres"}, "backend"),
        ({"sqlite_path": ""}, "sqlite_path"),
        ({"max_offline_age": 0}, "max_offline_age"),
        ({"changeset_retention": -1.0}, "changeset_retention"),
        ({"sqlite_readers": 0}, "sqlite_readers"),
        ({"seq_block_size": 0}, "seq_block_size"),
        ({"couchbase_scope": "bad scope!"}, "couchbase_scope"),
        ({"backend": "couchbase"}, "couchbase_url"),
        ({"backend": "couchbase", "couchbase_url": "http://x"}, "couchbase://"),
        ({"backend": "couchbase", "couchbase_url": "couchbase://x"}, "username"),
        ({"sqlite_synchronous": "OFF"}, "sqlite_synchronous"),
    ],
)
def test_bad_values_fail_when_the_config_is_built(changes: dict[str, object], message: str) -> None:
    with pytest.raises(StoreConfigError, match=message) as info:
        StoreConfig(**changes)  # type: ignore[arg-type]
    assert info.value.code == "store_config_invalid"


def test_with_overrides_validates_again() -> None:
    config = StoreConfig().with_overrides(sqlite_path="/tmp/x.db")
    assert config.sqlite_path == "/tmp/x.db"
    with pytest.raises(StoreConfigError):
        config.with_overrides(seq_block_size=-5)
