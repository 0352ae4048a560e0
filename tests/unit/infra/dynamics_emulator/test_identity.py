"""GUIDs that decode to record indices."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from infra.dynamics_emulator.identity import (
    MAX_INDEX,
    TableIdentity,
    format_guid,
    normalize_guid,
    parse_guid,
)


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_format_guid_matches_uuid_and_parses_back(value: int) -> None:
    text = format_guid(value)
    assert text == str(uuid.UUID(int=value))
    assert parse_guid(text) == value
    assert parse_guid("{" + text.upper() + "}") == value


@given(st.integers(min_value=0, max_value=MAX_INDEX))
def test_every_index_round_trips(index: int) -> None:
    ids = TableIdentity(seed=1, table_code=1, count=MAX_INDEX + 1)
    guid = ids.guid(index)
    assert str(uuid.UUID(guid)) == guid
    assert ids.index_of(guid) == index


def test_guid_decodes_only_in_its_table_and_seed() -> None:
    accounts = TableIdentity(seed=1, table_code=1, count=1_000_000)
    contacts = TableIdentity(seed=1, table_code=2, count=1_000_000)
    other_seed = TableIdentity(seed=2, table_code=1, count=1_000_000)
    for index in (0, 1, 999, 65_535, 65_536, 123_456, 999_999):
        guid = accounts.guid(index)
        assert accounts.index_of(guid) == index
        assert accounts.index_of(guid.upper()) == index
        assert contacts.index_of(guid) is None
        assert other_seed.index_of(guid) is None


def test_index_beyond_count_and_foreign_guids_are_rejected() -> None:
    small = TableIdentity(seed=1, table_code=1, count=10)
    big = TableIdentity(seed=1, table_code=1, count=100)
    assert small.index_of(big.guid(50)) is None
    assert all(small.index_of(str(uuid.uuid4())) is None for _ in range(1_000))
    assert small.index_of("not-a-guid") is None


def test_generated_guids_are_distinct_and_bits_are_spread() -> None:
    ids = TableIdentity(seed=3, table_code=1, count=50_000)
    bits = [ids.bits(i) for i in range(50_000)]
    assert len({b[0] for b in bits}) == 50_000
    dice = [b[1:] for b in bits]
    for chunk in range(2, 8):  # the record's dice: roughly uniform 16-bit values
        values = [d[chunk] for d in dice]
        assert 31_000 < sum(values) / len(values) < 34_500
        assert sum(v & 1 for v in values) / len(values) > 0.47


def test_normalize_guid() -> None:
    assert normalize_guid("{AAA4F50A-E2CE-0B7A-F7C0-B57C22FDA755}") == (
        "aaa4f50a-e2ce-0b7a-f7c0-b57c22fda755"
    )
    assert normalize_guid("aaa4f50ae2ce0b7af7c0b57c22fda755") is None
    assert normalize_guid("zzz4f50a-e2ce-0b7a-f7c0-b57c22fda755") is None
