"""Record identities: deterministic, random-looking GUIDs that decode back to a record index.

A generated record is addressed by (seed, table, index). Its GUID is eight 16-bit chunks::

    c0, c1 = Feistel(index)          # 4 rounds over two 16-bit halves: a keyed bijection
    c2..c7 = chain(c0, c1)           # c(k) = G[c(k-1) ^ key(k)] ^ c(k-2): check + random bits

The Feistel network is a bijection on 32-bit indices with a cheap inverse, so
``GET /accounts(<guid>)`` finds the index in O(1) (:meth:`TableIdentity.index_of`); a GUID of
another table or seed fails the 96-bit check because its ``c2..c7`` do not match. Nothing is
stored per record.

Everything works on small integers (< 2**30) and table lookups: CPython's arithmetic on 64-bit
integers costs several thousand machine instructions per operation, which would dominate the
generator. The round tables are 65,536 random 16-bit values per seed, shared by all tables
(per-table keys are XORed into the lookups). ``c2..c7`` double as the record's random bits.
"""

from __future__ import annotations

import random
from functools import lru_cache

M64 = (1 << 64) - 1
#: Largest index a GUID can encode (the Feistel network works on 32 bits).
MAX_INDEX = (1 << 32) - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_GOLDEN = 0x9E3779B97F4A7C15
_INTS = tuple(range(65_536))
#: Four hex digits of every 16-bit value: formatting a GUID is eight lookups.
HEX4 = tuple(f"{v:04x}" for v in _INTS)

RecordBits = tuple[str, int, int, int, int, int, int, int, int]


def mix64(x: int) -> int:
    """Return the SplitMix64 finaliser of a 64-bit integer (a bijection); not for hot paths."""
    x = ((x ^ (x >> 30)) * _C1) & M64
    x = ((x ^ (x >> 27)) * _C2) & M64
    return x ^ (x >> 31)


def derive_key(seed: int, *parts: int) -> int:
    """Derive a 64-bit key from a seed and small integers (table codes, purposes)."""
    key = mix64((seed * _GOLDEN) & M64)
    for part in parts:
        key = mix64((key ^ (part * _GOLDEN)) & M64)
    return key


@lru_cache(maxsize=16)
def round_tables(seed: int) -> tuple[tuple[int, ...], ...]:
    """Return the five 65,536-entry random tables of a seed (4 Feistel rounds + the chain)."""
    rng = random.Random(derive_key(seed, 0xF00D))
    tables = []
    for _ in range(5):
        raw = memoryview(rng.randbytes(2 * 65_536)).cast("H")
        tables.append(tuple(map(_INTS.__getitem__, raw)))  # share the int objects
    return tuple(tables)


def format_guid(value: int) -> str:
    """Format a 128-bit integer as a lowercase 8-4-4-4-12 GUID string."""
    h = value.to_bytes(16).hex("-", 2)
    return f"{h[0:4]}{h[5:25]}{h[25:29]}{h[30:34]}{h[35:]}"


def parse_guid(text: str) -> int | None:
    """Parse a GUID (with or without braces, any case) into a 128-bit integer, or ``None``."""
    s = text.strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    if len(s) != 36 or s[8] != "-" or s[13] != "-" or s[18] != "-" or s[23] != "-":
        return None
    compact = s.replace("-", "")
    if len(compact) != 32:
        return None
    try:
        return int(compact, 16)
    except ValueError:
        return None


def normalize_guid(text: str) -> str | None:
    """Return the canonical lowercase form of a GUID string, or ``None`` if it is not one."""
    value = parse_guid(text)
    return None if value is None else format_guid(value)


class TableIdentity:
    """GUIDs and random bits of one generated table (see the module docstring)."""

    __slots__ = ("count", "f0", "f1", "f2", "f3", "g", "keys")

    def __init__(self, seed: int, table_code: int, count: int) -> None:
        if count > MAX_INDEX + 1:
            raise ValueError(f"at most {MAX_INDEX + 1} records per table")
        self.f0, self.f1, self.f2, self.f3, self.g = round_tables(seed)
        self.keys = tuple(derive_key(seed, table_code, n) & 0xFFFF for n in range(10))
        self.count = count

    def bits(self, index: int) -> RecordBits:
        """Return ``(guid, c0, ..., c7)`` of record ``index``: its GUID and its 16-bit chunks."""
        k0, k1, k2, k3, k4, k5, k6, k7, k8, k9 = self.keys
        g = self.g
        left = index >> 16
        right = index & 0xFFFF
        left ^= self.f0[right ^ k0]
        right ^= self.f1[left ^ k1]
        left ^= self.f2[right ^ k2]
        right ^= self.f3[left ^ k3]
        c2 = g[left ^ k4] ^ right
        c3 = g[c2 ^ k5] ^ left
        c4 = g[c3 ^ k6] ^ right
        c5 = g[c4 ^ k7] ^ c2
        c6 = g[c5 ^ k8] ^ c3
        c7 = g[c6 ^ k9] ^ c4
        guid = (
            f"{HEX4[left]}{HEX4[right]}-{HEX4[c2]}-{HEX4[c3]}-{HEX4[c4]}-"
            f"{HEX4[c5]}{HEX4[c6]}{HEX4[c7]}"
        )
        return guid, left, right, c2, c3, c4, c5, c6, c7

    def guid(self, index: int) -> str:
        """Return the GUID string of record ``index``."""
        return self.bits(index)[0]

    def index_of(self, guid: str) -> int | None:
        """Return the index of the generated record with this GUID, or ``None``.

        ``None`` also for well-formed GUIDs of other tables, other seeds, indices beyond the
        configured count, and client-chosen GUIDs.
        """
        value = parse_guid(guid)
        return None if value is None else self.index_of_int(value)

    def index_of_int(self, value: int) -> int | None:
        """Like :meth:`index_of` for a GUID already parsed into an integer."""
        k0, k1, k2, k3 = self.keys[:4]
        left = value >> 112
        right = (value >> 96) & 0xFFFF
        right ^= self.f3[left ^ k3]
        left ^= self.f2[right ^ k2]
        right ^= self.f1[left ^ k1]
        left ^= self.f0[right ^ k0]
        index = (left << 16) | right
        if index >= self.count:
            return None
        return index if int(self.bits(index)[0].replace("-", ""), 16) == value else None
