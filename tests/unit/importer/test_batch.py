"""$batch multipart encoding and decoding."""

from __future__ import annotations

import pytest

from importer.dynamics.batch import (
    BatchRequest,
    boundary_of,
    decode_batch,
    encode_batch,
)
from importer.errors import BatchFormatError


def test_encode_batch_writes_one_http_request_per_part() -> None:
    ctype, body = encode_batch(
        [
            BatchRequest("GET", "accounts(1)?$select=name"),
            BatchRequest(
                "PATCH",
                "accounts(2)",
                {"If-Match": 'W/"7"', "Content-Type": "application/json"},
                b'{"name":"x"}',
            ),
        ],
        boundary="batch_abc",
    )
    assert ctype == "multipart/mixed; boundary=batch_abc"
    text = body.decode()
    assert text.count("--batch_abc\r\n") == 2
    assert text.endswith("--batch_abc--\r\n")
    assert "GET /api/data/v9.2/accounts(1)?$select=name HTTP/1.1\r\n" in text
    assert "PATCH /api/data/v9.2/accounts(2) HTTP/1.1\r\n" in text
    assert 'If-Match: W/"7"\r\n' in text
    assert '\r\n\r\n{"name":"x"}\r\n--batch_abc' in text


def test_change_set_is_nested_and_rejects_get() -> None:
    _, body = encode_batch([[BatchRequest("POST", "accounts", body=b"{}")]], boundary="b")
    text = body.decode()
    assert "Content-Type: multipart/mixed; boundary=changeset_" in text
    assert "Content-ID: 1" in text
    with pytest.raises(BatchFormatError):
        encode_batch([[BatchRequest("GET", "accounts")]])
    with pytest.raises(BatchFormatError):
        encode_batch([])


def test_header_injection_is_refused() -> None:
    with pytest.raises(BatchFormatError):
        encode_batch([BatchRequest("GET", "accounts", {"X": "a\r\nEvil: 1"})])


RESPONSE = (
    b"--batchresponse_1\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json; odata.metadata=minimal\r\n"
    b'ETag: W/"12"\r\n'
    b"\r\n"
    b'{"@odata.etag":"W/\\"12\\"","name":"A"}\r\n'
    b"--batchresponse_1\r\n"
    b"Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n"
    b"\r\n"
    b"--changesetresponse_2\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-ID: 1\r\n"
    b"\r\n"
    b"HTTP/1.1 204 No Content\r\n"
    b"OData-EntityId: https://x/api/data/v9.2/accounts(1)\r\n"
    b"\r\n"
    b"\r\n"
    b"--changesetresponse_2--\r\n"
    b"--batchresponse_1\r\n"
    b"Content-Type: application/http\r\n"
    b"\r\n"
    b"HTTP/1.1 412 Precondition Failed\r\n"
    b"\r\n"
    b'{"error":{"code":"0x80060882","message":"stale"}}\r\n'
    b"--batchresponse_1--\r\n"
)


def test_decode_batch_flattens_change_sets_in_order() -> None:
    parts = decode_batch('multipart/mixed; boundary="batchresponse_1"', RESPONSE)
    assert [p.status for p in parts] == [200, 204, 412]
    assert parts[0].headers["etag"] == 'W/"12"'
    assert parts[0].json()["name"] == "A"
    assert parts[1].ok and parts[1].json() is None
    assert parts[2].json()["error"]["code"] == "0x80060882"


def test_decode_batch_tolerates_bare_newlines() -> None:
    body = RESPONSE.replace(b"\r\n", b"\n")
    parts = decode_batch("multipart/mixed; boundary=batchresponse_1", body)
    assert [p.status for p in parts] == [200, 204, 412]


@pytest.mark.parametrize(
    "ctype",
    ["application/json", "multipart/mixed", "multipart/mixed; charset=utf-8"],
)
def test_boundary_of_requires_multipart_boundary(ctype: str) -> None:
    with pytest.raises(BatchFormatError):
        boundary_of(ctype)


def test_garbage_part_is_a_typed_error() -> None:
    body = b"--b\r\nContent-Type: application/http\r\n\r\nNOT HTTP\r\n--b--\r\n"
    with pytest.raises(BatchFormatError):
        decode_batch("multipart/mixed; boundary=b", body)
    with pytest.raises(BatchFormatError):
        decode_batch("multipart/mixed; boundary=zzz", b"no boundary here")


def test_round_trip_request_lines_decode_as_responses_shape() -> None:
    # A batch answered with the same framing our encoder uses parses back.
    _, body = encode_batch([BatchRequest("DELETE", "accounts(1)")], boundary="b")
    fake = body.replace(b"DELETE /api/data/v9.2/accounts(1) HTTP/1.1", b"HTTP/1.1 204 No Content")
    parts = decode_batch("multipart/mixed; boundary=b", fake)
    assert [p.status for p in parts] == [204]
