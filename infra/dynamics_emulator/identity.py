"""Record identities: deterministic, random-looking GUIDs that decode back to a record index.

A generated record is addressed by (seed, table, index). Its GUID is eight 16-bit chunks::

    c0, c1 = Feistel(index)          # 4 rounds over two 16-bit halves: a keyed bijection
    c2..c7 = chain(c0, c1)           # each from S-box lookups of the two before: check + dice

A round (and a chain step) is ``x ^= A[y & 255] ^ B[y >> 8]`` with ``A``/``B`` random 256-entry
tables drawn per (seed, table). The Feistel network is a bijection on 32-bit indices with a
cheap inverse, so ``GET /accounts(<guid>)`` finds the index in O(1)
(:meth:`TableIdentity.index_of`); a GUID of another table or seed fails the 96-bit check
because its ``c2..c7`` do not match. Nothing is stored per record.

Everything works on small integers and tables that stay in the CPU cache: CPython's arithmetic
on 64-bit integers costs thousands of machine instructions per operation, and large lookup
tables cost cache misses; either would dominate the generator. ``c2..c7`` double as the
record's random bits.
"""

from __future__ import annotations

import random
import struct

M64 = (1 << 64) - 1
#: Largest index a GUID can encode (the Feistel network works on 32 bits).
MAX_INDEX = (1 << 32) - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_GOLDEN = 0x9E3779B97F4A7C15
_PACK = struct.Struct(">8H").pack

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

    __slots__ = ("count", "tables")

    def __init__(self, seed: int, table_code: int, count: int) -> None:
        if count > MAX_INDEX + 1:
            raise ValueError(f"at most {MAX_INDEX + 1} records per table")
        rng = random.Random(derive_key(seed, table_code, 0x5B0C))
        self.tables = tuple(tuple(rng.getrandbits(16) for _ in range(256)) for _ in range(20))
        self.count = count

    def bits(self, index: int) -> RecordBits:
        """Return ``(guid, c0, ..., c7)`` of record ``index``: its GUID and its 16-bit chunks."""
        a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, a6, b6, a7, b7, a8, b8, a9, b9 = self.tables
        left = index >> 16
        right = index & 0xFFFF
        left ^= a0[right & 255] ^ b0[right >> 8]
        right ^= a1[left & 255] ^ b1[left >> 8]
        left ^= a2[right & 255] ^ b2[right >> 8]
        right ^= a3[left & 255] ^ b3[left >> 8]
        c2 = a4[right & 255] ^ b4[left >> 8] ^ left
        c3 = a5[c2 & 255] ^ b5[right >> 8] ^ right
        c4 = a6[c3 & 255] ^ b6[c2 >> 8] ^ c2
        c5 = a7[c4 & 255] ^ b7[c3 >> 8] ^ c3
        c6 = a8[c5 & 255] ^ b8[c4 >> 8] ^ c4
        c7 = a9[c6 & 255] ^ b9[c5 >> 8] ^ c5
        h = _PACK(left, right, c2, c3, c4, c5, c6, c7).hex()
        return (
            f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
            left,
            right,
            c2,
            c3,
            c4,
            c5,
            c6,
            c7,
        )

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
        a0, b0, a1, b1, a2, b2, a3, b3 = self.tables[:8]
        left = value >> 112
        right = (value >> 96) & 0xFFFF
        right ^= a3[left & 255] ^ b3[left >> 8]
        left ^= a2[right & 255] ^ b2[right >> 8]
        right ^= a1[left & 255] ^ b1[left >> 8]
        left ^= a0[right & 255] ^ b0[right >> 8]
        index = (left << 16) | right
        if index >= self.count:
            return None
        return index if int(self.bits(index)[0].replace("-", ""), 16) == value else None
