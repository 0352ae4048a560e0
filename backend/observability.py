"""Structured logs with personal data redacted, and the Prometheus metrics of the services.

Logs are one JSON object per line. Personal data (names, phone numbers, e-mail addresses,
record field values) must never reach them unredacted: wrap such a value in
:class:`Personal` (like Sync Gateway's ``base.UD``) and it renders as a short stable hash;
as a safety net the formatter also masks anything that looks like an e-mail address or
a phone number in messages, and drops ``extra`` members with personal-data names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_EMAIL_RE = re.compile(r"[^\s@\"'<>]{1,64}@[^\s@\"'<>]{1,255}\.[A-Za-z]{2,63}")
_PHONE_RE = re.compile(r"(?<![\w.-])\+?\d[\d ()./-]{6,}\d(?![\w-])")
PERSONAL_KEYS = frozenset(
    {
        "name",
        "firstname",
        "lastname",
        "fullname",
        "email",
        "emailaddress1",
        "telephone1",
        "mobilephone",
        "phone",
        "fields",
        "address1_line1",
        "description",
        "authorization",
        "token",
        "access_token",
    }
)
_STD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class Personal:
    """A personal value that logs as ``<pd:xxxxxxxx>`` (a stable hash), never in clear."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        digest = hashlib.blake2b(str(self.value).encode(), digest_size=4).hexdigest()
        return f"<pd:{digest}>"

    __repr__ = __str__


_IPV4_RE = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def _mask_phone(match: re.Match[str]) -> str:
    # Dotted digit runs are also IPv4 addresses, which logs need in clear.
    return match.group(0) if _IPV4_RE.fullmatch(match.group(0)) else "<phone>"


def redact(text: str) -> str:
    """Mask e-mail addresses and phone-number-like digit runs in free text."""
    text = _EMAIL_RE.sub("<email>", text)
    return _PHONE_RE.sub(_mask_phone, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and safe extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a redacted JSON line."""
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _STD_ATTRS or key.startswith("_"):
                continue
            if key.lower() in PERSONAL_KEYS:
                out[key] = "<redacted>"
            elif isinstance(value, str | int | float | bool) or value is None:
                out[key] = redact(value) if isinstance(value, str) else value
            else:
                out[key] = redact(str(value))
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: tracebacks can carry field values in locals' reprs.
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = redact(str(record.exc_info[1]))[:500]
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, redacted like the JSON form."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a redacted text line."""
        return redact(super().format(record))


def configure_logging(level: str = "INFO", *, json_logs: bool = True) -> None:
    """Send every log record to stderr through a redacting formatter (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    handler.set_name("crmsync")
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "crmsync":
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Access logs name paths with device ids and checkpoints; our metrics cover them.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (0, 1, 10, 50, 100, 500, 1000, 2000, 5000)


class Metrics:
    """The gateway's Prometheus metrics, in a registry of their own.

    One instance per process, shared by the sync app and the admin app; ``/metrics`` on
    the admin port renders :meth:`render`.
    """

    content_type: ClassVar[str] = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "crmsync_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "crmsync_http_request_seconds",
            "HTTP request latency by route and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.push_outcomes = Counter(
            "crmsync_push_mutations",
            "Pushed mutations by outcome (applied, merged, conflict, rejected).",
            ["outcome"],
            registry=r,
        )
        self.push_answers = Counter(
            "crmsync_push_answers",
            "Push answers: done (result in time), pending (202), replay (stored result).",
            ["answer"],
            registry=r,
        )
        self.pull_changes = Histogram(
            "crmsync_pull_changes",
            "Records per pull page.",
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.pull_actions = Counter(
            "crmsync_pull_actions",
            "Pull answers that told the device to resync or wipe.",
            ["action"],
            registry=r,
        )
        self.bootstrap_records = Counter(
            "crmsync_bootstrap_records", "Records streamed by bootstraps.", registry=r
        )
        self.ws_connections = Gauge(
            "crmsync_ws_connections", "Open WebSocket event connections.", registry=r
        )
        self.ws_channels = Gauge(
            "crmsync_ws_channel_subscriptions",
            "Channels this process is subscribed to for its sockets.",
            registry=r,
        )
        self.ws_pokes = Counter("crmsync_ws_pokes", "Change pokes sent to devices.", registry=r)
        self.auth_failures = Counter(
            "crmsync_auth_failures", "Rejected requests by auth error code.", ["code"], registry=r
        )
        self.errors = Counter(
            "crmsync_problem_responses",
            "Problem responses by stable error code.",
            ["code", "status"],
            registry=r,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        """The exposition text for ``/metrics``."""
        return generate_latest(self.registry)


def monotonic() -> float:
    """Seconds from a monotonic clock (for latency measurements)."""
    return time.perf_counter()
