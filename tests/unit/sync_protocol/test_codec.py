"""Payload decoding: typed errors with stable codes for every bad input (fuzzed)."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol.codec import Limits, accepts_msgpack, decode_push, encode, format_of
from sync_protocol.errors import (
    MalformedPayloadError,
    PayloadTooLargeError,
    ProtocolError,
    UnsupportedMediaTypeError,
    UnsupportedProtocolVersionError,
)
from tests.support.protocol import ACCOUNT_ID


def push(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "protocol": 1,
        "changeset_id": "dev-1:7",
        "device_id": "dev-1",
        "mutations": [
            {
                "entity": "account",
                "id": ACCOUNT_ID,
                "clock": [1, 0, "dev-1"],
                "fields": {"name": "Müller GmbH"},
            }
        ],
    }
    body.update(over)
    return body


def test_valid_push_decodes_from_json_and_msgpack() -> None:
    j = decode_push(msgspec.json.encode(push()), "application/json")
    m = decode_push(msgspec.msgpack.encode(push()), "application/msgpack")
    assert j == m
    assert j.mutations[0].fields == {"name": "Müller GmbH"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", "malformed_payload"),
        (b"[]", "malformed_payload"),
        (msgspec.json.encode(push(protocol="1")), "malformed_payload"),
        (msgspec.json.encode(push(mutations="all")), "malformed_payload"),
        (msgspec.json.encode(push(changeset_id="other:1")), "malformed_payload"),
        (msgspec.json.encode(push(changeset_id="dev-1")), "malformed_payload"),
        (msgspec.json.encode(push(mutations=[])), "malformed_payload"),
        (msgspec.json.encode(push(protocol=99)), "unsupported_protocol_version"),
        (msgspec.json.encode(push(mutations=[{"entity": "account"}])), "malformed_payload"),
    ],
)
def test_bad_payloads_raise_typed_errors(body: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_push(body, "application/json")
    assert info.value.code == code


def test_error_names_the_offending_path() -> None:
    bad = push(mutations=[{"entity": "account", "id": ACCOUNT_ID, "clock": "now"}])
    with pytest.raises(MalformedPayloadError, match=r"mutations\[0\]\.clock"):
        decode_push(msgspec.json.encode(bad))


def test_oversized_payloads() -> None:
    with pytest.raises(PayloadTooLargeError):
        decode_push(b" " * 100, limits=Limits(max_body_bytes=10))
    many = push(mutations=push()["mutations"] * 3)
    with pytest.raises(PayloadTooLargeError):
        decode_push(msgspec.json.encode(many), limits=Limits(max_mutations=2))
    with pytest.raises(UnsupportedProtocolVersionError):
        decode_push(msgspec.json.encode(push(protocol=0)))


def test_media_types() -> None:
    assert format_of(None) == "json"
    assert format_of("application/json; charset=utf-8") == "json"
    assert format_of("application/x-msgpack") == "msgpack"
    with pytest.raises(UnsupportedMediaTypeError):
        format_of("text/xml")
    assert accepts_msgpack("application/msgpack, application/json;q=0.5")
    assert not accepts_msgpack("application/json, application/msgpack;q=0.1")
    assert not accepts_msgpack(None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(st.binary(max_size=300), st.sampled_from(["application/json", "application/msgpack"]))
def test_random_bytes_never_raise_a_bare_exception(body: bytes, ctype: str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_push(body, ctype)


@settings(max_examples=400)
@given(
    st.dictionaries(
        st.sampled_from(
            ["protocol", "changeset_id", "device_id", "mutations", "schema_version", "extra"]
        ),
        json_values,
    ),
    st.sampled_from(["json", "msgpack"]),
)
def test_wrongly_typed_structures_raise_protocol_errors(obj: dict[str, Any], fmt: str) -> None:
    try:
        body = encode(obj, fmt)  # type: ignore[arg-type]
    except (OverflowError, msgspec.EncodeError):
        return
    with contextlib.suppress(ProtocolError):
        decode_push(body, f"application/{fmt}")


@settings(max_examples=300)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "entity": st.sampled_from(["account", "contact", "x"]),
                "id": st.one_of(st.just(ACCOUNT_ID), st.text(max_size=5)),
                "clock": st.one_of(
                    st.tuples(st.integers(), st.integers(), st.text(max_size=3)), json_values
                ),
                "fields": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
            }
        ),
        min_size=1,
        max_size=3,
    )
)
def test_fuzzed_mutations_decode_or_fail_typed(mutations: list[dict[str, Any]]) -> None:
    from sync_protocol.merge import MergeContext, merge

    try:
        req = decode_push(msgspec.json.encode(push(mutations=mutations)))
    except ProtocolError:
        return
    for m in req.mutations:
        # Merge validates values; expected failures come back as rejected results.
        r = merge(None, m, MergeContext())
        assert r.result.outcome in ("applied", "rejected")
