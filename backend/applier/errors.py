"""Applier errors with stable codes.

Per-mutation problems (schema, permission, scope) are never exceptions: they become a
``rejected`` outcome in the changeset result. These errors are about the applier itself.
"""

from __future__ import annotations

from typing import ClassVar


class ApplierError(Exception):
    """Base of every applier error."""

    code: ClassVar[str] = "applier.error"


class ApplierConfigError(ApplierError):
    """The applier configuration is invalid (raised when it is loaded)."""

    code = "applier.config_invalid"


class MalformedMessageError(ApplierError):
    """A stream message is not a valid envelope or batch; it is dead-lettered, not retried."""

    code = "applier.malformed_message"


class RetriesExhaustedError(ApplierError):
    """Records kept changing under the merge; the message goes back for a later retry."""

    code = "applier.retries_exhausted"

    def __init__(self, changeset_id: str, attempts: int) -> None:
        self.changeset_id = changeset_id
        self.attempts = attempts
        super().__init__(f"{changeset_id}: records changed under {attempts} merge attempts")
