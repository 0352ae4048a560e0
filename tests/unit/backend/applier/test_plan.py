"""Planning: scope checks, merge, channels, carried records, conflicts, audit, outbound."""

from __future__ import annotations

from backend.applier.plan import (
    outbound_changes,
    plan_changeset,
    plan_upstream,
    touched_keys,
    upstream_result_id,
)
from sync_protocol.changesets import Mutation, UpstreamBatch
from sync_protocol.hlc import HLC

NOW = 1_800_000_000_000
REP = "00000000-0000-4000-8000-000000000001"
OTHER = "00000000-0000-4000-8000-0000000000aa"
MANAGER = "00000000-0000-4000-8000-000000000004"
A1 = "10000000-0000-4000-8000-000000000001"
A2 = "10000000-0000-4000-8000-000000000002"
SKEW = 60_000


def test_create_by_sales_rep_gets_owner_and_lands_in_scope(envelope, rules, ts) -> None:
    env = envelope([Mutation(entity="account", id=A1, clock=ts(5), fields={"name": "Bianchi"})])

    plan = plan_changeset(env, {}, rules, NOW, SKEW)

    (r,) = plan.result.results
    assert r.outcome == "applied"
    assert r.fields == {"name": "Bianchi", "ownerid": REP}
    assert r.field_outcomes["ownerid"] == "applied"
    (write,) = plan.batch.writes
    assert write.expected_version == 0
    assert write.record.fields["ownerid"] == REP
    assert write.record.channels == [f"owner:{REP}"]
    assert write.record.origin == "device:dev-a"
    assert plan.channels == {f"owner:{REP}"}
    assert plan.batch.device_id == "dev-a"
    assert plan.batch.changeset is plan.result
    (audit,) = plan.batch.audit
    assert (audit.user, audit.device_id, audit.outcome, audit.version_after) == (
        REP,
        "dev-a",
        "applied",
        1,
    )


def test_update_of_record_in_scope_uses_read_version(envelope, rules, ts, stored_account) -> None:
    current = stored_account(A1, version=3)
    env = envelope(
        [Mutation(entity="account", id=A1, clock=ts(5), base_version=3, fields={"name": "Neu"})]
    )

    plan = plan_changeset(env, {("account", A1): current}, rules, NOW, SKEW)

    assert plan.result.results[0].outcome == "applied"
    (write,) = plan.batch.writes
    assert write.expected_version == 3
    assert write.record.version == 4
    assert write.record.fields["name"] == "Neu"


def test_record_outside_scope_is_rejected_not_found_without_detail(
    envelope, rules, ts, stored_account
) -> None:
    current = stored_account(A1, owner=OTHER)
    env = envelope(
        [Mutation(entity="account", id=A1, clock=ts(5), base_version=1, fields={"name": "x"})]
    )

    plan = plan_changeset(env, {("account", A1): current}, rules, NOW, SKEW)

    (r,) = plan.result.results
    assert (r.outcome, r.code, r.message) == ("rejected", "not_found", None)
    assert r.fields == {}
    assert plan.batch.writes == []
    assert plan.channels == set()


def test_missing_and_out_of_scope_records_get_the_same_answer(
    envelope, rules, ts, stored_account
) -> None:
    # No existence oracle: an update of a record that does not exist reads exactly like an
    # update of one the caller may not see.
    hidden = stored_account(A1, owner=OTHER)
    missing = "10000000-0000-4000-8000-0000000000ff"
    env = envelope(
        [
            Mutation(entity="account", id=A1, clock=ts(5), base_version=1, fields={"name": "x"}),
            Mutation(
                entity="account", id=missing, clock=ts(6), base_version=1, fields={"name": "x"}
            ),
        ]
    )

    plan = plan_changeset(env, {("account", A1): hidden}, rules, NOW, SKEW)

    shapes = [(r.outcome, r.code, r.message, r.fields) for r in plan.result.results]
    assert shapes == [("rejected", "not_found", None, {})] * 2
    assert plan.batch.writes == []


def test_new_record_outside_the_actors_channels_is_rejected(envelope, rules, ts) -> None:
    # A dealer manager may set owner and territory, but not to land the record elsewhere.
    env = envelope(
        [
            Mutation(
                entity="account",
                id=A1,
                clock=ts(5),
                fields={"name": "Dupont", "ownerid": OTHER, "territory": "IT-NW"},
            )
        ],
        user=MANAGER,
        profile="dealer_manager",
        channels=[f"owner:{MANAGER}", "territory:FR-IDF"],
    )

    plan = plan_changeset(env, {}, rules, NOW, SKEW)

    (r,) = plan.result.results
    assert (r.outcome, r.code) == ("rejected", "operation_not_allowed")
    assert plan.batch.writes == []


def test_unknown_profile_rejects_every_mutation(envelope, rules, ts) -> None:
    env = envelope(
        [
            Mutation(entity="account", id=A1, clock=ts(5), fields={"name": "a"}),
            Mutation(entity="account", id=A2, clock=ts(6), fields={"name": "b"}),
        ],
        profile="intruder",
    )

    plan = plan_changeset(env, {}, rules, NOW, SKEW)

    assert [r.code for r in plan.result.results] == ["invalid_sync_rules"] * 2
    assert plan.batch.writes == []
    assert len(plan.batch.audit) == 2


def test_field_the_profile_may_not_write_is_rejected(envelope, rules, ts, stored_account) -> None:
    env = envelope(
        [Mutation(entity="account", id=A1, clock=ts(5), base_version=1, fields={"revenue": 1.0})]
    )

    plan = plan_changeset(env, {("account", A1): stored_account(A1)}, rules, NOW, SKEW)

    assert plan.result.results[0].code == "field_not_writable"
    assert plan.batch.writes == []


def test_mutations_of_one_record_are_carried_into_one_write(envelope, rules, ts) -> None:
    env = envelope(
        [
            Mutation(entity="account", id=A1, clock=ts(5), fields={"name": "Uno"}),
            Mutation(entity="account", id=A1, clock=ts(6), base_version=1, fields={"name": "Due"}),
        ]
    )

    plan = plan_changeset(env, {}, rules, NOW, SKEW)

    assert [r.outcome for r in plan.result.results] == ["applied", "applied"]
    assert [r.version for r in plan.result.results] == [1, 2]
    (write,) = plan.batch.writes
    assert (write.expected_version, write.record.version) == (0, 2)
    assert write.record.fields["name"] == "Due"
    assert plan.written == [("account", A1)]


def test_manual_conflict_is_recorded_with_the_records_owner(
    envelope, rules, ts, stored_account
) -> None:
    current = stored_account(A1, version=2)
    current.field_versions["description"] = 2  # changed on the server after the device's base
    env = envelope(
        [
            Mutation(
                entity="account",
                id=A1,
                clock=ts(5),
                base_version=1,
                fields={"description": "Nota dal telefono"},
            )
        ]
    )

    plan = plan_changeset(env, {("account", A1): current}, rules, NOW, SKEW)

    (r,) = plan.result.results
    assert r.outcome == "conflict"
    assert r.field_outcomes == {"description": "held"}
    (c,) = plan.batch.conflicts
    assert c.id == "dev-a:1/0/description"
    assert r.conflict_ids == [c.id]
    assert (c.status, c.owner, c.device_id, c.changeset_id) == ("open", REP, "dev-a", "dev-a:1")
    assert (c.device_value, c.server_value) == ("Nota dal telefono", "Cliente storico")


def test_record_moved_out_of_a_channel_pokes_old_and_new_channels(
    envelope, rules, ts, stored_account
) -> None:
    current = stored_account(A1, owner=MANAGER, territory="FR-IDF")
    env = envelope(
        [
            Mutation(
                entity="account",
                id=A1,
                clock=ts(5),
                base_version=1,
                fields={"territory": "FR-ARA"},
            )
        ],
        user=MANAGER,
        profile="dealer_manager",
        channels=[f"owner:{MANAGER}", "territory:FR-IDF", "territory:FR-ARA"],
    )

    plan = plan_changeset(env, {("account", A1): current}, rules, NOW, SKEW)

    assert plan.batch.writes[0].record.channels == [
        "country:FR",
        f"owner:{MANAGER}",
        "territory:FR-ARA",
    ]
    assert plan.channels == {
        "country:FR",
        f"owner:{MANAGER}",
        "territory:FR-IDF",
        "territory:FR-ARA",
    }


def test_device_clock_far_ahead_is_bounded(envelope, rules, ts) -> None:
    env = envelope([Mutation(entity="account", id=A1, clock=ts(3_600_000), fields={"name": "x"})])

    plan = plan_changeset(env, {}, rules, NOW, SKEW)

    assert plan.batch.writes[0].record.clocks["name"].wall_ms == NOW + SKEW


def test_upstream_batch_applies_without_permission_and_keeps_results_slim(rules) -> None:
    clock = HLC(NOW - 5, 0, "upstream:dynamics")
    batch = UpstreamBatch(
        batch_id="b1",
        source="dynamics",
        mutations=[
            Mutation(
                entity="account",
                id=A1,
                clock=clock,
                fields={"name": "Rossi", "revenue": 10.0, "ownerid": OTHER, "country": "IT"},
                etag='W/"7"',
            ),
            Mutation(entity="account", id=A2, clock=HLC(NOW, 0, "dev-x"), fields={"name": "y"}),
        ],
    )

    plan = plan_upstream(batch, {}, rules, NOW, {"importer:cp": b"42"})

    ok, bad = plan.result.results
    assert plan.result.changeset_id == upstream_result_id("b1") == "upstream:b1"
    assert (ok.outcome, ok.version, ok.fields) == ("applied", 1, {})
    assert (bad.outcome, bad.code) == ("rejected", "invalid_clock")
    (write,) = plan.batch.writes
    assert write.record.upstream_etag == 'W/"7"'
    assert write.record.origin == "upstream:dynamics"
    assert write.record.channels == ["country:IT", f"owner:{OTHER}"]
    assert plan.batch.state == {"importer:cp": b"42"}
    assert plan.batch.conflicts == []
    assert [a.source for a in plan.batch.audit] == ["upstream"]


def test_outbound_sends_only_live_device_values(envelope, rules, ts, stored_account) -> None:
    current = stored_account(A1, version=2)
    current.field_versions["description"] = 2
    env = envelope(
        [
            Mutation(
                entity="account",
                id=A1,
                clock=ts(5),
                base_version=1,
                fields={"description": "held back", "telephone1": "+39 02 5555"},
            ),
            Mutation(entity="account", id=A2, clock=ts(6), fields={"name": "Nuovo"}),
            Mutation(entity="account", id="not-a-uuid", clock=ts(7), fields={"name": "bad"}),
        ]
    )
    plan = plan_changeset(env, {("account", A1): current}, rules, NOW, SKEW)
    plan.result.seq = 99

    out = outbound_changes(env, plan.result, {("account", A1): 'W/"100"'})

    first, created = out
    assert first.change_id == "dev-a:1/0"
    assert first.fields == {"telephone1": "+39 02 5555"}
    assert (first.created, first.upstream_etag, first.seq, first.user) == (
        False,
        'W/"100"',
        99,
        REP,
    )
    assert created.change_id == "dev-a:1/1"
    assert created.created is True
    assert created.fields == {"name": "Nuovo", "ownerid": REP}


def test_touched_keys_are_distinct_in_first_touch_order(ts) -> None:
    muts = [
        Mutation(entity="account", id=A2, clock=ts(1)),
        Mutation(entity="account", id=A1, clock=ts(2)),
        Mutation(entity="account", id=A2, clock=ts(3)),
    ]
    assert touched_keys(muts) == [("account", A2), ("account", A1)]
