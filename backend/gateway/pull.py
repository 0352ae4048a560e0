"""Pull: the caller's scoped change feed after a checkpoint, with removals and grant diffs.

A page is built from three kinds of work, in this order, within the page's entry budget:

1. **Removal sweeps** for channels the caller lost since its checkpoint: the lost
   channel's feed is read up to the checkpoint's sequence, and every record in it that
   no remaining grant covers (re-read now) becomes a :class:`Removal`.
2. **Backfills** for channels the caller gained: the channel's feed is read from the
   start up to the checkpoint's sequence, after which the channel joins the main feed.
3. **The main feed** of the caller's other channels after the checkpoint's sequence.

Sweep and backfill progress ride in the checkpoint's ``backfill`` map (a sweep's key is
the channel prefixed with ``-``, which no channel name starts with), so a grant change
costs work proportional to the channels that changed, never a resync of everyone. The
channel set a checkpoint was issued for is remembered per device by scope hash; if a
checkpoint's scope is unknown, or it is older than tombstone retention, or the store no
longer holds the feed after it, the answer is ``action: "resync"``: the SDK keeps its
unsynced changes and bootstraps again.

Feed removal entries (a record left a channel) purge the record on the device only if the
record's *current* channels share nothing with the caller's grants; a record entry whose
channels no longer intersect the grants is never sent, it is treated the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from backend.auth.devices import DeviceEntry, DeviceRegistry
from backend.auth.principal import Principal
from backend.store.base import RecordStore
from backend.store.errors import CheckpointTooOldError
from backend.store.types import FeedEntry
from sync_protocol.changesets import ChangesetResult
from sync_protocol.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint, scope_hash
from sync_protocol.pull import PullResponse, Removal
from sync_protocol.records import Record, RecordChange
from sync_protocol.rules import grant_diff
from sync_protocol.version import PROTOCOL_VERSION

SWEEP_PREFIX = "-"


def _ms() -> int:
    return int(time.time() * 1000)


def change_for(record: Record, grants: frozenset[str]) -> RecordChange:
    """The record as the caller receives it: only the caller's channels are named."""
    return scoped(record.to_change(), grants)


def scoped(change: RecordChange, grants: frozenset[str]) -> RecordChange:
    """``change`` naming only the caller's channels (it is changed in place)."""
    change.channels = tuple(c for c in change.channels if c in grants)
    return change


def rescope(cp: Checkpoint, old: frozenset[str], new: frozenset[str], scope: int) -> Checkpoint:
    """The checkpoint re-targeted from channel set ``old`` to ``new``.

    Gained channels are backfilled from the start; lost channels are swept for removals
    up to the checkpoint's sequence; a lost channel that was still backfilling is swept
    instead; a regained channel that was being swept is backfilled again.
    """
    diff = grant_diff(old, new)
    backfill: dict[str, int] = {}
    for key, progress in cp.backfill.items():
        if key.startswith(SWEEP_PREFIX):
            channel = key[len(SWEEP_PREFIX) :]
            if channel in diff.added:
                continue  # backfilled again below
            backfill[key] = progress
        elif key in diff.removed:
            backfill[SWEEP_PREFIX + key] = 0
        else:
            backfill[key] = progress
    for channel in diff.added:
        backfill[channel] = 0
    for channel in diff.removed:
        if cp.seq > 0:
            backfill.setdefault(SWEEP_PREFIX + channel, 0)
    return Checkpoint(
        seq=cp.seq, user=cp.user, scope=scope, issued_ms=cp.issued_ms, backfill=backfill
    )


class _Page:
    """What one pull collects."""

    def __init__(self, grants: frozenset[str], budget: int) -> None:
        self.grants = grants
        self.budget = budget
        self.changes: list[RecordChange] = []
        self.removals: dict[tuple[str, str], Removal] = {}


class FeedReader:
    """Builds pull pages for a caller's device.

    Args:
        store: the record store.
        devices: the device registry (remembers the channel sets checkpoints are for).
        checkpoint_key: HMAC key of checkpoint tokens.
        retention_ms: tombstone retention; an older checkpoint gets "resync".
        clock: wall time in ms.
    """

    def __init__(
        self,
        store: RecordStore,
        devices: DeviceRegistry,
        *,
        checkpoint_key: bytes,
        retention_ms: int,
        clock: Callable[[], int] = _ms,
    ) -> None:
        self.store = store
        self.devices = devices
        self.key = checkpoint_key
        self.retention_ms = retention_ms
        self.clock = clock

    def encode(self, cp: Checkpoint) -> str:
        """Sign a checkpoint into its opaque token."""
        return encode_checkpoint(cp, self.key)

    async def pull(
        self, principal: Principal, device: DeviceEntry, token: str | None, limit: int
    ) -> PullResponse:
        """One page of the caller's changes after ``token`` (from the start without one).

        Raises:
            InvalidCheckpointError: the token is malformed, forged or another user's.
        """
        grants = principal.channels
        scope = scope_hash(grants)
        now = self.clock()
        if token:
            cp = decode_checkpoint(token, self.key, principal.user)
        else:
            cp = Checkpoint(seq=0, user=principal.user, scope=scope, issued_ms=now)
        results = await self.store.device_results(device.device_id, cp.seq)
        if token and now - cp.issued_ms > self.retention_ms:
            return self._resync(results)
        if cp.scope != scope:
            old = self.devices.known_scope(device, cp.scope)
            if old is None:
                return self._resync(results)
            cp = rescope(cp, old, grants, scope)
        await self.devices.remember_scope(device, scope, grants)

        page = _Page(grants, limit)
        backfill = dict(cp.backfill)
        try:
            await self._sweeps(page, backfill, cp.seq)
            await self._backfills(page, backfill, cp.seq)
            seq = cp.seq
            has_more = bool(backfill)
            checksums = {}
            if not backfill and page.budget > 0:
                main = sorted(grants)
                if main:
                    feed = await self.store.changes(main, cp.seq, page.budget, with_checksums=True)
                    await self._take(page, feed.entries, up_to=None)
                    seq = max(seq, feed.last_seq)
                    has_more = feed.has_more
                    if not has_more:
                        checksums = {c: v for c, v in feed.checksums.items() if c in grants}
            elif not backfill:
                has_more = True
        except CheckpointTooOldError:
            return self._resync(results)
        next_cp = Checkpoint(
            seq=seq, user=principal.user, scope=scope, issued_ms=now, backfill=backfill
        )
        return PullResponse(
            protocol=PROTOCOL_VERSION,
            checkpoint=self.encode(next_cp),
            has_more=has_more,
            changes=page.changes,
            removals=list(page.removals.values()),
            results=results,
            write_checkpoint=max((r.seq for r in results), default=0),
            checksums=checksums,
        )

    def _resync(self, results: list[ChangesetResult]) -> PullResponse:
        return PullResponse(
            protocol=PROTOCOL_VERSION,
            checkpoint="",
            has_more=False,
            results=results,
            write_checkpoint=max((r.seq for r in results), default=0),
            action="resync",
        )

    async def _sweeps(self, page: _Page, backfill: dict[str, int], target: int) -> None:
        for key in sorted(k for k in backfill if k.startswith(SWEEP_PREFIX)):
            if page.budget <= 0:
                return
            channel = key[len(SWEEP_PREFIX) :]
            feed = await self.store.changes([channel], backfill[key], page.budget)
            entries = [e for e in feed.entries if e.seq <= target]
            page.budget -= len(feed.entries)
            await self._removals_only(page, entries)
            if feed.last_seq >= target or not feed.has_more:
                del backfill[key]
            else:
                backfill[key] = feed.last_seq

    async def _backfills(self, page: _Page, backfill: dict[str, int], target: int) -> None:
        while page.budget > 0:
            pending = {k: v for k, v in backfill.items() if not k.startswith(SWEEP_PREFIX)}
            if not pending:
                return
            # Channels at the same progress share one feed read.
            low = min(pending.values())
            group = sorted(k for k, v in pending.items() if v == low)
            feed = await self.store.changes(group, low, page.budget)
            page.budget -= len(feed.entries)
            await self._take(page, feed.entries, up_to=target)
            if feed.last_seq >= target or not feed.has_more:
                for channel in group:
                    del backfill[channel]
            else:
                for channel in group:
                    backfill[channel] = feed.last_seq

    async def _take(self, page: _Page, entries: Iterable[FeedEntry], up_to: int | None) -> None:
        undecided: list[FeedEntry] = []
        for entry in entries:
            if up_to is not None and entry.seq > up_to:
                continue  # the main feed delivers it once the channel has joined
            change = entry.change
            if change is not None and page.grants.intersection(change.channels):
                page.changes.append(scoped(change, page.grants))
            else:
                undecided.append(entry)
        await self._removals_only(page, undecided)

    async def _removals_only(self, page: _Page, entries: list[FeedEntry]) -> None:
        keys = list(dict.fromkeys((e.entity, e.id) for e in entries))
        if not keys:
            return
        current = await self.store.get_many(keys)
        for key in keys:
            record = current.get(key)
            if record is None:
                page.removals[key] = Removal(entity=key[0], id=key[1], reason="purged")
            elif not page.grants.intersection(record.channels):
                page.removals[key] = Removal(entity=key[0], id=key[1], reason="scope")
