"""Record identities: deterministic, random-looking GUIDs that decode back to a record index.

A generated record is addressed by (seed, table, index). Its GUID is built from two 64-bit
halves::

    a = mix64((index + k1) mod 2**64)     # a keyed bijection of the index
    b = mix64(a XOR k2)                   # a check value, also the record's random bits

``mix64`` is the SplitMix64 finaliser, a bijection on 64-bit integers with a known inverse, so
``GET /accounts(<guid>)`` finds the index in O(1) (:meth:`TableIdentity.index_of`) and rejects
GUIDs of other tables or seeds because ``b`` does not match. Nothing is stored per record.

``b`` is uniformly distributed and is used as the record's first 64 random bits, which saves a
hash per record on the hot path.
"""

from __future__ import annotations

M64 = (1 << 64) - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_C1_INV = pow(_C1, -1, 1 << 64)
_C2_INV = pow(_C2, -1, 1 << 64)
_GOLDEN = 0x9E3779B97F4A7C15


def mix64(x: int) -> int:
    """Return the SplitMix64 finaliser of a 64-bit integer (a bijection)."""
    x = ((x ^ (x >> 30)) * _C1) & M64
    x = ((x ^ (x >> 27)) * _C2) & M64
    return x ^ (x >> 31)


def unmix64(y: int) -> int:
    """Return the inverse of :func:`mix64`."""
    y = y ^ (y >> 31) ^ (y >> 62)
    y = (y * _C2_INV) & M64
    y = y ^ (y >> 27) ^ (y >> 54)
    y = (y * _C1_INV) & M64
    return y ^ (y >> 30) ^ (y >> 60)


def derive_key(seed: int, *parts: int) -> int:
    """Derive a 64-bit key from a seed and small integers (table codes, purposes)."""
    key = mix64((seed * _GOLDEN) & M64)
    for part in parts:
        key = mix64((key ^ (part * _GOLDEN)) & M64)
    return key


def format_guid(value: int) -> str:
    """Format a 128-bit integer as a lowercase 8-4-4-4-12 GUID string."""
    # bytes.hex with a separator is several times faster than slicing a format string.
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

    __slots__ = ("count", "k1", "k2", "k3")

    def __init__(self, seed: int, table_code: int, count: int) -> None:
        self.k1 = derive_key(seed, table_code, 1)
        self.k2 = derive_key(seed, table_code, 2)
        self.k3 = derive_key(seed, table_code, 3)
        self.count = count

    def halves(self, index: int) -> tuple[int, int]:
        """Return the two 64-bit halves ``(a, b)`` of record ``index``'s GUID."""
        a = mix64((index + self.k1) & M64)
        return a, mix64(a ^ self.k2)

    def guid(self, index: int) -> str:
        """Return the GUID string of record ``index``."""
        a = mix64((index + self.k1) & M64)
        return format_guid((a << 64) | mix64(a ^ self.k2))

    def index_of(self, guid: str) -> int | None:
        """Return the index of the generated record with this GUID, or ``None``.

        ``None`` also for well-formed GUIDs of other tables, other seeds, indices beyond the
        configured count, and client-chosen GUIDs.
        """
        value = parse_guid(guid)
        if value is None:
            return None
        return self.index_of_int(value)

    def index_of_int(self, value: int) -> int | None:
        """Like :meth:`index_of` for a GUID already parsed into an integer."""
        a = value >> 64
        if mix64(a ^ self.k2) != value & M64:
            return None
        index = (unmix64(a) - self.k1) & M64
        return index if index < self.count else None

    def extra_random(self, b: int) -> int:
        """Return 64 more random bits for a record whose first random bits are ``b``."""
        return mix64(b ^ self.k3)
