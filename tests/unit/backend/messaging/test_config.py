"""NatsConfig: defaults, validation at construction, environment loading."""

from __future__ import annotations

import pytest

from backend.messaging.config import NatsConfig
from backend.messaging.errors import MessagingConfigError


def test_defaults_are_the_documented_ones() -> None:
    cfg = NatsConfig()
    assert cfg.url == "nats://127.0.0.1:4222"
    assert cfg.duplicate_window == 120.0  # the push idempotency window
    assert cfg.stream_replicas == 1
    assert cfg.max_deliver == 5
    assert cfg.duplicate_window <= cfg.max_age


def test_is_frozen() -> None:
    cfg = NatsConfig()
    with pytest.raises(AttributeError):
        cfg.max_deliver = 3  # type: ignore[misc]


def test_single_url_string_becomes_a_tuple() -> None:
    cfg = NatsConfig(servers="nats://n1:4222")  # type: ignore[arg-type]
    assert cfg.servers == ("nats://n1:4222",)


def test_secrets_are_not_in_repr() -> None:
    cfg = NatsConfig(user="svc", password="hunter2")
    assert "hunter2" not in repr(cfg)


@pytest.mark.parametrize(
    "changes",
    [
        {"servers": ()},
        {"servers": ("http://n1:4222",)},
        {"user": "u"},
        {"token": "t", "user": "u", "password": "p"},
        {"duplicate_window": 0},
        {"duplicate_window": float("nan")},
        {"ack_wait": -1},
        {"max_age": 60.0, "duplicate_window": 120.0},
        {"stream_replicas": 0},
        {"stream_replicas": 7},
        {"max_msg_size": 0},
        {"max_deliver": 0},
        {"max_deliver": -2},
        {"nak_delay": -0.5},
        {"max_ack_pending": 0},
        {"max_reconnect_attempts": -5},
    ],
)
def test_invalid_values_fail_at_construction(changes: dict[str, object]) -> None:
    with pytest.raises(MessagingConfigError) as info:
        NatsConfig(**changes)  # type: ignore[arg-type]
    assert info.value.code == "messaging.config_invalid"


def test_with_overrides_revalidates() -> None:
    cfg = NatsConfig()
    assert cfg.with_overrides(max_deliver=9).max_deliver == 9
    with pytest.raises(MessagingConfigError):
        cfg.with_overrides(max_deliver=0)


def test_from_env_reads_prefixed_variables() -> None:
    cfg = NatsConfig.from_env(
        {
            "CRMSYNC_NATS_URL": "nats://n1:4222, nats://n2:4222",
            "CRMSYNC_NATS_STREAM_REPLICAS": "3",
            "CRMSYNC_NATS_DUPLICATE_WINDOW": "300",
            "CRMSYNC_NATS_USER": "svc",
            "CRMSYNC_NATS_PASSWORD": "pw",
            "UNRELATED": "x",
        }
    )
    assert cfg.servers == ("nats://n1:4222", "nats://n2:4222")
    assert cfg.stream_replicas == 3
    assert cfg.duplicate_window == 300.0
    assert (cfg.user, cfg.password) == ("svc", "pw")


def test_from_env_empty_gives_defaults() -> None:
    assert NatsConfig.from_env({}) == NatsConfig()


def test_from_env_bad_number_is_a_config_error() -> None:
    with pytest.raises(MessagingConfigError) as info:
        NatsConfig.from_env({"CRMSYNC_NATS_MAX_DELIVER": "many"})
    assert "CRMSYNC_NATS_MAX_DELIVER" in str(info.value)
