"""Conflict policies and write permissions, as the merge consumes them.

The sync rules file (:mod:`sync_protocol.rules`) builds these; the merge only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FieldPolicy = Literal["lww", "upstream_wins", "manual"]
"""How a field changed concurrently on both sides is resolved.

``lww``: the higher hybrid logical clock wins. ``upstream_wins``: a value from the system
of record beats a device value whatever the clocks. ``manual``: the server value stays
live and the device value is kept in an open conflict for a person to decide.
"""

DeletePolicy = Literal["lww", "delete_wins", "update_wins"]
"""How a delete concurrent with an update is resolved (deletes from upstream always win)."""

FIELD_POLICIES: tuple[str, ...] = ("lww", "upstream_wins", "manual")
DELETE_POLICIES: tuple[str, ...] = ("lww", "delete_wins", "update_wins")


@dataclass(frozen=True, slots=True)
class EntityPolicy:
    """Conflict policy of one entity."""

    default: FieldPolicy = "lww"
    fields: dict[str, FieldPolicy] = field(default_factory=dict)
    delete: DeletePolicy = "lww"

    def for_field(self, name: str) -> FieldPolicy:
        """The policy that resolves concurrent writes to ``name``."""
        return self.fields.get(name, self.default)


DEFAULT_POLICY = EntityPolicy()


@dataclass(frozen=True, slots=True)
class WritePermission:
    """What a profile may do to one entity.

    ``fields`` is the set of writable fields, or ``None`` for every non-system field.
    """

    create: bool = False
    update: bool = False
    delete: bool = False
    fields: frozenset[str] | None = None

    def may_write(self, name: str) -> bool:
        """True if the field may be set by this profile."""
        return self.fields is None or name in self.fields


READ_ONLY = WritePermission()
FULL_ACCESS = WritePermission(create=True, update=True, delete=True)
