"""Pull and bootstrap: what a device receives."""

from __future__ import annotations

from typing import Literal

import msgspec

from .changesets import ChangesetResult
from .checksum import ChannelChecksum
from .records import RecordChange

Action = Literal["none", "resync", "wipe"]
"""What the device must do besides applying the page: ``resync`` (checkpoint too old:
re-bootstrap, keeping unsynced local changes) or ``wipe`` (device revoked: crypto-shred)."""


class Removal(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A record the device must purge because no remaining grant covers it.

    Only strings: it cannot be part of a reference cycle, so it is not GC-tracked.
    """

    entity: str
    id: str
    reason: Literal["scope", "purged"] = "scope"


class PullResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One page of changes after a checkpoint.

    Attributes:
        checkpoint: opaque token for the next pull; apply the page and store it in one
            transaction.
        has_more: another page is ready now.
        changes: records in sequence order (tombstones have ``deleted``).
        removals: records that left the caller's scope.
        results: outcomes of this device's changesets applied since the last pull.
        write_checkpoint: the highest sequence that includes this device's acknowledged
            writes; the page is consistent with them once the checkpoint passes it.
        checksums: per-channel checksums as of ``checkpoint`` (on the last page only).
        action: what else the device must do.
    """

    protocol: int
    checkpoint: str
    has_more: bool
    changes: list[RecordChange] = []
    removals: list[Removal] = []
    results: list[ChangesetResult] = []
    write_checkpoint: int = 0
    checksums: dict[str, ChannelChecksum] = {}
    action: Action = "none"


class BootstrapBatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One bounded batch of a streamed snapshot; ``resume`` restarts after it."""

    records: list[RecordChange]
    resume: str
    done: bool = False
    checkpoint: str = ""
    total: int = 0
