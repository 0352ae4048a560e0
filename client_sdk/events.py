"""What the SDK tells the host app: progress, conflicts, rejections, errors, wipe.

The app subscribes a callback to an :class:`EventBus` (``client.events.subscribe(fn)``)
and switches on the event type. Callbacks run synchronously on the thread that caused
the event (the sync loop or a local write); an exception in one is logged and never
reaches the sync engine, so a buggy UI handler cannot stall synchronisation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from sync_protocol.changesets import MutationResult

_log = logging.getLogger(__name__)

Phase = Literal["push", "pull", "bootstrap", "resync", "repair"]


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Progress of one sync phase.

    ``total`` is 0 when the server did not say (pull pages); for a bootstrap it is the
    snapshot's record count, so ``done / total`` drives a progress bar.
    """

    phase: Phase
    done: int
    total: int = 0


@dataclass(frozen=True, slots=True)
class ConflictResolved:
    """A pushed mutation lost (some of) its fields to a concurrent change.

    ``result.fields`` holds the values that won; the local record already shows them.
    ``result.code`` is ``conflict_overridden``, ``conflict_held`` (a person will decide),
    ``record_deleted`` or ``record_updated``.
    """

    mutation_id: str
    result: MutationResult


@dataclass(frozen=True, slots=True)
class MutationRejected:
    """The server refused a mutation; it now sits in ``client.rejections()``.

    The local record keeps showing the edit until the app calls ``retry`` or ``discard``.
    """

    mutation_id: str
    entity: str
    id: str
    code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class SyncCompleted:
    """A sync cycle finished: everything pushable was pushed and the replica is caught up."""

    pushed: int
    pulled: int
    checksum_ok: bool | None = None


@dataclass(frozen=True, slots=True)
class SyncFailed:
    """A sync cycle failed; ``retry_in`` is the back-off before the next attempt (seconds).

    ``code`` is the stable code of the error (``network_error``, ``server_unavailable``...).
    """

    code: str
    message: str
    retryable: bool
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class ResyncStarted:
    """The replica is being rebuilt from a fresh snapshot (unsynced local edits are kept).

    ``reason``: ``checkpoint_too_old`` or ``checksum_mismatch``.
    """

    reason: str
    channels: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ReplicaWiped:
    """The device was revoked and the local replica crypto-shredded; the client is closed."""

    reason: str = "device_revoked"


Event: TypeAlias = (
    SyncProgress
    | ConflictResolved
    | MutationRejected
    | SyncCompleted
    | SyncFailed
    | ResyncStarted
    | ReplicaWiped
)
Listener: TypeAlias = Callable[[Event], object]


class EventBus:
    """Fan-out of SDK events to the app's callbacks (thread-safe subscribe/unsubscribe)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on.

        Returns:
            A function that unsubscribes it.
        """
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every listener; a failing listener is logged and skipped."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                _log.exception("event listener failed on %s", type(event).__name__)


__all__ = [
    "ConflictResolved",
    "Event",
    "EventBus",
    "Listener",
    "MutationRejected",
    "ReplicaWiped",
    "ResyncStarted",
    "SyncCompleted",
    "SyncFailed",
    "SyncProgress",
]
