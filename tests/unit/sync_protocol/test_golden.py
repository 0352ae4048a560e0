"""Golden wire fixtures of protocol v1 still decode, and encoding has not drifted."""

from __future__ import annotations

import pytest

from sync_protocol.codec import decode, encode
from tests.support.golden import FIXTURES, MESSAGES


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_golden_fixture_decodes(name: str, fmt: str) -> None:
    expected = MESSAGES[name]
    raw = (FIXTURES / f"v1_{name}.{fmt}").read_bytes()
    assert decode(raw, type(expected), fmt) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_encoding_matches_golden_bytes(name: str, fmt: str) -> None:
    raw = (FIXTURES / f"v1_{name}.{fmt}").read_bytes()
    assert encode(MESSAGES[name], fmt) == raw  # type: ignore[arg-type]
