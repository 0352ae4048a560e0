"""Applier metrics: outcome counters and apply latency, as Prometheus metrics.

Every instance registers on its own registry unless one is given, so tests and several
appliers in one process never collide; the runner exposes the registry over HTTP.
"""

from __future__ import annotations

from collections import Counter as _Tally

from prometheus_client import CollectorRegistry, Counter, Histogram

from sync_protocol.changesets import ChangesetResult

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ApplierMetrics:
    """Counters and histograms the applier updates.

    Args:
        registry: Where to register; a private registry if ``None``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.mutations = Counter(
            "crmsync_applier_mutations",
            "Mutations applied, by source and outcome.",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.changesets = Counter(
            "crmsync_applier_changesets",
            "Changesets and upstream batches handled, by source and kind (new, replay).",
            ["source", "kind"],
            registry=self.registry,
        )
        self.retries = Counter(
            "crmsync_applier_version_conflicts",
            "Re-merges after a record changed under the merge.",
            registry=self.registry,
        )
        self.malformed = Counter(
            "crmsync_applier_malformed_messages",
            "Stream messages that could not be decoded (dead-lettered).",
            registry=self.registry,
        )
        self.compacted = Counter(
            "crmsync_applier_compacted_entries",
            "Tombstones and removal entries dropped by compaction.",
            registry=self.registry,
        )
        self.apply_seconds = Histogram(
            "crmsync_applier_apply_seconds",
            "Time from reading the records to the commit, per changeset or batch.",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Plain tallies mirror the counters for tests and the devstack's summary line.
        self.tally: _Tally[str] = _Tally()

    def record_result(self, source: str, result: ChangesetResult, seconds: float) -> None:
        """Count a freshly applied changeset's outcomes and its latency."""
        self.changesets.labels(source, "new").inc()
        self.tally[f"{source}.changesets"] += 1
        per_outcome: _Tally[str] = _Tally(r.outcome for r in result.results)
        for outcome, n in per_outcome.items():
            self.mutations.labels(source, outcome).inc(n)
            self.tally[f"{source}.{outcome}"] += n
        self.apply_seconds.labels(source).observe(seconds)

    def record_replay(self, source: str) -> None:
        """Count a changeset whose stored result was replayed."""
        self.changesets.labels(source, "replay").inc()
        self.tally[f"{source}.replays"] += 1

    def record_retry(self) -> None:
        """Count a re-merge after a version conflict."""
        self.retries.inc()
        self.tally["retries"] += 1

    def record_malformed(self) -> None:
        """Count a message that could not be decoded."""
        self.malformed.inc()
        self.tally["malformed"] += 1

    def record_compaction(self, dropped: int) -> None:
        """Count entries dropped by compaction."""
        self.compacted.inc(dropped)
        self.tally["compacted"] += dropped
