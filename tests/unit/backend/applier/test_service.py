"""The Applier service: commit, idempotent replay, re-merge on version conflicts, announcements."""

from __future__ import annotations

import msgspec
import pytest

from backend.applier.config import ApplierConfig
from backend.applier.errors import RetriesExhaustedError
from backend.applier.messages import (
    OutboundChange,
    decode_outbound,
    encode,
    event_decoder,
    outbound_decoder,
    result_decoder,
)
from backend.applier.service import Applier, outbound_messages
from backend.messaging.errors import BrokerTimeoutError
from sync_protocol.changesets import Mutation, UpstreamBatch
from sync_protocol.hlc import HLC

NOW = 1_800_000_000_000
REP = "00000000-0000-4000-8000-000000000001"
A1 = "10000000-0000-4000-8000-000000000001"
A2 = "10000000-0000-4000-8000-000000000002"


def _two_creates(envelope, ts):
    return envelope(
        [
            Mutation(entity="account", id=A1, clock=ts(5), fields={"name": "Uno"}),
            Mutation(entity="contact", id=A2, clock=ts(6), fields={"lastname": "Rossi"}),
        ]
    )


async def test_apply_commits_then_publishes_result_events_and_outbound(
    applier, store, broker, envelope, ts
) -> None:
    result = await applier.apply_changeset(_two_creates(envelope, ts))

    assert [r.outcome for r in result.results] == ["applied", "applied"]
    assert result.seq == store.seq == 2
    assert store.records[("account", A1)].fields["name"] == "Uno"
    (res,) = broker.on("sync.results.")
    assert res.subject == "sync.results.dev-a:1"
    assert result_decoder.decode(res.data) == result
    (event,) = broker.on("crm.events.")
    assert event.subject == f"crm.events.owner:{REP}"
    assert event_decoder.decode(event.data).seq == 2
    (outbound,) = broker.on("sync.outbound.")  # one message for the changeset
    assert (outbound.subject, outbound.msg_id) == ("sync.outbound.changes", "dev-a:1/out/0")
    changes = decode_outbound(outbound.data)
    assert [(c.change_id, c.entity) for c in changes] == [
        ("dev-a:1/0", "account"),
        ("dev-a:1/1", "contact"),
    ]
    assert (changes[0].created, changes[0].seq, changes[0].device_id) == (True, 2, "dev-a")
    # Result first (the waiting gateway), outbound last.
    kinds = [p.subject.split(".")[0] + "." + p.subject.split(".")[1] for p in broker.published]
    assert kinds == ["sync.results", "crm.events", "sync.outbound"]


async def test_reapplying_a_changeset_returns_the_stored_result_and_writes_nothing(
    applier, store, broker, envelope, ts
) -> None:
    env = _two_creates(envelope, ts)
    first = await applier.apply_changeset(env)
    applies, audit = store.applies, len(store.audit)

    second = await applier.apply_changeset(env)

    assert msgspec.msgpack.encode(second) == msgspec.msgpack.encode(first)
    assert (store.applies, len(store.audit)) == (applies, audit)
    # The result and pokes go out again; JetStream drops the outbound duplicates.
    assert len(broker.on("sync.results.")) == 2
    assert len(broker.on("crm.events.")) == 2
    assert len(broker.on("sync.outbound.")) == 1
    assert applier.metrics.tally["device.replays"] == 1


async def test_result_goes_to_the_reply_subject_when_given(applier, broker, envelope, ts) -> None:
    await applier.apply_changeset(_two_creates(envelope, ts), reply_subject="_INBOX.gw1.7")

    assert [p.subject for p in broker.on("_INBOX.")] == ["_INBOX.gw1.7"]
    assert broker.on("sync.results.") == []


async def test_version_conflict_rereads_and_remerges(
    applier, store, envelope, ts, stored_account
) -> None:
    store.records[("account", A1)] = stored_account(A1, version=1)

    def rival_write() -> None:
        rec = store.records[("account", A1)]
        rec.version = 2
        rec.fields["telephone1"] = "+39 011 1"
        rec.field_versions["telephone1"] = 2
        rec.clocks["telephone1"] = HLC(NOW, 0, "dev-z")

    store.before_apply = rival_write
    env = envelope(
        [Mutation(entity="account", id=A1, clock=ts(5), base_version=1, fields={"name": "Mio"})]
    )

    result = await applier.apply_changeset(env)

    assert result.results[0].outcome == "merged"
    rec = store.records[("account", A1)]
    assert (rec.version, rec.fields["name"], rec.fields["telephone1"]) == (3, "Mio", "+39 011 1")
    assert applier.metrics.tally["retries"] == 1


async def test_gives_up_after_bounded_retries(store, broker, rules, envelope, ts) -> None:
    async def always_conflict(batch):
        from backend.store.errors import VersionConflictError

        raise VersionConflictError([("account", A1)])

    store.apply = always_conflict  # type: ignore[method-assign]
    applier = Applier(store, broker, rules, now=lambda: NOW, config=ApplierConfig(max_retries=2))

    with pytest.raises(RetriesExhaustedError) as info:
        await applier.apply_changeset(_two_creates(envelope, ts))

    assert info.value.code == "applier.retries_exhausted"
    assert info.value.attempts == 3
    assert broker.published == []


async def test_changeset_committed_by_another_applier_meanwhile_is_replayed(
    applier, store, broker, envelope, ts, rules
) -> None:
    env = _two_creates(envelope, ts)
    rival = Applier(store, None, rules, now=lambda: NOW)
    original_get_many = store.get_many

    async def rival_commits_first(keys):
        store.get_many = original_get_many  # type: ignore[method-assign]
        current = await original_get_many(keys)
        await rival.apply_changeset(env)
        return current

    store.get_many = rival_commits_first  # type: ignore[method-assign]

    result = await applier.apply_changeset(env)

    assert store.applies == 1
    assert result == await store.changeset_result("dev-a:1")
    assert applier.metrics.tally["device.replays"] == 1


async def test_failed_outbound_publish_is_redone_by_the_redelivery(
    applier, store, broker, envelope, ts
) -> None:
    env = _two_creates(envelope, ts)
    broker.fail_jetstream = True
    with pytest.raises(BrokerTimeoutError):
        await applier.apply_changeset(env)
    # The acked (last) outbound message did not land.
    assert store.applies == 1
    assert broker.on("sync.outbound.") == []

    broker.fail_jetstream = False
    await applier.apply_changeset(env)

    assert store.applies == 1
    (outbound,) = broker.on("sync.outbound.")
    assert [c.change_id for c in decode_outbound(outbound.data)] == ["dev-a:1/0", "dev-a:1/1"]


async def test_upstream_batch_is_idempotent_and_never_goes_outbound(applier, store, broker) -> None:
    batch = UpstreamBatch(
        batch_id="load-1",
        source="dynamics",
        mutations=[
            Mutation(
                entity="account",
                id=A1,
                clock=HLC(NOW, 0, "upstream:dynamics"),
                fields={"name": "Rossi", "ownerid": REP, "territory": "IT-NW", "country": "IT"},
            )
        ],
    )

    first = await applier.apply_upstream(batch, state={"cp": b"1"})
    again = await applier.apply_upstream(batch)

    assert first == again
    assert first.changeset_id == "upstream:load-1"
    assert store.applies == 1
    assert store.state == {"cp": b"1"}
    assert broker.on("sync.outbound.") == []
    events = {p.subject for p in broker.on("crm.events.")}
    assert events == {
        "crm.events.country:IT",
        f"crm.events.owner:{REP}",
        "crm.events.territory:IT-NW",
    }
    assert applier.metrics.tally["upstream.applied"] == 1


async def test_all_rejected_changeset_still_stores_its_result(
    applier, store, broker, envelope, ts
) -> None:
    env = envelope([Mutation(entity="nope", id=A1, clock=ts(1), fields={"x": 1})])

    result = await applier.apply_changeset(env)

    assert result.results[0].code == "unknown_entity"
    assert await store.changeset_result("dev-a:1") == result
    assert broker.on("crm.events.") == [] and broker.on("sync.outbound.") == []
    assert applier.metrics.tally["device.rejected"] == 1


async def test_without_a_broker_nothing_is_published(store, rules, envelope, ts) -> None:
    applier = Applier(store, None, rules, now=lambda: NOW)
    result = await applier.apply_changeset(_two_creates(envelope, ts))
    assert result.results[0].outcome == "applied"
    assert (await applier.apply_changeset(_two_creates(envelope, ts))) == result


# ---------------------------------------------------------------------- group commits

A3 = "10000000-0000-4000-8000-000000000003"


def _create(envelope, ts, id: str, device: str, counter: int = 1, name: str = "Uno"):
    return envelope(
        [Mutation(entity="account", id=id, clock=ts(5, device), fields={"name": name})],
        counter,
        device=device,
    )


async def test_a_group_commits_once_and_answers_each_changeset(
    applier, store, broker, envelope, ts
) -> None:
    calls: list[int] = []
    original = store.apply_group

    async def spy(batches):
        calls.append(len(batches))
        return await original(batches)

    store.apply_group = spy  # type: ignore[method-assign]
    items = [
        (_create(envelope, ts, A1, "dev-a"), "_INBOX.a"),
        (_create(envelope, ts, A2, "dev-b"), None),
        (_create(envelope, ts, A3, "dev-c"), "_INBOX.c"),
    ]

    results = await applier.apply_changesets(items)

    assert calls == [3]
    assert [r.changeset_id for r in results] == ["dev-a:1", "dev-b:1", "dev-c:1"]
    assert [r.seq for r in results] == [1, 2, 3]
    assert all(r.results[0].outcome == "applied" for r in results)
    for r in results:
        assert msgspec.msgpack.encode(await store.changeset_result(r.changeset_id)) == (
            msgspec.msgpack.encode(r)
        )
    assert [p.subject for p in broker.on("_INBOX.")] == ["_INBOX.a", "_INBOX.c"]
    assert [p.subject for p in broker.on("sync.results.")] == ["sync.results.dev-b:1"]
    # One poke per channel, at the group's newest sequence in it.
    (event,) = broker.on("crm.events.")
    assert event_decoder.decode(event.data).seq == 3
    assert [o.msg_id for o in broker.on("sync.outbound.")] == [
        "dev-a:1/out/0",
        "dev-b:1/out/0",
        "dev-c:1/out/0",
    ]
    assert applier.metrics.tally["device.changesets"] == 3


async def test_a_changeset_touching_a_grouped_record_is_applied_after_the_group(
    applier, store, envelope, ts
) -> None:
    first = _create(envelope, ts, A1, "dev-a", name="Uno")
    rival = envelope(
        [Mutation(entity="account", id=A1, clock=ts(9, "dev-b"), fields={"name": "Due"})],
        device="dev-b",
    )

    results = await applier.apply_changesets([(first, None), (rival, None)])

    assert [r.results[0].outcome for r in results] == ["applied", "merged"]
    assert results[0].seq < results[1].seq
    rec = store.records[("account", A1)]
    assert (rec.version, rec.fields["name"]) == (2, "Due")


async def test_a_redelivered_changeset_in_a_group_replays_its_stored_result(
    applier, store, broker, envelope, ts
) -> None:
    old = _create(envelope, ts, A1, "dev-a")
    stored = await applier.apply_changeset(old)
    applies = store.applies

    results = await applier.apply_changesets(
        [(old, None), (_create(envelope, ts, A2, "dev-b"), None)]
    )

    assert msgspec.msgpack.encode(results[0]) == msgspec.msgpack.encode(stored)
    assert results[1].results[0].outcome == "applied"
    assert store.applies == applies + 1  # only the new changeset was written
    assert applier.metrics.tally["device.replays"] == 1
    assert store.records[("account", A1)].version == 1


def test_outbound_messages_split_deterministically_under_the_size_limit() -> None:
    changes = [
        OutboundChange(
            change_id=f"dev-a:9/{i}",
            entity="account",
            id=A1,
            op="upsert",
            fields={"description": "x" * 1000},
        )
        for i in range(40)
    ]

    messages = outbound_messages("dev-a:9", changes, max_bytes=8 * 1024)

    assert len(messages) > 1
    assert [m for m, _ in messages] == [f"dev-a:9/out/{n}" for n in range(len(messages))]
    assert all(len(data) <= 8 * 1024 for _, data in messages)
    flat = [c for _, data in messages for c in decode_outbound(data)]
    assert [c.change_id for c in flat] == [c.change_id for c in changes]
    assert outbound_messages("dev-a:9", changes, max_bytes=8 * 1024) == messages  # replay
    assert outbound_messages("dev-a:9", []) == []


def test_a_single_outbound_change_from_before_batches_still_decodes() -> None:
    old = OutboundChange(change_id="dev-a:1/0", entity="lead", id=A1, op="delete")
    assert decode_outbound(encode(old)) == [old]
    assert decode_outbound(encode(old)) == [outbound_decoder.decode(encode(old))]
