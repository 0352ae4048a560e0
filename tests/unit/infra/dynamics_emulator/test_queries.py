"""GET collections: $select, $filter, $orderby, $top, $count, paging cookies."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import AsyncTestClient

from infra.dynamics_emulator.emulator import Emulator

API = "/api/data/v9.2"
Client = AsyncTestClient[Any]


async def _all_pages(api: Client, url: str, page_size: int) -> tuple[list[dict[str, Any]], int]:
    """Follow nextLinks; return every row and the number of pages."""
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    rows: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        response = await api.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["Preference-Applied"] == f"odata.maxpagesize={page_size}"
        body = response.json()
        assert len(body["value"]) <= page_size
        rows.extend(body["value"])
        next_url = body.get("@odata.nextLink")
        pages += 1
        assert pages < 1_000, "paging does not terminate"
    return rows, pages


async def test_paging_returns_every_record_once_in_key_order(
    api: Client, emulator: Emulator
) -> None:
    rows, pages = await _all_pages(api, f"{API}/contacts?$select=fullname", 7)
    count = emulator.generator.count("contacts")
    assert len(rows) == count
    assert pages == -(-count // 7)
    ids = [r["contactid"] for r in rows]
    assert ids == [emulator.generator.guid("contacts", i) for i in range(count)]
    assert set(rows[0]) == {"@odata.etag", "fullname", "contactid"}


async def test_next_link_keeps_the_query_and_carries_a_documented_cookie(api: Client) -> None:
    response = await api.get(
        f"{API}/accounts?$select=name&$filter=statecode eq 0",
        headers={"Prefer": "odata.maxpagesize=3"},
    )
    link = response.json()["@odata.nextLink"]
    assert link.startswith("http://testserver.local/api/data/v9.2/accounts?$select=name&$filter=")
    token = parse_qs(urlsplit(link).query)["$skiptoken"][0]
    assert token.startswith('<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22%3e')
    assert token.endswith('istracking="False" />')
    assert "%3caccountid%20last%3d%22%7b" in token


async def test_paging_with_a_filter_terminates_and_matches(api: Client, emulator: Emulator) -> None:
    rows, _ = await _all_pages(
        api, f"{API}/accounts?$filter=statecode eq 0 and revenue gt 1000000", 4
    )
    expected = [
        r["accountid"]
        for r in (emulator.generator.row("accounts", i) for i in range(40))
        if r["statecode"] == 0 and r["revenue"] > 1_000_000
    ]
    assert [r["accountid"] for r in rows] == expected
    assert 0 < len(expected) < 40


async def test_last_page_has_no_next_link_even_when_exactly_full(api: Client) -> None:
    rows, pages = await _all_pages(api, f"{API}/accounts?$select=name", 20)
    assert len(rows) == 40 and pages == 2


async def test_page_size_is_capped_at_5000_and_default_is_5000(api: Client) -> None:
    response = await api.get(f"{API}/contacts", headers={"Prefer": "odata.maxpagesize=9000"})
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=5000"
    response = await api.get(f"{API}/contacts")
    assert "Preference-Applied" not in response.headers
    assert len(response.json()["value"]) == 90


async def test_orderby_key_descending_pages_backwards(api: Client, emulator: Emulator) -> None:
    rows, _ = await _all_pages(api, f"{API}/leads?$select=subject&$orderby=leadid desc", 8)
    assert [r["leadid"] for r in rows] == [
        emulator.generator.guid("leads", i) for i in reversed(range(30))
    ]


async def test_orderby_other_column_is_rejected(api: Client) -> None:
    response = await api.get(f"{API}/leads?$orderby=subject")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80060888"


async def test_top_limits_without_next_link_and_is_ignored_with_maxpagesize(api: Client) -> None:
    body = (await api.get(f"{API}/accounts?$top=3")).json()
    assert len(body["value"]) == 3 and "@odata.nextLink" not in body
    response = await api.get(f"{API}/accounts?$top=3", headers={"Prefer": "odata.maxpagesize=10"})
    body = response.json()
    assert len(body["value"]) == 10 and "@odata.nextLink" in body


async def test_count_is_capped_at_5000(api: Client, emulator: Emulator) -> None:
    body = (await api.get(f"{API}/contacts?$count=true&$top=1")).json()
    assert body["@odata.count"] == 90
    filtered = (await api.get(f"{API}/contacts?$count=true&$filter=statecode eq 1")).json()
    assert filtered["@odata.count"] == len(filtered["value"])
    text = (await api.get(f"{API}/contacts/$count")).text
    assert text == "90"
    emulator.generator.counts["contacts"] = 12_000  # pretend the table is big
    emulator.generator.ids["contacts"].count = 12_000
    response = await api.get(
        f"{API}/contacts?$count=true&$select=fullname",
        headers={
            "Prefer": 'odata.maxpagesize=2,odata.include-annotations="Microsoft.Dynamics.CRM.*"'
        },
    )
    body = response.json()
    assert body["@odata.count"] == 5000
    assert body["@Microsoft.Dynamics.CRM.totalrecordcount"] == 5000
    assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is True


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("$skip=10", "$skip is not supported"),
        ("$select=nosuchcolumn", "Could not find a property named 'nosuchcolumn'"),
        ("$filter=nosuchcolumn eq 1", "Could not find a property named 'nosuchcolumn'"),
        ("$filter=name eq 5", "incompatible types"),
        ("$filter=name eq", "Syntax error"),
        ("$apply=groupby((name))", "not supported"),
        ("$top=abc", "Invalid value"),
        ("$expand=primarycontactid", "$expand"),
        ("$skiptoken=garbage", "paging cookie"),
    ],
)
async def test_bad_queries_are_400_with_an_error_body(
    api: Client, query: str, message: str
) -> None:
    response = await api.get(f"{API}/accounts?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"].startswith("0x")
    assert message in error["message"]


async def test_filters_on_strings_guids_dates_and_nulls(api: Client, emulator: Emulator) -> None:
    account = emulator.generator.row("accounts", 5)
    name = account["name"].replace("'", "''")
    body = (await api.get(f"{API}/accounts?$filter=name eq '{name.upper()}'")).json()
    assert account["accountid"] in [r["accountid"] for r in body["value"]]
    body = (await api.get(f"{API}/accounts?$filter=accountid eq {account['accountid']}")).json()
    assert [r["accountid"] for r in body["value"]] == [account["accountid"]]
    owner = account["_ownerid_value"]
    body = (
        await api.get(f"{API}/contacts?$filter=_ownerid_value eq {owner}&$select=fullname")
    ).json()
    assert body["value"] and all("contactid" in r for r in body["value"])
    body = (await api.get(f"{API}/accounts?$filter=modifiedon gt 2025-01-01T00:00:00Z")).json()
    assert body["value"] == []
    body = (
        await api.get(f"{API}/contacts?$filter=_parentcustomerid_value eq null&$select=fullname")
    ).json()
    assert body["value"] and all(
        emulator.dataset.get("contacts", r["contactid"])["_parentcustomerid_value"] is None  # type: ignore[index]
        for r in body["value"]
    )
    body = (
        await api.get(f"{API}/accounts?$filter=contains(name,'gmbh') or startswith(name,'zzz')")
    ).json()
    assert body["value"] and all("GmbH" in r["name"] for r in body["value"])
    first = emulator.generator.guid("accounts", 37)
    body = (await api.get(f"{API}/accounts?$filter=accountid gt {first}&$orderby=accountid")).json()
    assert [r["accountid"] for r in body["value"]] == [
        emulator.generator.guid("accounts", i) for i in (38, 39)
    ]


async def test_modifiedon_filter_finds_api_changes_only(api: Client, emulator: Emulator) -> None:
    guid = emulator.generator.guid("accounts", 9)
    emulator.mutate("update", "accounts", guid, {"name": "Neuer Name GmbH"}, user=3)
    body = (await api.get(f"{API}/accounts?$filter=modifiedon ge 2025-06-01T12:00:00Z")).json()
    assert [r["accountid"] for r in body["value"]] == [guid]
    assert body["value"][0]["_modifiedby_value"] == emulator.generator.user_guid(3)


async def test_a_cookie_of_another_entity_set_is_refused(api: Client) -> None:
    body = (await api.get(f"{API}/contacts", headers={"Prefer": "odata.maxpagesize=5"})).json()
    token = urlsplit(body["@odata.nextLink"]).query.split("$skiptoken=")[1]
    response = await api.get(f"{API}/accounts?$skiptoken={token}")
    assert response.status_code == 400
    assert "another entity set" in response.json()["error"]["message"]
