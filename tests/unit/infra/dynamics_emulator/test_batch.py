"""$batch: multipart requests, atomic change sets, Content-ID references, error handling."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from litestar.testing import AsyncTestClient

from infra.dynamics_emulator.emulator import Emulator

API = "/api/data/v9.2"
Client = AsyncTestClient[Any]


def _request(
    method: str, url: str, body: dict[str, Any] | None = None, content_id: str | None = None
) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines += [
            "Content-Type: application/json; type=entry",
            "",
            json.dumps(body, ensure_ascii=False),
        ]
    else:
        lines += ["", ""]
    return "\r\n".join(lines)


def _batch(items: list[str | list[str]], boundary: str = "batch_abc") -> tuple[bytes, str]:
    chunks = []
    for index, item in enumerate(items):
        if isinstance(item, list):
            cs = f"changeset_{index}"
            inner = "".join(f"--{cs}\r\n{part}\r\n" for part in item) + f"--{cs}--\r\n"
            chunks.append(
                f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n{inner}"
            )
        else:
            chunks.append(f"--{boundary}\r\n{item}\r\n")
    body = "".join(chunks) + f"--{boundary}--\r\n"
    return body.encode(), f'multipart/mixed; boundary="{boundary}"'


def _statuses(text: str) -> list[int]:
    return [int(s) for s in re.findall(r"^HTTP/1\.1 (\d{3}) ", text, re.MULTILINE)]


async def _post_batch(api: Client, items: list[str | list[str]], prefer: str | None = None) -> Any:
    body, content_type = _batch(items)
    headers = {"Content-Type": content_type}
    if prefer:
        headers["Prefer"] = prefer
    return await api.post(f"{API}/$batch", content=body, headers=headers)


async def test_batch_runs_parts_in_order_and_answers_multipart(
    api: Client, emulator: Emulator
) -> None:
    account = emulator.generator.guid("accounts", 0)
    response = await _post_batch(
        api,
        [
            _request("POST", f"{API}/leads", {"subject": "Salon Lyon", "lastname": "Hébert"}),
            _request("GET", f"{API}/accounts({account})?$select=name"),
            _request("GET", f"http://testserver.local{API}/accounts?$top=2&$select=name"),
        ],
    )
    assert response.status_code == 200
    content_type = response.headers["Content-Type"]
    boundary = content_type.split("boundary=")[1]
    assert boundary.startswith("batchresponse_")
    text = response.text
    assert text.startswith(f"--{boundary}\r\nContent-Type: application/http\r\n")
    assert text.endswith(f"--{boundary}--\r\n")
    assert _statuses(text) == [204, 200, 200]
    assert "HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\nLocation: " in text
    assert emulator.generator.row("accounts", 0)["name"] in text


async def test_change_set_is_atomic(api: Client, emulator: Emulator) -> None:
    before = emulator.dataset.count("contacts")
    response = await _post_batch(
        api,
        [
            [
                _request("POST", f"{API}/contacts", {"lastname": "Dąbrowska"}, "1"),
                _request("POST", f"{API}/contacts", {"lastname": "x" * 51}, "2"),
            ]
        ],
    )
    assert response.status_code == 400
    assert _statuses(response.text) == [400]
    assert "0x80044331" in response.text and "Content-ID: 2" in response.text
    assert emulator.dataset.count("contacts") == before


async def test_change_set_references_and_nested_response(api: Client, emulator: Emulator) -> None:
    response = await _post_batch(
        api,
        [
            [
                _request("POST", f"{API}/accounts", {"name": "Groß & Söhne KG"}, "1"),
                _request(
                    "POST",
                    f"{API}/contacts",
                    {"lastname": "Groß", "parentcustomerid_account@odata.bind": "$1"},
                    "2",
                ),
                _request("PATCH", "$1", {"primarycontactid@odata.bind": "$2"}, "3"),
            ]
        ],
    )
    assert response.status_code == 200, response.text
    text = response.text
    assert "Content-Type: multipart/mixed; boundary=changesetresponse_" in text
    assert _statuses(text) == [204, 204, 204]
    account_id = re.search(r"accounts\(([0-9a-f-]{36})\)", text).group(1)  # type: ignore[union-attr]
    contact_id = re.search(r"contacts\(([0-9a-f-]{36})\)", text).group(1)  # type: ignore[union-attr]
    account = emulator.dataset.get("accounts", account_id)
    assert account is not None and account["_primarycontactid_value"] == contact_id
    contact = emulator.dataset.get("contacts", contact_id)
    assert contact is not None and contact["_parentcustomerid_value"] == account_id


async def test_stop_at_first_error_or_continue_on_error(api: Client, emulator: Emulator) -> None:
    missing = str(uuid.uuid4())
    items: list[str | list[str]] = [
        _request("POST", f"{API}/leads", {"lastname": "Uno"}),
        _request("PATCH", f"{API}/leads({missing})", {"lastname": "Dos"}),
        _request("DELETE", f"{API}/leads({uuid.uuid4()})"),
        _request("POST", f"{API}/leads", {"lastname": "Tres"}),
    ]
    before = emulator.dataset.count("leads")
    stopped = await _post_batch(api, items)
    assert stopped.status_code == 400
    assert _statuses(stopped.text) == [204, 204, 404]  # the PATCH is an upsert: it creates
    assert emulator.dataset.count("leads") == before + 2
    go_on = await _post_batch(api, items, prefer="odata.continue-on-error")
    assert go_on.status_code == 200
    assert go_on.headers["Preference-Applied"] == "odata.continue-on-error"
    assert _statuses(go_on.text) == [204, 204, 404, 204]


async def test_batch_limits_and_malformed_bodies(api: Client) -> None:
    too_many = [_request("GET", f"{API}/WhoAmI") for _ in range(1_001)]
    response = await _post_batch(api, too_many)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert "exceeds the maximum of 1000" in response.json()["error"]["message"]
    with_get = await _post_batch(api, [[_request("GET", f"{API}/WhoAmI")]])
    assert with_get.status_code == 400
    not_multipart = await api.post(
        f"{API}/$batch", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert not_multipart.status_code == 400
    unterminated = await api.post(
        f"{API}/$batch",
        content=b"--batch_x\r\nContent-Type: application/http\r\n\r\nGET /x HTTP/1.1\r\n",
        headers={"Content-Type": "multipart/mixed; boundary=batch_x"},
    )
    assert unterminated.status_code == 400
    undefined_reference = await _post_batch(api, [[_request("PATCH", "$9", {"name": "x"}, "1")]])
    assert undefined_reference.status_code == 400
    assert "'$9' does not exist in the batch context" in undefined_reference.text
