"""The composition root: one :class:`Emulator` holds every part of a running emulator.

It is what ``create_app`` puts into ``app.state.emulator`` and what tests drive directly:
:meth:`Emulator.mutate` changes records "as another Dynamics user" (the way a salesperson
editing in the CRM would), :meth:`Emulator.issue_token` mints a bearer token without the
OAuth round trip, and ``faults``/``protection`` can be reconfigured while requests flow.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from infra.dynamics_emulator.auth import IssuedToken, TokenService
from infra.dynamics_emulator.batch import BatchProcessor
from infra.dynamics_emulator.clock import Clock, SystemClock
from infra.dynamics_emulator.config import SIZED_ENTITY_SETS, EmulatorConfig
from infra.dynamics_emulator.dataset import Dataset
from infra.dynamics_emulator.errors import (
    BadRequestError,
    RecordNotFoundError,
    ResourceNotFoundError,
)
from infra.dynamics_emulator.faults import FaultInjector
from infra.dynamics_emulator.generator import DatasetGenerator, Row
from infra.dynamics_emulator.identity import normalize_guid
from infra.dynamics_emulator.overlay import OverlayStore
from infra.dynamics_emulator.payload import parse_payload
from infra.dynamics_emulator.protection import ServiceProtection
from infra.dynamics_emulator.schema import TABLES
from infra.dynamics_emulator.service import WebApiService

MutationOp = Literal["create", "update", "delete"]


def dataset_fingerprint(config: EmulatorConfig) -> str:
    """Identify the generated dataset (seed, counts, epoch) an overlay file belongs to."""
    counts = ",".join(f"{name}={config.count(name)}" for name in sorted(config.counts))
    digest = hashlib.sha256(f"{config.seed}|{counts}|{config.dataset_epoch}".encode()).hexdigest()
    return f"seed={config.seed};sha256={digest[:16]}"


class Emulator:
    """All state of one emulated Dynamics 365 organisation.

    Args:
        config: The configuration.
        clock: Time source (a :class:`~infra.dynamics_emulator.clock.ManualClock` in tests).
    """

    def __init__(self, config: EmulatorConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        counts = {name: config.count(name) for name in SIZED_ENTITY_SETS}
        self.generator = DatasetGenerator(config.seed, counts, config.epoch())
        self.overlay = OverlayStore(
            self.generator.version_ceiling,
            config.overlay_path,
            dataset_fingerprint(config),
        )
        self.dataset = Dataset(self.generator, self.overlay, self.clock)
        self.service = WebApiService(self.dataset, config)
        self.service.batch_handler = BatchProcessor(self.service, self.overlay, config)
        self.tokens = TokenService(config.auth, self.clock)
        self.protection = ServiceProtection(config.limits, self.clock)
        self.faults = FaultInjector(config.faults)

    def issue_token(
        self, client_id: str = "crmsync-importer", lifetime_s: int | None = None
    ) -> str:
        """Return a bearer token for ``client_id`` without the OAuth round trip."""
        issued: IssuedToken = self.tokens.issue_for(client_id, lifetime_s=lifetime_s)
        return issued.access_token

    def user_guid(self, user: int | str | None) -> str:
        """Resolve a system user given by index or GUID (``None``: the integration user).

        Raises:
            RecordNotFoundError: No such system user.
        """
        if user is None:
            return self.dataset.default_actor
        if isinstance(user, int):
            if not 0 <= user < self.generator.count("systemusers"):
                raise RecordNotFoundError("systemuser", str(user))
            return self.generator.user_guid(user)
        guid = normalize_guid(user)
        if guid is None or self.dataset.get("systemusers", guid) is None:
            raise RecordNotFoundError("systemuser", str(user))
        return guid

    def mutate(
        self,
        op: MutationOp,
        entity_set: str,
        record_id: str | None = None,
        fields: dict[str, Any] | None = None,
        *,
        user: int | str | None = None,
    ) -> Row | None:
        """Change a record as a Dynamics user would in the CRM (bypassing auth and limits).

        Args:
            op: ``create``, ``update`` or ``delete``.
            entity_set: Table, e.g. ``accounts``.
            record_id: GUID of the record (optional for ``create``).
            fields: Column values, in Web API payload form (``@odata.bind`` for lookups).
            user: Acting system user (index or GUID); recorded as ``modifiedby``.

        Returns:
            The resulting row, or ``None`` for a delete.

        Raises:
            ResourceNotFoundError: Unknown entity set.
            RecordNotFoundError: The record (or acting user) does not exist.
            BadRequestError: Unknown operation or missing id.
            PayloadError: Invalid fields.
        """
        table = TABLES.get(entity_set)
        if table is None:
            raise ResourceNotFoundError(entity_set)
        actor = self.user_guid(user)
        guid = normalize_guid(record_id) if record_id is not None else None
        if record_id is not None and guid is None:
            raise BadRequestError(f"'{record_id}' is not a GUID.")
        if op == "delete":
            if guid is None:
                raise BadRequestError("delete needs the record id.")
            self.dataset.delete(entity_set, guid)
            return None
        payload = parse_payload(table, fields or {}, self.dataset)
        if op == "create":
            return self.dataset.create(
                entity_set, payload.values, guid=guid or payload.key, actor=actor
            )
        if op == "update":
            if guid is None:
                raise BadRequestError("update needs the record id.")
            return self.dataset.update(entity_set, guid, payload.values, actor=actor)
        raise BadRequestError(f"Unknown mutation '{op}'; use create, update or delete.")

    def reset(self) -> None:
        """Drop every API change and every rate window (back to the generated dataset)."""
        self.overlay.clear()
        self.protection.reset()

    def close(self) -> None:
        """Release the overlay file."""
        self.overlay.close()
