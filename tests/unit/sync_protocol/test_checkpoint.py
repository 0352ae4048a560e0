"""Checkpoints are opaque, signed and bound to their user."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint, scope_hash
from sync_protocol.errors import InvalidCheckpointError

KEY = b"k" * 32


def test_round_trip() -> None:
    cp = Checkpoint(
        seq=42,
        user="u1",
        scope=scope_hash(["owner:u1"]),
        issued_ms=1,
        backfill={"territory:IT-NW": 7},
    )
    assert decode_checkpoint(encode_checkpoint(cp, KEY), KEY, "u1") == cp


def test_scope_hash_ignores_order_and_duplicates() -> None:
    assert scope_hash(["b", "a", "a"]) == scope_hash(["a", "b"])
    assert scope_hash(["a"]) != scope_hash(["a", "b"])


def test_other_user_key_or_tampering_is_rejected() -> None:
    token = encode_checkpoint(Checkpoint(seq=5, user="u1", scope=0, issued_ms=0), KEY)
    with pytest.raises(InvalidCheckpointError):
        decode_checkpoint(token, KEY, "u2")
    with pytest.raises(InvalidCheckpointError):
        decode_checkpoint(token, b"x" * 32, "u1")
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    with pytest.raises(InvalidCheckpointError):
        decode_checkpoint(flipped, KEY, "u1")


@given(st.text(max_size=200))
def test_garbage_is_an_invalid_checkpoint(token: str) -> None:
    with pytest.raises(InvalidCheckpointError):
        decode_checkpoint(token, KEY, "u1")
