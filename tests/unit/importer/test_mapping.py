"""Dynamics row <-> our fields: lookups, option sets, money, dates, owners, scope, bodies."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest

from importer.dynamics.mapping import (
    DirectoryScope,
    EntityMap,
    country_code,
    entity_maps,
    parse_datetime_ms,
    row_clock,
    territory_code,
    territory_country,
)
from importer.errors import MappingError
from infra.dynamics_emulator.generator import DatasetGenerator
from sync_protocol.entities import SCHEMAS, validate_fields
from sync_protocol.hlc import HLC

NODE = "upstream:dynamics"
OWNER = "0b1f8a52-2a6a-4c3e-9d0b-1c2d3e4f5a6b"
TERRITORY = "aa1f8a52-2a6a-4c3e-9d0b-1c2d3e4f5a6b"


def account_row(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "@odata.etag": 'W/"100017"',
        "name": "Rossi Meccanica S.r.l.",
        "accountnumber": "ACC-0000001",
        "revenue": 125000,
        "numberofemployees": 40.0,
        "industrycode": 1,
        "_primarycontactid_value": "C0FFEE00-0000-4000-8000-000000000001",
        "_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "contact",
        "_ownerid_value": OWNER,
        "_territoryid_value": TERRITORY,
        "statecode": 0,
        "statuscode": 1,
        "createdon": "2024-01-02T03:04:05Z",
        "modifiedon": "2025-01-01T00:00:00Z",
        "versionnumber": 100017,
        "accountid": "11111111-2222-4333-8444-555555555555",
    }
    row.update(over)
    return row


def test_row_to_fields_converts_every_kind() -> None:
    emap = EntityMap("account", NODE)
    fields = emap.to_fields(account_row())
    assert fields["primarycontactid"] == "c0ffee00-0000-4000-8000-000000000001"
    assert fields["ownerid"] == OWNER
    assert fields["revenue"] == 125000.0 and type(fields["revenue"]) is float
    assert fields["numberofemployees"] == 40 and type(fields["numberofemployees"]) is int
    assert fields["statecode"] == 0
    assert fields["createdon"] == "2024-01-02T03:04:05Z"
    # Columns the row lacks are None: a full row sets every field it maps.
    assert fields["telephone1"] is None
    assert "territory" not in fields  # no scope resolver: not derived
    validate_fields("account", fields, allow_system=True)


def test_unknown_option_value_and_overlong_string_become_none_and_are_counted() -> None:
    emap = EntityMap("account", NODE)
    fields = emap.to_fields(account_row(industrycode=999, name="x" * 161))
    assert fields["industrycode"] is None
    assert fields["name"] is None
    assert emap.issues == {"industrycode": 1, "name": 1}


def test_date_only_columns_are_cut_to_dates() -> None:
    emap = EntityMap("opportunity", NODE)
    row = {
        "opportunityid": "11111111-2222-4333-8444-555555555555",
        "estimatedclosedate": "2025-03-04T00:00:00Z",
        "modifiedon": "2025-01-01T00:00:00Z",
    }
    assert emap.to_fields(row)["estimatedclosedate"] == "2025-03-04"


def test_mutation_carries_clock_from_modifiedon_and_version_and_the_etag() -> None:
    emap = EntityMap("account", NODE)
    m = emap.to_mutation(account_row())
    ms = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert m.clock == HLC(ms, 100017 & 0xFFFF, NODE)
    assert m.etag == 'W/"100017"'
    assert m.id == "11111111-2222-4333-8444-555555555555"
    assert m.op == "upsert"
    later = emap.to_mutation(account_row(modifiedon="2025-01-01T00:00:00.001Z"))
    assert later.clock > m.clock


def test_rows_without_key_or_time_are_mapping_errors() -> None:
    emap = EntityMap("account", NODE)
    with pytest.raises(MappingError):
        emap.to_mutation(account_row(accountid=None))
    with pytest.raises(MappingError):
        emap.to_mutation(account_row(modifiedon=None))
    with pytest.raises(MappingError):
        parse_datetime_ms("2025-01-01T00:00:00")  # no offset
    with pytest.raises(MappingError):
        row_clock({"modifiedon": "yesterday"}, NODE)


def test_delete_mutation_is_upstream_and_lower_cased() -> None:
    m = EntityMap("contact", NODE).delete_mutation("ABCDEF00-0000-4000-8000-000000000001", 5)
    assert m.op == "delete" and m.id == "abcdef00-0000-4000-8000-000000000001"
    assert m.clock == HLC(5, 0, NODE)


def test_select_lists_key_lookups_version_and_scope_columns() -> None:
    emap = EntityMap("account", NODE, DirectoryScope())
    assert emap.select[0] == "accountid"
    assert "_ownerid_value" in emap.select and "_primarycontactid_value" in emap.select
    assert "versionnumber" in emap.select and "modifiedon" in emap.select
    assert "_territoryid_value" in emap.select
    assert "territory" not in emap.select and "country" not in emap.select
    assert "_territoryid_value" not in EntityMap("contact", NODE, DirectoryScope()).select


def test_missing_columns_are_left_out_both_ways() -> None:
    emap = EntityMap("account", NODE).without("description")
    assert "description" not in emap.select
    assert "description" not in emap.to_fields(account_row())
    assert emap.to_body({"description": "x", "name": "n"}) == {"name": "n"}


def test_directory_scope_derives_territory_and_country() -> None:
    scope = DirectoryScope()
    scope.add_territory(TERRITORY, "FR Île-de-France")
    scope.add_owner(OWNER, "00000000-0000-4000-8000-00000000dead", "Polska")
    emap = EntityMap("account", NODE, scope)
    fields = emap.to_fields(account_row())
    # The account's own territory wins over its owner's.
    assert fields["territory"] == "FR-Ile-de-France"
    assert fields["country"] == "FR"
    contact = EntityMap("contact", NODE, scope).to_fields(
        {"contactid": "x", "_ownerid_value": OWNER}
    )
    assert contact["territory"] is None  # the owner's territory is unknown
    assert contact["country"] == "PL"
    assert SCHEMAS["account"].fields["territory"].max_length >= len(fields["territory"])


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("IT Nord-Ovest", "IT-Nord-Ovest"),
        ("DE Süd", "DE-Sud"),
        ("PL Śląsk", "PL-Slask"),
        ("PL Małopolska", "PL-Malopolska"),
        ("PL Wielkopolska", "PL-Wielkopolska"),
    ],
)
def test_territory_codes_are_channel_safe(name: str, code: str) -> None:
    assert territory_code(name) == code
    assert territory_country(name) == name[:2]


def test_country_names_in_our_languages() -> None:
    assert country_code("Italia") == "IT"
    assert country_code("España") == "ES"
    assert country_code("de") == "DE"
    assert country_code("Atlantis") is None


def test_body_binds_lookups_and_skips_computed_and_derived_fields() -> None:
    emap = EntityMap("contact", NODE)
    acct = "11111111-2222-4333-8444-555555555555"
    body = emap.to_body(
        {
            "firstname": "Anna",
            "fullname": "ignored",
            "territory": "IT-Centro",
            "parentcustomerid": acct,
            "ownerid": OWNER,
        },
        lambda name, guid, targets: "account",
        record_id="22222222-2222-4333-8444-555555555555",
    )
    assert body == {
        "contactid": "22222222-2222-4333-8444-555555555555",
        "firstname": "Anna",
        "parentcustomerid_account@odata.bind": f"/accounts({acct})",
        "ownerid@odata.bind": f"/systemusers({OWNER})",
    }
    cleared = emap.to_body({"parentcustomerid": None})
    assert cleared == {"parentcustomerid_account@odata.bind": None}
    by_contact = emap.to_body({"parentcustomerid": acct}, lambda *_: "contact")
    assert by_contact == {"parentcustomerid_contact@odata.bind": f"/contacts({acct})"}
    regarding = EntityMap("appointment", NODE).to_body(
        {"regardingobjectid": acct}, lambda *_: "opportunity"
    )
    assert regarding == {
        "regardingobjectid_opportunity_appointment@odata.bind": f"/opportunities({acct})"
    }


def test_emulator_rows_of_every_entity_map_to_valid_fields() -> None:
    gen = DatasetGenerator(
        7,
        {
            "accounts": 20,
            "contacts": 20,
            "leads": 20,
            "opportunities": 20,
            "quotes": 20,
            "appointments": 20,
            "systemusers": 5,
        },
        datetime(2025, 1, 1, tzinfo=UTC),
    )
    scope = DirectoryScope()
    for t in range(gen.count("territories")):
        row = gen.row("territories", t)
        scope.add_territory(row["territoryid"], row["name"])
    for u in range(gen.count("systemusers")):
        row = gen.row("systemusers", u)
        scope.add_owner(row["systemuserid"], row["_territoryid_value"], row["address1_country"])
    maps = entity_maps(NODE, scope)
    for entity, emap in maps.items():
        for i in range(20):
            m = emap.to_mutation(gen.row(emap.entity_set, i))
            fields = {k: v for k, v in m.fields.items()}
            validate_fields(entity, fields, allow_system=True)
            assert m.fields["country"] in {"IT", "DE", "FR", "ES", "PL"}
            assert m.fields["territory"]


def test_typed_page_decoding_equals_the_generic_path() -> None:
    import msgspec

    gen = DatasetGenerator(
        3,
        {
            "accounts": 60,
            "contacts": 60,
            "leads": 60,
            "opportunities": 60,
            "quotes": 60,
            "appointments": 60,
            "systemusers": 9,
        },
        datetime(2025, 1, 1, tzinfo=UTC),
    )
    scope = DirectoryScope()
    for t in range(gen.count("territories")):
        row = gen.row("territories", t)
        scope.add_territory(row["territoryid"], row["name"])
    for u in range(gen.count("systemusers")):
        row = gen.row("systemusers", u)
        scope.add_owner(row["systemuserid"], row["_territoryid_value"], row["address1_country"])
    for entity, emap in entity_maps(NODE, scope).items():
        rows = [gen.row(emap.entity_set, i) for i in range(60)]
        rows[5] = {**rows[5], emap.key: rows[5][emap.key].upper()}
        rows[6] = {**rows[6], "modifiedon": None}
        raw = msgspec.json.encode({"value": rows, "@odata.nextLink": "next"})
        page = emap.decode_page(raw)
        expected = []
        for r in rows:
            with contextlib.suppress(MappingError):
                expected.append(emap.to_mutation(r))
        assert page.mutations == expected, entity
        assert (page.rows, page.skipped, page.next_link) == (60, 1, "next")
        # A value the typed struct refuses sends the page down the generic path: same result.
        rows[0] = {**rows[0], emap.columns[0].column: "x" * 5000}
        slow = emap.decode_page(msgspec.json.encode({"value": rows}))
        assert len(slow.mutations) == 59 and slow.mutations[0].fields[emap.columns[0].field] is None


@pytest.mark.parametrize(
    "text",
    [
        "2025-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2024-02-29T12:34:56Z",
        "2025-06-01T10:00:00+02:00",
        "2025-06-01T10:00:00.123Z",
    ],
)
def test_fast_datetime_parse_agrees_with_the_full_parser(text: str) -> None:
    from importer.dynamics.mapping import fast_datetime_ms

    assert fast_datetime_ms(text) == parse_datetime_ms(text)


def test_first_load_pages_leave_nulls_out() -> None:
    import msgspec

    emap = EntityMap("account", NODE)
    raw = msgspec.json.encode({"value": [account_row(telephone1=None)]})
    (m,) = emap.decode_page(raw, drop_nulls=True).mutations
    assert "telephone1" not in m.fields and None not in m.fields.values()
    (full,) = emap.decode_page(raw).mutations
    assert full.fields["telephone1"] is None
