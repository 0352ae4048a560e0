"""Per-channel replica checksums that server and SDK compute identically.

A channel's checksum is the record count plus the sum, modulo 2**64, of a 64-bit hash
of each live record's ``(entity, id, version, fields)``. Addition is commutative and
invertible, so the checksum does not depend on order and is updated in O(1) when a
record is added, changed or removed. Equal replicas give equal checksums; different ones
collide with probability about 2**-64.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

_MASK = (1 << 64) - 1
_encode = msgspec.json.Encoder(order="sorted").encode


def record_hash(entity: str, id: str, version: int, fields: Mapping[str, Any]) -> int:
    """64-bit hash of one live record's synced content."""
    return encoded_record_hash(entity, id, version, _encode(fields))


def encoded_record_hash(entity: str, id: str, version: int, fields_json: bytes) -> int:
    """:func:`record_hash` of a record whose fields are already canonical JSON (keys
    sorted, as a replica stores them), without encoding them again."""
    digest = hashlib.blake2b(
        b"%b\x00%b\x00%b%b"
        % (entity.encode(), id.encode(), version.to_bytes(8, "little"), fields_json),
        digest_size=8,
    ).digest()
    return int.from_bytes(digest, "little")


class ChannelChecksum(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """``[count, digest]`` of the live records in one channel (two ints: not GC-tracked)."""

    count: int = 0
    digest: int = 0

    def add(self, h: int) -> ChannelChecksum:
        """The checksum with a record of hash ``h`` added."""
        return ChannelChecksum(self.count + 1, (self.digest + h) & _MASK)

    def remove(self, h: int) -> ChannelChecksum:
        """The checksum with a record of hash ``h`` removed."""
        return ChannelChecksum(self.count - 1, (self.digest - h) & _MASK)

    def replace(self, old: int, new: int) -> ChannelChecksum:
        """The checksum after one record's hash changed from ``old`` to ``new``."""
        return ChannelChecksum(self.count, (self.digest - old + new) & _MASK)


EMPTY = ChannelChecksum()


def checksum_of(hashes: Iterable[int]) -> ChannelChecksum:
    """The checksum of a set of record hashes, computed from scratch."""
    count = 0
    digest = 0
    for h in hashes:
        count += 1
        digest += h
    return ChannelChecksum(count, digest & _MASK)
