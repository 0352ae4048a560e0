"""Subject and token encoding: reversible, canonical, and always a single valid NATS token."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backend.messaging.errors import InvalidNameError, SubjectTokenError
from backend.messaging.subjects import (
    CHANGESETS_STREAM,
    DEADLETTER_STREAM,
    EVENTS_WILDCARD,
    OUTBOUND_STREAM,
    STREAMS,
    UPSTREAM_STREAM,
    changeset_subject,
    channel_from_event_subject,
    dead_letter_subject,
    decode_token,
    encode_token,
    event_subject,
    outbound_subject,
    results_subject,
    upstream_subject,
    validate_name,
)

FORBIDDEN_IN_TOKEN = set(".*> \t\r\n")


def _is_valid_token(token: str) -> bool:
    return bool(token) and token.isascii() and not (set(token) & FORBIDDEN_IN_TOKEN)


@given(st.text(min_size=1))
@example("owner:7f3c9a2e-1b4d-4c8e-9f00-aabbccddeeff")
@example("a.b*c>d e%f")
@example("%41")
@example("Łódź ünïcode 🚀")
def test_token_round_trip_and_validity(name: str) -> None:
    token = encode_token(name)
    assert _is_valid_token(token)
    assert all(0x21 <= ord(ch) <= 0x7E for ch in token)
    assert decode_token(token) == name


@given(st.text(min_size=1), st.text(min_size=1))
def test_encoding_is_injective(a: str, b: str) -> None:
    if a != b:
        assert encode_token(a) != encode_token(b)


@pytest.mark.parametrize(
    "channel",
    ["owner:7f3c9a2e", "territory:IT-NW", "country:IT", "public", "user_42"],
)
def test_ordinary_channel_names_pass_unchanged(channel: str) -> None:
    assert encode_token(channel) == channel
    assert event_subject(channel) == f"crm.events.{channel}"


def test_forbidden_characters_are_escaped() -> None:
    assert encode_token("a.b") == "a%2Eb"
    assert encode_token("a*b>c") == "a%2Ab%3Ec"
    assert encode_token("a b") == "a%20b"
    assert encode_token("100%") == "100%25"
    assert encode_token("é") == "%C3%A9"


@pytest.mark.parametrize(
    "token",
    [
        "",  # empty
        "a%2",  # truncated escape
        "a%zz",  # not hex
        "a%2e",  # lower-case hex is not canonical
        "a%41",  # needless escape of a safe character
        "a.b",  # raw forbidden character
        "a b",
        "é",  # raw non-ASCII
        "%FF",  # not UTF-8
    ],
)
def test_decode_rejects_non_canonical_tokens(token: str) -> None:
    with pytest.raises(SubjectTokenError) as info:
        decode_token(token)
    assert info.value.code == "messaging.invalid_subject_token"


def test_encode_rejects_empty_and_lone_surrogates() -> None:
    with pytest.raises(SubjectTokenError):
        encode_token("")
    with pytest.raises(SubjectTokenError):
        encode_token("\ud800")


@given(st.text(min_size=1))
def test_event_subject_round_trip(channel: str) -> None:
    subject = event_subject(channel)
    assert subject.startswith("crm.events.")
    assert subject.count(".") == 2
    assert channel_from_event_subject(subject) == channel


@pytest.mark.parametrize("subject", ["crm.events.", "crm.events.a.b", "sync.results.x", "x"])
def test_channel_from_non_event_subject_fails(subject: str) -> None:
    with pytest.raises(SubjectTokenError):
        channel_from_event_subject(subject)


def test_subject_builders_land_in_their_streams() -> None:
    by_name = {spec.name: spec for spec in STREAMS}
    assert set(by_name) == {CHANGESETS_STREAM, UPSTREAM_STREAM, OUTBOUND_STREAM, DEADLETTER_STREAM}
    assert by_name[CHANGESETS_STREAM].subjects == ("sync.changesets.>",)
    assert by_name[UPSTREAM_STREAM].subjects == ("sync.upstream.>",)
    assert by_name[OUTBOUND_STREAM].subjects == ("sync.outbound.>",)
    assert changeset_subject("dev 1") == "sync.changesets.dev%201"
    assert upstream_subject("account") == "sync.upstream.account"
    assert outbound_subject("contact") == "sync.outbound.contact"
    assert results_subject("dev42.17") == "sync.results.dev42%2E17"
    assert dead_letter_subject("SYNC_CHANGESETS", "applier") == (
        "sync.deadletter.SYNC_CHANGESETS.applier"
    )
    assert EVENTS_WILDCARD == "crm.events.>"


def test_stream_subjects_do_not_overlap() -> None:
    prefixes = [spec.subjects[0].removesuffix(".>") for spec in STREAMS]
    for a in prefixes:
        for b in prefixes:
            if a != b:
                assert not b.startswith(a + ".")


@pytest.mark.parametrize("name", ["", "a.b", "a b", "a*", "a>", "a/b", "a\\b", "x" * 256])
def test_validate_name_rejects(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(name)
    assert info.value.code == "messaging.invalid_name"


def test_validate_name_accepts_durable_names() -> None:
    assert validate_name("applier-workers_1") == "applier-workers_1"
