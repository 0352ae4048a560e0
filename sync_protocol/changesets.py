"""Push: mutations, changesets and their per-mutation outcomes."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .hlc import HLC

Op = Literal["upsert", "delete"]

Outcome = Literal["applied", "merged", "conflict", "rejected"]
"""What happened to a mutation.

``applied``: written as sent, nothing concurrent on the server. ``merged``: written, and
merged with concurrent server changes to other fields (or won a concurrent field).
``conflict``: at least one field (or the delete) lost to a concurrent change, or is
held for manual resolution; ``fields`` shows the winning values. ``rejected``: nothing
was written; ``code`` says why.
"""

FieldOutcome = Literal["applied", "unchanged", "overridden", "held"]
"""Per field: ``applied`` (device value live), ``unchanged`` (already that value),
``overridden`` (a concurrent server value won), ``held`` (manual conflict opened)."""


class Mutation(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One change to one record.

    Not GC-tracked (``gc=False``): atoms, an :class:`HLC` and a dict of JSON values cannot
    refer back to the mutation, so it can never be part of a reference cycle.

    Attributes:
        entity: entity name.
        id: record UUID (devices create ids offline; Dynamics keeps the same GUID).
        op: ``upsert`` (create or partial update) or ``delete``.
        base_version: the record version the change was made on; 0 for a create.
        fields: only the fields the change sets (``None`` clears a field).
        clock: hybrid logical clock of the change on the device.
        etag: upstream writes only: the Dynamics ETag of the source row.
    """

    entity: str
    id: str
    clock: HLC
    op: Op = "upsert"
    base_version: int = 0
    fields: dict[str, Any] = {}
    etag: str | None = None


class PushRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A device's changeset.

    ``changeset_id`` is ``<device_id>:<counter>`` with a counter that only grows: it is the
    idempotency key, so a retry after a network failure reuses it.
    """

    protocol: int
    changeset_id: str
    device_id: str
    mutations: list[Mutation]
    schema_version: int = 1


class MutationResult(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The outcome of one mutation, with the values that won.

    Not GC-tracked (``gc=False``): atoms, dicts of JSON values or literals and a list of
    strings cannot refer back to the result, so it can never be part of a reference cycle.
    """

    index: int
    entity: str
    id: str
    outcome: Outcome
    version: int = 0
    fields: dict[str, Any] = {}
    field_outcomes: dict[str, FieldOutcome] = {}
    deleted: bool = False
    code: str | None = None
    message: str | None = None
    conflict_ids: list[str] = []


class ChangesetResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The stored result of a whole changeset, replayed verbatim on a retry."""

    changeset_id: str
    results: list[MutationResult]
    seq: int = 0
    status: Literal["done", "pending"] = "done"


class UpstreamBatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Changes from the system of record (importer or file import) for the applier."""

    batch_id: str
    source: str
    mutations: list[Mutation]
