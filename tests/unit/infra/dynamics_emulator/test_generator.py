"""Deterministic generated records: shape, relationships, languages."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from infra.dynamics_emulator.generator import LOGICAL, DatasetGenerator
from infra.dynamics_emulator.schema import TABLES, Kind

COUNTS = {
    "accounts": 200,
    "contacts": 600,
    "leads": 200,
    "opportunities": 150,
    "quotes": 100,
    "appointments": 200,
    "systemusers": 50,
}
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def _generator(seed: int = 11, counts: dict[str, int] | None = None) -> DatasetGenerator:
    return DatasetGenerator(seed, counts or COUNTS, EPOCH)


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    encode = msgspec.json.encode
    a, b, c = _generator(11), _generator(11), _generator(12)
    for entity_set in ("accounts", "contacts", "appointments"):
        rows_a = encode([a.row(entity_set, i) for i in range(50)])
        assert rows_a == encode([b.row(entity_set, i) for i in range(50)])
        assert rows_a != encode([c.row(entity_set, i) for i in range(50)])


def test_record_does_not_depend_on_the_size_of_its_own_table() -> None:
    small = _generator(counts=dict(COUNTS, leads=10, contacts=10, appointments=10))
    large = _generator(counts=dict(COUNTS, leads=10**6, contacts=10**6, appointments=10**6))
    for entity_set in ("leads", "contacts", "appointments"):
        assert small.row(entity_set, 5) == large.row(entity_set, 5)


def test_rows_have_every_column_in_schema_order_with_key_last() -> None:
    gen = _generator()
    for entity_set, table in TABLES.items():
        row = gen.row(entity_set, 0)
        columns = [k for k in row if "@" not in k]
        assert columns == list(table.column_names()), entity_set
        assert columns[-1] == table.key
        assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'
        assert gen.index_of(entity_set, row[table.key]) == 0


def test_values_have_the_types_dataverse_returns() -> None:
    gen = _generator()
    for entity_set, table in TABLES.items():
        for i in range(min(20, gen.count(entity_set))):
            row = gen.row(entity_set, i)
            for column in table.columns:
                value = row[column.name]
                if value is None:
                    continue
                if column.kind is Kind.DATETIME:
                    assert datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
                elif column.kind is Kind.MONEY:
                    assert isinstance(value, float)
                elif column.kind in (Kind.PICKLIST, Kind.STATE, Kind.STATUS, Kind.INT):
                    assert isinstance(value, int) and not isinstance(value, bool)
                elif column.kind is Kind.BOOL:
                    assert isinstance(value, bool)
                elif column.kind is Kind.STRING and column.max_length:
                    assert len(value) <= column.max_length, (entity_set, column.name, value)


def test_modified_is_never_after_the_epoch_nor_before_created() -> None:
    gen = _generator()
    epoch = "2025-01-01T00:00:00Z"
    for entity_set in ("accounts", "contacts", "leads", "opportunities", "quotes"):
        for i in range(100):
            row = gen.row(entity_set, i)
            assert row["createdon"] <= row["modifiedon"] <= epoch


def test_lookups_point_at_existing_records_of_their_target_table() -> None:
    gen = _generator()
    for entity_set, table in TABLES.items():
        for i in range(gen.count(entity_set)):
            row = gen.row(entity_set, i)
            for column in table.columns:
                if column.kind is not Kind.LOOKUP or row[column.name] is None:
                    continue
                if len(column.targets) > 1:  # polymorphic: the row says which table
                    logical = row[column.name + LOGICAL]
                else:
                    assert column.name + LOGICAL not in row
                    logical = column.targets[0].logical_name
                target = next(t for t in column.targets if t.logical_name == logical)
                assert gen.index_of(target.entity_set, row[column.name]) is not None


def test_related_records_share_the_owner_of_their_account() -> None:
    gen = _generator()
    owner_of = {
        gen.row("accounts", i)["accountid"]: gen.row("accounts", i)["_ownerid_value"]
        for i in range(gen.count("accounts"))
    }
    for i in range(gen.count("contacts")):
        contact = gen.row("contacts", i)
        parent = contact["_parentcustomerid_value"]
        if parent is not None:
            assert contact["_ownerid_value"] == owner_of[parent]
    for i in range(gen.count("opportunities")):
        opportunity = gen.row("opportunities", i)
        assert opportunity["_ownerid_value"] == owner_of[opportunity["_customerid_value"]]
    # Account i's primary contact is contact 3i, which belongs to it.
    for i in range(gen.count("accounts")):
        account = gen.row("accounts", i)
        contact = gen.row("contacts", 3 * i)
        assert account["_primarycontactid_value"] == contact["contactid"]
        assert contact["_parentcustomerid_value"] == account["accountid"]


def test_names_and_addresses_are_multilingual_with_diacritics() -> None:
    gen = _generator(counts=dict(COUNTS, accounts=3_000, contacts=3_000, systemusers=500))
    text = " ".join(
        f"{gen.row('contacts', i)['fullname']} {gen.row('accounts', i)['address1_city']} "
        f"{gen.row('accounts', i)['address1_line1']}"
        for i in range(3_000)
    )
    countries = {gen.row("accounts", i)["address1_country"] for i in range(3_000)}
    assert countries == {"Italia", "Deutschland", "France", "España", "Polska"}
    for needle in ("ü", "ö", "ß", "ł", "ą", "ż", "é", "è", "ç", "ñ", "ó", "à", "ù"):
        assert needle in text, needle


def test_email_addresses_are_ascii() -> None:
    gen = _generator()
    for i in range(200):
        email = gen.row("contacts", i)["emailaddress1"]
        assert email.isascii() and email.count("@") == 1


def test_territories_and_users() -> None:
    gen = _generator()
    names = {gen.row("territories", t)["name"] for t in range(gen.count("territories"))}
    assert len(names) == 25 and "IT Nord-Ovest" in names and "PL Śląsk" in names
    user = gen.row("systemusers", 0)
    territory_ids = {gen.row("territories", t)["territoryid"] for t in range(25)}
    assert user["_territoryid_value"] in territory_ids
    currencies = [gen.row("transactioncurrencies", c)["isocurrencycode"] for c in range(2)]
    assert currencies == ["EUR", "PLN"]
