"""Demo data: deterministic, valid for the schema, owned so that each profile sees its scope."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from backend.applier.plan import plan_upstream
from backend.auth.dev_signer import DEMO_USERS
from infra.devstack.demo_data import demo_batches, demo_record_count
from infra.devstack.errors import DevStackError
from infra.devstack.stack import StackOptions, push_pull_example
from sync_protocol.default_rules import default_rules


def test_demo_batches_are_deterministic() -> None:
    import msgspec

    first = msgspec.msgpack.encode(demo_batches())
    assert msgspec.msgpack.encode(demo_batches()) == first
    assert demo_record_count() == 324


def test_every_demo_record_applies_and_every_entity_and_country_is_covered() -> None:
    rules = default_rules()
    entities: Counter[str] = Counter()
    countries: set[str] = set()
    for batch in demo_batches():
        plan = plan_upstream(batch, {}, rules, 1)
        assert {r.outcome for r in plan.result.results} == {"applied"}
        for write in plan.batch.writes:
            entities[write.record.entity] += 1
            countries.add(write.record.fields["country"])
    assert set(entities) == {"account", "contact", "lead", "opportunity", "quote", "appointment"}
    assert countries == {"IT", "PL", "DE", "FR", "ES"}


def test_each_demo_user_sees_a_different_slice() -> None:
    rules = default_rules()
    records = [
        (w.record.channels, w.record.fields)
        for batch in demo_batches()
        for w in plan_upstream(batch, {}, rules, 1).batch.writes
    ]
    visible = {}
    for login, user in DEMO_USERS.items():
        grants = rules.grants_for(user.claims())
        visible[login] = sum(1 for channels, _ in records if grants.covers(channels))
    # Sales reps see only what they own; a colleague in marco's territory stays hidden.
    marco = DEMO_USERS["marco.rossi"].sub
    assert visible["marco.rossi"] == sum(1 for _, f in records if f["ownerid"] == marco)
    it_records = sum(1 for _, f in records if f["country"] == "IT")
    assert visible["marco.rossi"] < it_records
    assert visible["claire.martin"] > visible["marco.rossi"]
    assert visible["lucia.garcia"] == len(records)
    assert visible["jonas.weber"] > 0 and visible["anna.kowalska"] > 0


def test_texts_are_multilingual() -> None:
    names = " ".join(str(m.fields.get("fullname", "")) for b in demo_batches() for m in b.mutations)
    for letter in ("Ł", "ü", "é", "í"):
        assert letter in names or letter.lower() in names


def test_stack_options_are_validated() -> None:
    with pytest.raises(DevStackError):
        StackOptions(port=8080, admin_port=8080)
    with pytest.raises(DevStackError):
        StackOptions(appliers=0)
    with pytest.raises(DevStackError):
        StackOptions(nats_port=70000)


def test_the_printed_push_body_is_valid_json() -> None:
    lines = push_pull_example("http://127.0.0.1:8080")
    body = lines[1].split("-d '", 1)[1].rstrip("'")
    push = json.loads(body)
    assert push["changeset_id"].startswith(push["device_id"] + ":")
    assert "/v1/sync/push" in lines[0] and "/v1/sync/pull" in lines[2]
