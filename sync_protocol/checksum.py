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
    h = hashlib.blake2b(digest_size=8)
    h.update(entity.encode())
    h.update(b"\x00")
    h.update(id.encode())
    h.update(b"\x00")
    h.update(version.to_bytes(8, "little", signed=False))
    h.update(_encode(fields))
    return int.from_bytes(h.digest(), "little")


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
