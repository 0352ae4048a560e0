"""Formatted values and lookup annotations, per Accept-Language."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.formatting import ValueFormatter, choose_language

API = "/api/data/v9.2"
Client = AsyncTestClient[Any]
FV = "@OData.Community.Display.V1.FormattedValue"
NAV = "@Microsoft.Dynamics.CRM.associatednavigationproperty"
LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname"
FORMATTED = {"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'}


async def _account(api: Client, guid: str, language: str, prefer: dict[str, str]) -> dict[str, Any]:
    response = await api.get(
        f"{API}/accounts({guid})?$select=name,revenue,industrycode,statecode,modifiedon,_ownerid_value,numberofemployees",
        headers={**prefer, "Accept-Language": language},
    )
    assert response.status_code == 200
    return dict(response.json())


async def test_formatted_values_in_german_and_italian(api: Client, emulator: Emulator) -> None:
    guid = emulator.generator.guid("accounts", 0)
    emulator.mutate(
        "update",
        "accounts",
        guid,
        {"revenue": 1234567.5, "industrycode": 7, "statecode": 1, "numberofemployees": 1200},
    )
    row = emulator.dataset.get("accounts", guid)
    assert row is not None
    owner_name = emulator.dataset.primary_name("systemusers", row["_ownerid_value"])
    german = await _account(api, guid, "de-DE,de;q=0.9,en;q=0.5", FORMATTED)
    assert german["revenue" + FV] == "1.234.567,50\u00a0€"
    assert german["industrycode" + FV] == "Beratung"
    assert german["statecode" + FV] == "Inaktiv"
    assert german["numberofemployees" + FV] == "1.200"
    assert german["modifiedon" + FV] == "01.06.2025 12:00"
    assert german["_ownerid_value" + FV] == owner_name
    assert german["_transactioncurrencyid_value" + FV] == "Euro"
    assert "name" + FV not in german and "accountid" + FV not in german
    assert "_ownerid_value" + LOGICAL not in german  # not requested
    italian = await _account(api, guid, "it", FORMATTED)
    assert italian["industrycode" + FV] == "Consulenza"
    assert italian["statecode" + FV] == "Inattivo"
    assert italian["modifiedon" + FV] == "01/06/2025 12:00"
    english = await _account(api, guid, "sv-SE", FORMATTED)  # unsupported -> base language
    assert english["revenue" + FV] == "€1,234,567.50"
    assert english["modifiedon" + FV] == "6/1/2025 12:00 PM"


async def test_annotations_precede_their_value(api: Client, emulator: Emulator) -> None:
    guid = emulator.generator.guid("contacts", 1)
    response = await api.get(
        f"{API}/contacts({guid})?$select=_parentcustomerid_value,statecode",
        headers={"Prefer": 'odata.include-annotations="*"', "Accept-Language": "pl"},
    )
    assert response.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    keys = list(response.json())
    parent = keys.index("_parentcustomerid_value")
    assert keys[parent - 3 : parent] == [
        "_parentcustomerid_value" + FV,
        "_parentcustomerid_value" + NAV,
        "_parentcustomerid_value" + LOGICAL,
    ]
    body = response.json()
    assert body["statecode" + FV] == ("Aktywny" if body["statecode"] == 0 else "Nieaktywny")


async def test_lookup_annotations_only(api: Client, emulator: Emulator) -> None:
    prefer = {
        "Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.associatednavigationproperty,'
        'Microsoft.Dynamics.CRM.lookuplogicalname"'
    }
    body = (
        await api.get(f"{API}/appointments?$select=_regardingobjectid_value&$top=2", headers=prefer)
    ).json()
    first, second = body["value"]
    assert first["_regardingobjectid_value" + LOGICAL] == "account"
    assert first["_regardingobjectid_value" + NAV] == "regardingobjectid_account_appointment"
    assert second["_regardingobjectid_value" + LOGICAL] == "opportunity"
    assert not any(k.endswith(FV) for k in first)
    plain = (await api.get(f"{API}/appointments?$select=_regardingobjectid_value&$top=1")).json()
    assert set(plain["value"][0]) == {"@odata.etag", "_regardingobjectid_value", "activityid"}


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("fr-FR", "fr"),
        ("es;q=0.4,pl;q=0.8", "pl"),
        ("xx, de-AT", "de"),
        ("it;q=0", "en"),
    ],
)
def test_choose_language(header: str | None, language: str) -> None:
    assert choose_language(header) == language


def test_formatter_by_language() -> None:
    assert ValueFormatter("fr").money(1234.5) == "1\u00a0234,50\u00a0€"
    assert ValueFormatter("pl").money(99, "PLN") == "99,00\u00a0zł"
    assert ValueFormatter("es").boolean(True) == "Sí"
    assert ValueFormatter("de").date("2025-03-09") == "09.03.2025"
    assert ValueFormatter("en").option("salesstage", 2) == "Propose"
    assert ValueFormatter("en").number(-1234567) == "-1,234,567"
