"""Applier configuration: one frozen value, validated when it is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from backend.applier.errors import ApplierConfigError

ENV_PREFIX = "CRMSYNC_APPLIER_"
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ApplierConfig:
    """How the applier merges, retries, consumes and compacts.

    Attributes:
        max_skew_ms: How far a device clock may run ahead of server time before the merge
            bounds it (a phone with a fast clock must not win every conflict).
        max_retries: Re-read and re-merge attempts after an optimistic-concurrency
            conflict (another applier wrote one of the records first).
        changesets_durable: Durable consumer on ``SYNC_CHANGESETS`` shared by every applier.
        upstream_durable: Durable consumer on ``SYNC_UPSTREAM`` shared by every applier.
        changeset_workers: Pull loops on the changesets stream in this process.
        upstream_workers: Pull loops on the upstream stream in this process.
        changeset_batch: Changesets fetched at once by one loop.
        upstream_batch: Upstream batches fetched at once by one loop (each holds thousands
            of records already).
        max_concurrency: Group commits and upstream batches applied at the same time in
            this process (changesets of one device are always applied one after the
            other, in stream order).
        fetch_wait_s: Longest idle wait per fetch; bounds how long a graceful stop takes.
        tombstone_retention_ms: How long tombstones and removal entries are kept: the
            longest a device may stay offline and still catch up by pull.
        compact_interval_s: Pause between compaction runs (0 disables compaction here).
    """

    max_skew_ms: int = 60_000
    max_retries: int = 8
    changesets_durable: str = "applier-changesets"
    upstream_durable: str = "applier-upstream"
    changeset_workers: int = 2
    upstream_workers: int = 1
    changeset_batch: int = 32
    upstream_batch: int = 4
    max_concurrency: int = 16
    fetch_wait_s: float = 0.5
    tombstone_retention_ms: int = 30 * _DAY_MS
    compact_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in (
            "changeset_workers",
            "upstream_workers",
            "changeset_batch",
            "upstream_batch",
            "max_concurrency",
        ):
            if int(getattr(self, name)) < 1:
                raise ApplierConfigError(f"{name} must be at least 1")
        if self.max_skew_ms < 0:
            raise ApplierConfigError("max_skew_ms must not be negative")
        if self.max_retries < 0:
            raise ApplierConfigError("max_retries must not be negative")
        if self.fetch_wait_s <= 0:
            raise ApplierConfigError("fetch_wait_s must be positive")
        if self.tombstone_retention_ms <= 0:
            raise ApplierConfigError("tombstone_retention_ms must be positive")
        if self.compact_interval_s < 0:
            raise ApplierConfigError("compact_interval_s must be zero (off) or positive")
        for name in ("changesets_durable", "upstream_durable"):
            value = getattr(self, name)
            if not value or any(ch in value for ch in ".*>/\\ \t"):
                raise ApplierConfigError(f"{name} {value!r} is not a valid consumer name")

    def with_overrides(self, **changes: Any) -> ApplierConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApplierConfig:
        """Build a config from ``CRMSYNC_APPLIER_<FIELD>`` variables (unset ones keep defaults).

        Raises:
            ApplierConfigError: A value cannot be parsed or is out of range.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                if f.type == "int":
                    values[f.name] = int(raw)
                elif f.type == "float":
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as e:
                raise ApplierConfigError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {f.type}"
                ) from e
        return cls(**values)
