"""Sync rules: channels, grants, permissions, diffs, and clear load errors."""

from __future__ import annotations

import pytest

from sync_protocol.default_rules import DEFAULT_RULES_TOML, PROFILES, default_rules
from sync_protocol.errors import ChannelLimitError, RulesError
from sync_protocol.rules import grant_diff, parse_rules, rules_change_diff

OWNER = "0b5e2f4c-1111-4c6e-9a5b-1d2e3f4a5b6c"


def test_default_rules_define_the_four_profiles() -> None:
    rules = default_rules()
    assert set(rules.profiles) == set(PROFILES)


def test_record_channels_come_from_its_fields() -> None:
    rules = default_rules()
    assert rules.channels_for(
        "account", {"ownerid": OWNER, "territory": "IT-NW", "country": "IT"}
    ) == ["country:IT", f"owner:{OWNER}", "territory:IT-NW"]
    assert rules.channels_for("contact", {"ownerid": OWNER}) == [f"owner:{OWNER}"]


def test_grants_expand_list_claims() -> None:
    g = default_rules().grants_for(
        {"sub": OWNER, "crm_profile": "dealer_manager", "territories": ["DE-S", "DE-N"]}
    )
    assert g.channels == {f"owner:{OWNER}", "territory:DE-S", "territory:DE-N"}
    assert g.covers(["territory:DE-N", "country:DE"])
    assert not g.covers(["territory:IT-NW"])


def test_sales_rep_permissions() -> None:
    p = default_rules().profile("sales_rep")
    acc = p.permission("account")
    assert acc.create and acc.update and not acc.delete
    assert acc.may_write("telephone1") and not acc.may_write("ownerid")
    assert not p.permission("quote").create
    assert p.permission("quote").fields == frozenset({"description"})


def test_claim_values_that_are_not_channel_safe_are_dropped() -> None:
    g = default_rules().grants_for({"sub": "a b", "crm_profile": "sales_rep"})
    assert g.channels == frozenset()


def test_missing_or_unknown_profile_claim() -> None:
    with pytest.raises(RulesError, match="crm_profile"):
        default_rules().grants_for({"sub": OWNER})
    with pytest.raises(RulesError, match="unknown profile"):
        default_rules().grants_for({"sub": OWNER, "crm_profile": "ceo"})


def test_channel_cap() -> None:
    rules = parse_rules(
        DEFAULT_RULES_TOML.replace("max_channels_per_user = 200", "max_channels_per_user = 2")
    )
    with pytest.raises(ChannelLimitError):
        rules.grants_for(
            {"sub": OWNER, "crm_profile": "dealer_manager", "territories": ["A", "B", "C"]}
        )


def test_rules_change_yields_a_per_user_diff_not_a_resync() -> None:
    old = default_rules()
    new = parse_rules(
        DEFAULT_RULES_TOML.replace(
            'read = ["owner:{sub}", "territory:{territories}"]\n\n'
            "[profiles.service_technician.write",
            'read = ["owner:{sub}", "country:{countries}"]\n\n[profiles.service_technician.write',
        )
    )
    claims = {
        "sub": OWNER,
        "crm_profile": "service_technician",
        "territories": ["FR-IDF"],
        "countries": ["FR"],
    }
    diff = rules_change_diff(old, new, claims)
    assert diff.added == {"country:FR"} and diff.removed == {"territory:FR-IDF"}
    rep = {"sub": OWNER, "crm_profile": "sales_rep"}
    assert rules_change_diff(old, new, rep).empty


def test_grant_diff_of_channel_sets() -> None:
    d = grant_diff(frozenset({"a:1", "b:2"}), frozenset({"b:2", "c:3"}))
    assert (d.added, d.removed) == ({"c:3"}, {"a:1"})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("version = 2\n[profiles.x]\n", "version"),
        ("version = 1\ncolour = 1\n[profiles.x]\n", "colour"),
        ("version = 1\n[channels]\ndefault = ['owner:{nope}']\n[profiles.x]\n", "channels.account"),
        ("version = 1\n[channels]\ninvoice = []\n[profiles.x]\n", "channels.invoice"),
        (
            "version = 1\n[policies.account]\nmanual = ['shoe']\n[profiles.x]\n",
            "policies.account.manual",
        ),
        (
            "version = 1\n[policies.account]\ndefault = 'coin_flip'\n[profiles.x]\n",
            "policies.account.default",
        ),
        (
            "version = 1\n[policies.account]\ndelete = 'never'\n[profiles.x]\n",
            "policies.account.delete",
        ),
        ("version = 1\n[profiles.x]\nread = 'owner:{sub}'\n", "profiles.x.read"),
        (
            "version = 1\n[profiles.x.write.account]\ncreate = 'yes'\n",
            "profiles.x.write.account.create",
        ),
        (
            "version = 1\n[profiles.x.write.account]\nfields = ['createdon']\n",
            "profiles.x.write.account.fields",
        ),
        ("version = 1\n[profiles.x.write.lamp]\n", "profiles.x.write.lamp"),
        ("version = 1\n", "profiles"),
        ("version = 1\nmax_channels_per_user = 0\n[profiles.x]\n", "max_channels_per_user"),
    ],
)
def test_malformed_rules_fail_with_one_message_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "rules.toml")
    message = str(info.value)
    assert "rules.toml" in message and key in message
    assert "\n" not in message


def test_invalid_toml_is_a_rules_error() -> None:
    with pytest.raises(RulesError, match="not valid TOML"):
        parse_rules("version = = 1", "rules.toml")
