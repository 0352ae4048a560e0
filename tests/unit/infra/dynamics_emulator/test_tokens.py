"""Paging cookies and delta tokens in Dataverse's documented shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from infra.dynamics_emulator.errors import BadRequestError
from infra.dynamics_emulator.tokens import DeltaToken, PagingCookie

# From "Page results using OData" (learn.microsoft.com), the $skiptoken of page 2.
DOCUMENTED_SKIPTOKEN = (
    "%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie%2520page%253d%25221%2522%253e"
    "%253ccontactid%2520last%253d%2522%257bD5026A4D-D01C-ED11-B83E-000D3A572421%257d%2522%2520"
    "first%253d%2522%257b49B0BE2E-D01C-ED11-B83E-000D3A572421%257d%2522%2520%252f%253e%253c"
    "%252fcookie%253e%22%20istracking=%22False%22%20/%3E"
)


def test_cookie_encodes_exactly_like_the_documented_example() -> None:
    cookie = PagingCookie(
        page=2,
        key="contactid",
        first="49b0be2e-d01c-ed11-b83e-000d3a572421",
        last="d5026a4d-d01c-ed11-b83e-000d3a572421",
    )
    assert cookie.encode() == DOCUMENTED_SKIPTOKEN


def test_documented_cookie_decodes() -> None:
    cookie = PagingCookie.decode(unquote(DOCUMENTED_SKIPTOKEN))
    assert cookie.page == 2
    assert cookie.key == "contactid"
    assert cookie.last == "d5026a4d-d01c-ed11-b83e-000d3a572421"
    assert cookie.first == "49b0be2e-d01c-ed11-b83e-000d3a572421"
    assert cookie.tracking is False


def test_cookie_round_trip_keeps_extra_state() -> None:
    cookie = PagingCookie(
        page=7,
        key="accountid",
        first="49b0be2e-d01c-ed11-b83e-000d3a572421",
        last="d5026a4d-d01c-ed11-b83e-000d3a572421",
        tracking=True,
        extra={"version": "123456"},
    )
    assert PagingCookie.decode(unquote(cookie.encode())) == cookie


@pytest.mark.parametrize(
    "value",
    ["", "page=2", '<cookie pagenumber="x" pagingcookie="" istracking="False" />'],
)
def test_bad_cookie_is_a_400(value: str) -> None:
    with pytest.raises(BadRequestError):
        PagingCookie.decode(value)


def test_delta_token_matches_the_documented_form() -> None:
    token = DeltaToken(919042, datetime(2017, 8, 22, 8, 10, 44, tzinfo=UTC))
    assert token.text() == "919042!08/22/2017 08:10:44"
    assert token.encode() == "919042%2108%2f22%2f2017%2008%3a10%3a44"
    assert DeltaToken.decode(unquote(token.encode())) == token
    with pytest.raises(BadRequestError):
        DeltaToken.decode("919042")
