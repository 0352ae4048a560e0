"""Single records: reads, ETags, creates, upserts, deletes and their conditions."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import AsyncTestClient

from infra.dynamics_emulator.emulator import Emulator

API = "/api/data/v9.2"
Client = AsyncTestClient[Any]
STALE = "The version of the existing record doesn't match the RowVersion property provided."


async def test_get_single_with_etag_and_304(api: Client, emulator: Emulator) -> None:
    guid = emulator.generator.guid("accounts", 2)
    response = await api.get(f"{API}/accounts({guid})?$select=name")
    assert response.status_code == 200
    body = response.json()
    etag = response.headers["ETag"]
    assert body["@odata.etag"] == etag and etag.startswith('W/"')
    assert body["@odata.context"].endswith("$metadata#accounts(name,accountid)/$entity")
    assert body["accountid"] == guid
    not_modified = await api.get(f"{API}/accounts({guid})", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    changed = await api.get(f"{API}/accounts({guid})", headers={"If-None-Match": 'W/"1"'})
    assert changed.status_code == 200
    annotated = await api.get(
        f"{API}/accounts({guid})",
        headers={"If-None-Match": etag, "Prefer": 'odata.include-annotations="*"'},
    )
    assert annotated.status_code == 200  # no 304 when annotations are requested
    braces = await api.get(f"{API}/accounts({{{guid.upper()}}})")
    assert braces.status_code == 200


async def test_missing_record_and_unknown_entity_set(api: Client) -> None:
    guid = str(uuid.uuid4())
    response = await api.get(f"{API}/contacts({guid})")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "0x80040217", "message": f"contact With Id = {guid} Does Not Exist"}
    }
    response = await api.get(f"{API}/Account")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "0x8006088a", "message": "Resource not found for the segment 'Account'."}
    }


async def test_alternate_key_and_single_property(api: Client, emulator: Emulator) -> None:
    row = emulator.generator.row("accounts", 11)
    response = await api.get(f"{API}/accounts(accountnumber='ACC-0000012')?$select=name")
    assert response.json()["accountid"] == row["accountid"]
    response = await api.get(f"{API}/accounts({row['accountid']})/name")
    assert response.json()["value"] == row["name"]


async def test_post_with_client_guid_then_duplicate_is_412(api: Client, emulator: Emulator) -> None:
    guid = str(uuid.uuid4())
    account = emulator.generator.guid("accounts", 0)
    body = {
        "contactid": guid,
        "firstname": "Zoë",
        "lastname": "Łukaszewicz",
        "parentcustomerid_account@odata.bind": f"/accounts({account})",
    }
    created = await api.post(f"{API}/contacts", json=body)
    assert created.status_code == 204
    assert created.headers["OData-EntityId"] == f"http://testserver.local{API}/contacts({guid})"
    row = (await api.get(f"{API}/contacts({guid})")).json()
    assert row["fullname"] == "Zoë Łukaszewicz"
    assert row["_parentcustomerid_value"] == account
    assert row["statecode"] == 0 and row["statuscode"] == 1
    again = await api.post(f"{API}/contacts", json=body)
    assert again.status_code == 412
    assert again.json()["error"] == {
        "code": "0x80040237",
        "message": "A record with matching key values already exists.",
    }


async def test_post_return_representation_is_201_with_etag(api: Client) -> None:
    response = await api.post(
        f"{API}/leads?$select=fullname,subject",
        json={"firstname": "Jürgen", "lastname": "Groß", "subject": "Messe Köln"},
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["fullname"] == "Jürgen Groß"
    assert set(body) == {"@odata.context", "@odata.etag", "fullname", "subject", "leadid"}
    assert response.headers["ETag"] == body["@odata.etag"]
    assert response.headers["Preference-Applied"] == "return=representation"


async def test_patch_upserts_create_then_update(api: Client) -> None:
    guid = str(uuid.uuid4())
    url = f"{API}/accounts({guid})"
    rep = {"Prefer": "return=representation"}
    created = await api.patch(url, json={"name": "Città Srl"}, headers=rep)
    assert created.status_code == 201
    updated = await api.patch(url, json={"telephone1": "+39 02 1234567"}, headers=rep)
    assert updated.status_code == 200
    body = updated.json()
    assert body["name"] == "Città Srl" and body["telephone1"] == "+39 02 1234567"
    assert int(body["versionnumber"]) > int(created.json()["versionnumber"])
    plain = await api.patch(url, json={"name": "Città S.r.l."})
    assert plain.status_code == 204 and plain.headers["OData-EntityId"].endswith(f"({guid})")


async def test_conditional_writes(api: Client, emulator: Emulator) -> None:
    guid = emulator.generator.guid("accounts", 4)
    url = f"{API}/accounts({guid})"
    etag = (await api.get(url)).headers["ETag"]
    ok = await api.patch(url, json={"name": "Müller GmbH"}, headers={"If-Match": etag})
    assert ok.status_code == 204
    stale = await api.patch(url, json={"name": "Other"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["error"] == {"code": "0x80060882", "message": STALE}
    assert (await api.get(url)).json()["name"] == "Müller GmbH"
    missing = f"{API}/accounts({uuid.uuid4()})"
    update_only = await api.patch(missing, json={"name": "x"}, headers={"If-Match": "*"})
    assert update_only.status_code == 404
    create_only = await api.patch(url, json={"name": "x"}, headers={"If-None-Match": "*"})
    assert create_only.status_code == 412
    assert create_only.json()["error"]["message"] == (
        "A record with matching key values already exists."
    )
    new = await api.patch(missing, json={"name": "Nuova"}, headers={"If-None-Match": "*"})
    assert new.status_code == 204


async def test_delete_with_if_match(api: Client, emulator: Emulator) -> None:
    guid = emulator.generator.guid("leads", 3)
    url = f"{API}/leads({guid})"
    etag = (await api.get(url)).headers["ETag"]
    stale = await api.delete(url, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "0x80060882"
    deleted = await api.delete(url, headers={"If-Match": etag})
    assert deleted.status_code == 204
    assert (await api.get(url)).status_code == 404
    assert (await api.delete(url)).status_code == 404
    ids = [r["leadid"] for r in (await api.get(f"{API}/leads")).json()["value"]]
    assert guid not in ids and len(ids) == 29


async def test_payload_validation(api: Client, emulator: Emulator) -> None:
    url = f"{API}/accounts"
    unknown = await api.post(url, json={"nosuch": 1})
    assert unknown.status_code == 400 and "nosuch" in unknown.json()["error"]["message"]
    wrong_type = await api.post(url, json={"numberofemployees": "many"})
    assert wrong_type.status_code == 400
    too_long = await api.post(url, json={"name": "x" * 161})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "0x80044331"
    bad_option = await api.post(url, json={"industrycode": 999})
    assert bad_option.status_code == 400
    lookup_direct = await api.post(url, json={"_ownerid_value": str(uuid.uuid4())})
    assert lookup_direct.status_code == 400
    dangling = await api.post(
        f"{API}/contacts",
        json={"parentcustomerid_account@odata.bind": f"/accounts({uuid.uuid4()})"},
    )
    assert dangling.status_code == 404
    not_json = await api.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    bad_status = await api.post(url, json={"statecode": 0, "statuscode": 2})
    assert bad_status.status_code == 400
    assert emulator.dataset.count("accounts") == 40  # nothing was created


async def test_state_change_sets_the_default_status(api: Client, emulator: Emulator) -> None:
    guid = emulator.generator.guid("opportunities", 0)
    url = f"{API}/opportunities({guid})"
    await api.patch(url, json={"statecode": 1})
    assert (await api.get(url)).json()["statuscode"] == 3
    await api.patch(url, json={"statuscode": 5})
    body = (await api.get(url)).json()
    assert body["statecode"] == 2 and body["statuscode"] == 5


async def test_who_am_i_service_document_and_metadata(api: Client, emulator: Emulator) -> None:
    who = (await api.get(f"{API}/WhoAmI")).json()
    assert who["UserId"] == emulator.generator.user_guid(0)
    names = [s["name"] for s in (await api.get(f"{API}/")).json()["value"]]
    assert "accounts" in names and "systemusers" in names
    metadata = await api.get(f"{API}/$metadata")
    assert b'EntitySet Name="appointments"' in metadata.content
    assert (await api.put(f"{API}/accounts")).status_code == 405
