"""Appliers on real JetStream and SQLite: shared work, no double apply, crash recovery."""

from __future__ import annotations

import signal
import time
import uuid

from backend.applier.messages import Actor, ChangesetEnvelope, encode
from backend.applier.plan import outbound_changes
from backend.messaging.subjects import CHANGESETS_STREAM, OUTBOUND_STREAM, changeset_subject
from sync_protocol.changesets import Mutation, PushRequest, UpstreamBatch
from sync_protocol.hlc import HLC

REP = "00000000-0000-4000-8000-000000000001"
SHARED = "20000000-0000-4000-8000-000000000001"


def _envelope(device: str, counter: int, mutations: list[Mutation]) -> ChangesetEnvelope:
    return ChangesetEnvelope(
        push=PushRequest(
            protocol=1,
            changeset_id=f"{device}:{counter}",
            device_id=device,
            mutations=mutations,
        ),
        actor=Actor(user=REP, profile="sales_rep", channels=[f"owner:{REP}"], device_id=device),
        received_ms=int(time.time() * 1000),
    )


def _lead(device: str, counter: int, n: int) -> Mutation:
    rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{device}/{counter}/{n}"))
    now = int(time.time() * 1000)
    return Mutation(
        entity="lead",
        id=rid,
        clock=HLC(now, counter * 10 + n, device),
        fields={"subject": f"Lead {counter}.{n}", "lastname": "Nowak"},
    )


async def _count_results(store, devices: list[str]) -> int:
    return sum([len(await store.device_results(d, 0)) for d in devices])


async def _done(store, devices: list[str], expected: int) -> bool:
    return await _count_results(store, devices) >= expected


def _replays(*handles) -> int:
    return sum(h.applier.metrics.tally["device.replays"] for h in handles)


def _handled(*handles) -> int:
    return _replays(*handles) + sum(h.applier.metrics.tally["device.changesets"] for h in handles)


async def _seed_shared_account(applier) -> None:
    """Create the shared account through the upstream path (as Dynamics would)."""
    batch = UpstreamBatch(
        batch_id="seed",
        source="dynamics",
        mutations=[
            Mutation(
                entity="account",
                id=SHARED,
                clock=HLC(1, 0, "upstream:dynamics"),
                fields={"name": "Condivisa S.p.A.", "ownerid": REP, "country": "IT"},
            )
        ],
    )
    await applier.apply_upstream(batch)


async def test_two_appliers_split_the_stream_and_never_apply_twice(
    broker, store, start_applier, eventually
) -> None:
    first = await start_applier()
    second = await start_applier()
    await _seed_shared_account(first.applier)
    devices = [f"dev-{i}" for i in range(12)]
    envelopes = []
    for counter in range(1, 6):
        for i, device in enumerate(devices):
            # Every changeset also edits one shared record: the appliers race on it (CAS).
            shared = Mutation(
                entity="account",
                id=SHARED,
                clock=HLC(int(time.time() * 1000), counter, device),
                base_version=1,
                fields={"telephone1": f"+39 02 {counter:02d}{i:04d}"},
            )
            envelopes.append(_envelope(device, counter, [_lead(device, counter, 0), shared]))
    for env in envelopes:
        await broker.publish(
            changeset_subject(env.push.device_id), encode(env), msg_id=env.push.changeset_id
        )
    # Re-pushes after the duplicate window: JetStream stores them again, the applier replays.
    for env in envelopes[:10]:
        await broker.publish(changeset_subject(env.push.device_id), encode(env))

    await eventually(lambda: _done(store, devices, 60), within=30, message="60 changesets applied")
    await eventually(
        lambda: _handled(first, second) >= 70, within=10, message="70 deliveries handled"
    )

    # A re-push handled while the original was being merged by the other applier shows up
    # as a replay there (the store refused the second result): never as a second apply.
    applied = sum(a.applier.metrics.tally["device.changesets"] for a in (first, second))
    assert 50 <= applied <= 60
    assert applied + _replays(first, second) == 70
    audit = await store.audit_trail(limit=100_000)
    per_changeset: dict[str, int] = {}
    for entry in audit:
        if entry.source == "device":
            per_changeset[entry.changeset_id] = per_changeset.get(entry.changeset_id, 0) + 1
    assert len(per_changeset) == 60
    assert set(per_changeset.values()) == {2}  # one audit entry per mutation: applied once
    expected_changes = expected_messages = 0
    for env in envelopes:
        result = await store.changeset_result(env.push.changeset_id)
        assert result is not None
        changes = outbound_changes(env, result, {})
        expected_changes += len(changes)
        expected_messages += 1 if changes else 0  # one outbound batch per changeset
    assert expected_changes >= 61  # every lead, and at least the winning phone numbers
    state = await broker.stream_state(OUTBOUND_STREAM)
    assert state.messages == expected_messages  # re-pushes published nothing new


async def test_applier_killed_mid_batch_is_redelivered_with_no_duplicate_and_no_loss(
    broker, store, applier_process, start_applier, eventually
) -> None:
    devices = [f"kill-{i}" for i in range(10)]
    total = 600
    per_device = total // len(devices)
    child = applier_process()
    for counter in range(1, per_device + 1):
        for device in devices:
            env = _envelope(device, counter, [_lead(device, counter, n) for n in range(5)])
            await broker.publish(
                changeset_subject(device), encode(env), msg_id=env.push.changeset_id
            )

    await eventually(
        lambda: _done(store, devices, 40), within=30, message="the child applier made progress"
    )

    async def frozen_with_committed_unacked() -> bool:
        # Freeze the child, then look: some changeset committed whose message is not acked
        # yet (results beyond the acked count) is exactly the window a crash must survive.
        child.proc.send_signal(signal.SIGSTOP)
        before = await broker.consumer_state(CHANGESETS_STREAM, "applier-changesets")
        committed = await _count_results(store, devices)
        after = await broker.consumer_state(CHANGESETS_STREAM, "applier-changesets")
        acked = after.delivered_stream_seq - after.num_ack_pending
        if before == after and committed > acked:
            return True
        child.proc.send_signal(signal.SIGCONT)
        return False

    await eventually(
        frozen_with_committed_unacked,
        within=30,
        interval=0.001,
        message="the child froze with a committed, unacked changeset",
    )
    child.kill()
    at_kill = await _count_results(store, devices)
    assert child.proc.returncode == -9
    assert at_kill < total, "the child finished before the kill: the test proved nothing"

    survivor = await start_applier()
    await eventually(lambda: _done(store, devices, total), within=60, message="all applied")

    # No loss: every changeset has its result and every lead exists once, at version 1.
    assert await _count_results(store, devices) == total
    audit = await store.audit_trail(limit=100_000)
    device_audit = [a for a in audit if a.source == "device"]
    assert len(device_audit) == total * 5  # each mutation applied exactly once
    assert len({(a.changeset_id, a.record_id) for a in device_audit}) == total * 5
    # The messages the child had committed but not acked came back and were replays.
    assert survivor.applier.metrics.tally["device.replays"] >= 1
    assert survivor.applier.metrics.tally["device.changesets"] == total - at_kill
    # Outbound: exactly one batch per changeset, whatever was re-published after the crash.
    state = await broker.stream_state(OUTBOUND_STREAM)
    assert state.messages == total
