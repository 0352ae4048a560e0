"""Logs never carry personal data in clear; metrics render in the Prometheus format."""

from __future__ import annotations

import json
import logging

from backend.observability import JsonFormatter, Metrics, Personal, redact


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": msg, "args": args})
    rec.__dict__.update(extra)
    return rec


def test_emails_and_phone_numbers_are_masked() -> None:
    text = redact("mail mario.rossi@example.it or call +39 02 1234 5678, seq 123456")
    assert "mario.rossi" not in text and "1234 5678" not in text
    assert "<email>" in text and "<phone>" in text
    assert "seq 123456" in text  # short numbers (ids, sequences) stay readable
    assert redact("nats://10.0.0.5:4222 and 01.23.45.67.89") == "nats://10.0.0.5:4222 and <phone>"


def test_json_lines_redact_messages_and_personal_extras() -> None:
    line = JsonFormatter().format(
        record("user %s wrote", Personal("Anna Kowalska"), fields={"name": "Kowalska"}, seq=7)
    )
    doc = json.loads(line)
    assert "Kowalska" not in line
    assert doc["msg"].startswith("user <pd:") and doc["fields"] == "<redacted>"
    assert doc["seq"] == 7 and doc["level"] == "info"


def test_personal_values_hash_stably() -> None:
    assert str(Personal("x")) == str(Personal("x")) != str(Personal("y"))


def test_metrics_render() -> None:
    m = Metrics()
    m.observe_request("/v1/sync/pull", "GET", 200, 0.01)
    m.push_outcomes.labels("applied").inc(3)
    text = m.render().decode()
    assert 'crmsync_push_mutations_total{outcome="applied"} 3.0' in text
    assert "crmsync_http_request_seconds_bucket" in text
