"""Change tracking: delta links, deltas with creates/updates/deletes, paging, expiry."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from infra.dynamics_emulator import EmulatorConfig, ManualClock, create_app
from infra.dynamics_emulator.emulator import Emulator
from infra.dynamics_emulator.tokens import DeltaToken

API = "/api/data/v9.2"
Client = AsyncTestClient[Any]
TRACK = {"Prefer": "odata.track-changes"}
EXPIRED = "Version stamp associated with the client has expired. Please perform a full sync."


async def _full_load(
    api: Client, entity_set: str, page_size: int = 5000, select: str = "name,telephone1"
) -> tuple[list[Any], str]:
    """Initial sync: every page of a tracked query; returns rows and the delta link."""
    headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={page_size}"}
    rows: list[Any] = []
    url: str | None = f"{API}/{entity_set}?$select={select}"
    while True:
        assert url is not None
        body = (await api.get(url, headers=headers)).json()
        rows += body["value"]
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return rows, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


async def _delta(api: Client, link: str) -> tuple[list[Any], str]:
    """Follow a delta link through all its pages; returns changes and the new delta link."""
    changes: list[Any] = []
    url = link
    while True:
        response = await api.get(url, headers={"Prefer": "odata.maxpagesize=5000"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["@odata.context"].endswith("/$delta")
        changes += body["value"]
        if "@odata.deltaLink" in body:
            return changes, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


async def test_tracked_query_returns_a_delta_link(api: Client) -> None:
    response = await api.get(f"{API}/accounts?$select=name", headers=TRACK)
    assert response.headers["Preference-Applied"] == "odata.track-changes"
    body = response.json()
    assert len(body["value"]) == 40
    link = body["@odata.deltaLink"]
    assert link.startswith(
        "http://testserver.local/api/data/v9.2/accounts?$select=name&$deltatoken="
    )
    raw_token = urlsplit(link).query.split("$deltatoken=")[1]
    assert "%21" in raw_token and "%2f" in raw_token and "%3a" in raw_token
    token = parse_qs(urlsplit(link).query)["$deltatoken"][0]
    version, _, stamp = token.partition("!")
    assert version.isdigit() and stamp == "06/01/2025 12:00:00"


async def test_initial_sync_pages_carry_tracking_and_end_with_a_delta_link(
    api: Client, emulator: Emulator
) -> None:
    first = (
        await api.get(
            f"{API}/accounts?$select=name",
            headers={"Prefer": "odata.track-changes,odata.maxpagesize=15"},
        )
    ).json()
    assert "@odata.deltaLink" not in first
    assert (
        'istracking="True"' in parse_qs(urlsplit(first["@odata.nextLink"]).query)["$skiptoken"][0]
    )
    # A change made during the initial sync must come with the next delta.
    changed = emulator.generator.guid("accounts", 1)
    emulator.mutate("update", "accounts", changed, {"telephone1": "+49 30 1234567"})
    rows = list(first["value"])
    url = first["@odata.nextLink"]
    while True:
        body = (await api.get(url, headers={"Prefer": "odata.maxpagesize=15"})).json()
        rows += body["value"]
        if "@odata.deltaLink" in body:
            break
        url = body["@odata.nextLink"]
    assert len(rows) == 40
    changes, _ = await _delta(api, body["@odata.deltaLink"])
    assert [c["accountid"] for c in changes] == [changed]


async def test_delta_lists_upserts_by_version_then_deletes(api: Client, emulator: Emulator) -> None:
    _, link = await _full_load(api, "accounts")
    guid = emulator.generator.guid
    emulator.mutate(
        "update", "accounts", guid("accounts", 5), {"name": "Zweite Änderung AG"}, user=2
    )
    created = str(uuid.uuid4())
    await api.post(f"{API}/accounts", json={"accountid": created, "name": "Nowa Sp. z o.o."})
    emulator.mutate("update", "accounts", guid("accounts", 3), {"name": "Terza S.r.l."}, user=1)
    emulator.mutate("delete", "accounts", guid("accounts", 7))
    ghost = str(uuid.uuid4())
    emulator.mutate("create", "accounts", ghost, {"name": "Kurzlebig GmbH"})
    emulator.mutate("delete", "accounts", ghost)
    changes, new_link = await _delta(api, link)
    upserts = [c for c in changes if "@odata.etag" in c]
    deletes = [c for c in changes if c.get("reason") == "deleted"]
    assert [u["accountid"] for u in upserts] == [guid("accounts", 5), created, guid("accounts", 3)]
    versions = [int(u["@odata.etag"][3:-1]) for u in upserts]
    assert versions == sorted(versions)
    assert set(upserts[0]) == {"@odata.etag", "name", "telephone1", "accountid"}
    assert [d["id"] for d in deletes] == [guid("accounts", 7), ghost]
    assert changes[-2:] == deletes  # deletes come last
    assert deletes[0]["@odata.context"] == (
        "http://testserver.local/api/data/v9.2/$metadata#accounts/$deletedEntity"
    )
    again, _ = await _delta(api, new_link)
    assert again == []


async def test_large_deltas_are_paged_with_the_same_page_size(
    api: Client, emulator: Emulator
) -> None:
    _, link = await _full_load(api, "contacts", select="fullname")
    for i in range(23):
        emulator.mutate(
            "update", "contacts", emulator.generator.guid("contacts", i), {"jobtitle": f"T{i}"}
        )
    for i in range(30, 35):
        emulator.mutate("delete", "contacts", emulator.generator.guid("contacts", i))
    seen: list[Any] = []
    url = link
    pages = 0
    while True:
        response = await api.get(url, headers={"Prefer": "odata.maxpagesize=10"})
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=10"
        body = response.json()
        assert len(body["value"]) <= 10
        seen += body["value"]
        pages += 1
        if "@odata.deltaLink" in body:
            break
        assert (
            "$deltatoken=" in body["@odata.nextLink"] and "$skiptoken=" in body["@odata.nextLink"]
        )
        url = body["@odata.nextLink"]
    assert pages == 3 and len(seen) == 28
    assert [c.get("id") for c in seen[-5:]] == [
        emulator.generator.guid("contacts", i) for i in range(30, 35)
    ]


@pytest.mark.parametrize(
    "option", ["$filter=statecode eq 0", "$orderby=accountid", "$top=5", "$expand=primarycontactid"]
)
async def test_query_options_are_refused_with_change_tracking(api: Client, option: str) -> None:
    response = await api.get(f"{API}/accounts?$select=name&{option}", headers=TRACK)
    assert response.status_code == 400
    name = option.split("=")[0]
    assert response.json()["error"]["message"] == (
        f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.'
    )


async def test_expired_token_fails_with_400_by_default(
    api: Client, emulator: Emulator, clock: ManualClock
) -> None:
    _, link = await _full_load(api, "leads", select="fullname")
    clock.advance(days=6.9)
    api.headers["Authorization"] = f"Bearer {emulator.issue_token()}"
    assert (await api.get(link)).status_code == 200
    clock.advance(days=0.2)
    api.headers["Authorization"] = f"Bearer {emulator.issue_token()}"
    response = await api.get(link)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "0x80044352", "message": EXPIRED}


async def test_expired_status_and_retention_are_configurable(clock: ManualClock) -> None:
    config = EmulatorConfig(
        seed=1, counts={"accounts": 5}, retention_days=1, expired_token_status=410
    )
    app = create_app(config, clock=clock)
    async with AsyncTestClient(app) as client:
        client.headers["Authorization"] = (
            f"Bearer {app.state.emulator.issue_token(lifetime_s=10**6)}"
        )
        link = (await client.get(f"{API}/accounts", headers=TRACK)).json()["@odata.deltaLink"]
        clock.advance(days=1.01)
        response = await client.get(link)
        assert response.status_code == 410
        assert response.json()["error"]["code"] == "0x80044352"


async def test_mutate_control_endpoint_acts_as_a_dynamics_user(
    api: Client, emulator: Emulator
) -> None:
    _, link = await _full_load(api, "accounts")
    user = emulator.generator.user_guid(4)
    guid = emulator.generator.guid("accounts", 2)
    response = await api.post(
        "/_emulator/mutate",
        json={
            "op": "update",
            "entity_set": "accounts",
            "id": guid,
            "fields": {"name": "Łódź S.A."},
            "user": user,
        },
    )
    assert response.status_code == 200
    assert response.json()["_modifiedby_value"] == user
    deleted = await api.post(
        "/_emulator/mutate", json={"op": "delete", "entity_set": "accounts", "id": guid}
    )
    assert deleted.status_code == 204
    changes, _ = await _delta(api, link)
    assert changes == [
        {
            "@odata.context": "http://testserver.local/api/data/v9.2/$metadata#accounts/$deletedEntity",
            "id": guid,
            "reason": "deleted",
        }
    ]
    bad = await api.post(
        "/_emulator/mutate", json={"op": "update", "entity_set": "nope", "id": guid}
    )
    assert bad.status_code == 404
    assert msgspec.json.decode(bad.content)["error"]["code"] == "0x8006088a"


async def test_count_of_changes(api: Client, emulator: Emulator) -> None:
    _, link = await _full_load(api, "quotes", select="name")
    for i in range(3):
        emulator.mutate("update", "quotes", emulator.generator.guid("quotes", i), {"name": f"Q{i}"})
    token = urlsplit(link).query.split("$deltatoken=")[1]
    response = await api.get(f"{API}/quotes/$count?$deltatoken={token}")
    assert response.text == "3"


async def test_token_newer_than_the_history_forces_a_full_sync(
    api: Client, clock: ManualClock
) -> None:
    # An in-memory emulator that restarted lost its change history; so did this token.
    token = DeltaToken(10**12, clock.now()).encode()
    response = await api.get(f"{API}/accounts?$select=name&$deltatoken={token}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80044352"
