"""Protocol versions this code speaks.

The server serves the current and the previous protocol version while apps update;
every request names its version, and an unsupported one gets a clear upgrade answer.
"""

from __future__ import annotations

from .errors import UnsupportedProtocolVersionError

PROTOCOL_VERSION = 1
"""The version this code writes."""

SUPPORTED_VERSIONS: frozenset[int] = frozenset({PROTOCOL_VERSION})
"""Versions a server accepts: the current one and, once there is one, the previous."""

SCHEMA_VERSION = 1
"""Version of the entity schema (fields, option sets) shipped with this protocol."""


def check_version(version: int) -> int:
    """Return ``version`` if it is served, else raise.

    Raises:
        UnsupportedProtocolVersionError: the version is not in :data:`SUPPORTED_VERSIONS`.
    """
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedProtocolVersionError(
            f"protocol {version} is not served; supported: {sorted(SUPPORTED_VERSIONS)}",
            version=version,
            supported=sorted(SUPPORTED_VERSIONS),
        )
    return version
