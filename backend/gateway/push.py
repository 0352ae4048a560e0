"""Push: stateless checks of a changeset, then hand-off to the applier over JetStream.

The gateway refuses a whole changeset only for faults that do not depend on stored state
and that a correct SDK never produces (unknown entity or field, invalid values or ids,
fields or operations the caller's profile may not write): the SDK gets a problem with a
code per offending mutation and moves the changeset to its dead-letter list. Everything
that depends on stored records (scope of an existing record, versions, merges) is decided
authoritatively by the applier, per mutation; a record outside the caller's channels is
answered ``rejected`` with code ``not_found``, exactly like a record that does not exist.

Hand-off: the :class:`~backend.applier.messages.ChangesetEnvelope` is published to
``sync.changesets.<device>`` with ``Nats-Msg-Id`` = changeset id (JetStream's duplicate
window makes a retried push a no-op) and a result-subject header naming this gateway's
result inbox. The push waits up to ``push_wait_ms`` for the applier's answer there. A
retry of an applied changeset is a duplicate publish inside the window and is answered
from the stored result at once; an older one reaches the applier again, which replays
the stored result to this gateway's inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import msgspec

from backend.applier.messages import Actor, ChangesetEnvelope
from backend.applier.messages import encode as encode_message
from backend.messaging.broker import Broker, CoreSubscription
from backend.messaging.messages import CoreMessage
from backend.messaging.subjects import (
    RESULT_SUBJECT_HEADER,
    RESULTS_PREFIX,
    changeset_subject,
    encode_token,
)
from backend.store.base import RecordStore
from sync_protocol.changesets import ChangesetResult, Mutation, PushRequest
from sync_protocol.entities import is_uuid, schema, validate_fields
from sync_protocol.errors import (
    FieldNotWritableError,
    InvalidRecordIdError,
    OperationNotAllowedError,
    ProtocolError,
    SchemaError,
)
from sync_protocol.hlc import validate as validate_clock
from sync_protocol.rules import Grants

from .problems import MutationProblem

logger = logging.getLogger("crmsync.gateway.push")

_result_decoder = msgspec.msgpack.Decoder(ChangesetResult)
_STORE_POLL_S = 0.25


def check_mutation(mutation: Mutation, grants: Grants) -> None:
    """The stateless checks of one device mutation.

    Raises:
        UnknownEntityError, UnknownFieldError, InvalidFieldValueError,
        InvalidRecordIdError, ClockError, SchemaError: the mutation is malformed.
        OperationNotAllowedError: the profile may not create/update/delete this entity.
        FieldNotWritableError: the profile may not write one of the fields.
    """
    entity = schema(mutation.entity)
    if not is_uuid(mutation.id):
        raise InvalidRecordIdError("record id must be a lower-case UUID")
    validate_clock(mutation.clock)
    if mutation.etag is not None:
        raise SchemaError("etag is reserved for writes from the system of record")
    if mutation.base_version < 0:
        raise SchemaError("base_version must not be negative")
    permission = grants.profile.permission(entity.name)
    if mutation.op == "delete":
        if mutation.fields:
            raise SchemaError("a delete carries no fields")
        if not permission.delete:
            raise OperationNotAllowedError(f"profile may not delete {entity.name}")
        return
    creating = mutation.base_version == 0
    if creating and not permission.create:
        raise OperationNotAllowedError(f"profile may not create {entity.name}")
    if not creating and not permission.update:
        raise OperationNotAllowedError(f"profile may not update {entity.name}")
    for name in mutation.fields:
        entity.spec(name)  # unknown fields first: they are schema faults, not permissions
        if not permission.may_write(name):
            raise FieldNotWritableError(f"profile may not write {entity.name}.{name}")
    validate_fields(entity.name, mutation.fields)


def check_push(push: PushRequest, grants: Grants) -> None:
    """Check every mutation; refuse the changeset with one code per offending mutation.

    Raises:
        ProtocolError: the first offending mutation's error, with ``errors`` listing
            ``(index, code)`` of all of them.
    """
    problems: list[MutationProblem] = []
    first: ProtocolError | None = None
    for i, mutation in enumerate(push.mutations):
        try:
            check_mutation(mutation, grants)
        except ProtocolError as e:
            problems.append(MutationProblem(index=i, code=e.code))
            first = first or e
    if first is not None:
        first.params["errors"] = problems
        raise first


class ChangesetDispatcher:
    """Publishes changesets and collects the applier's results for waiting pushes.

    One core-NATS subscription per gateway process (``sync.results.gw-<id>.>``) carries
    the results of every changeset this process published; waiters are keyed by
    changeset id, so concurrent retries of one changeset all get the answer.

    Args:
        broker: the messaging port.
        store: the record store (stored results, for replays and late answers).
        gateway_id: this process's id (random by default).
    """

    def __init__(self, broker: Broker, store: RecordStore, *, gateway_id: str | None = None):
        self.broker = broker
        self.store = store
        self.gateway_id = gateway_id or uuid.uuid4().hex[:12]
        self.inbox_prefix = f"{RESULTS_PREFIX}.gw-{self.gateway_id}"
        self._waiters: dict[str, list[asyncio.Future[ChangesetResult]]] = {}
        self._subscription: CoreSubscription | None = None

    async def start(self) -> None:
        """Subscribe to this gateway's result inbox (idempotent)."""
        if self._subscription is None:
            self._subscription = await self.broker.subscribe_core(
                self.inbox_prefix + ".>", self._on_result
            )

    async def close(self) -> None:
        """Unsubscribe; waiting pushes fall back to 202."""
        sub, self._subscription = self._subscription, None
        if sub is not None:
            await sub.unsubscribe()
        # Waiting pushes time out on their own and answer 202 (or find the stored result).
        self._waiters.clear()

    def result_subject(self, changeset_id: str) -> str:
        """Where the applier should publish the result of ``changeset_id``."""
        return f"{self.inbox_prefix}.{encode_token(changeset_id)}"

    async def _on_result(self, message: CoreMessage) -> None:
        try:
            result = _result_decoder.decode(message.data)
        except msgspec.DecodeError:
            logger.warning("undecodable changeset result on %s", message.subject)
            return
        for future in self._waiters.pop(result.changeset_id, []):
            if not future.done():
                future.set_result(result)

    async def submit(
        self, push: PushRequest, actor: Actor, wait_s: float
    ) -> tuple[ChangesetResult | None, bool]:
        """Hand a changeset to the applier and wait up to ``wait_s`` for its result.

        Returns:
            ``(result, replay)``: the result, or ``None`` if it is still pending after
            ``wait_s``; ``replay`` is true when the result was already stored.

        Raises:
            MessagingError: the changeset could not be published (nothing was written;
                the device retries with the same changeset id).
        """
        cid = push.changeset_id
        # No store read up front: a retry of a stored changeset is a duplicate publish
        # (JetStream's window), and one older than the window is replayed by the applier.
        future: asyncio.Future[ChangesetResult] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(cid, []).append(future)
        try:
            envelope = ChangesetEnvelope(
                push=push, actor=actor, received_ms=int(time.time() * 1000)
            )
            ack = await self.broker.publish(
                changeset_subject(push.device_id),
                encode_message(envelope),
                msg_id=cid,
                headers={RESULT_SUBJECT_HEADER: self.result_subject(cid)},
            )
            if ack.duplicate:
                stored = await self.store.changeset_result(cid)
                if stored is not None:
                    return stored, True
            return await self._wait(cid, future, wait_s, poll_store=ack.duplicate), False
        finally:
            waiters = self._waiters.get(cid)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(future)
                if not waiters:
                    self._waiters.pop(cid, None)

    async def _wait(
        self,
        cid: str,
        future: asyncio.Future[ChangesetResult],
        wait_s: float,
        *,
        poll_store: bool,
    ) -> ChangesetResult | None:
        # A duplicate publish means an earlier attempt (maybe via another gateway, whose
        # inbox gets the answer) is in flight: watch the store as well as our inbox.
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            step = min(remaining, _STORE_POLL_S) if poll_store else remaining
            try:
                return await asyncio.wait_for(asyncio.shield(future), step)
            except TimeoutError:
                if poll_store:
                    stored = await self.store.changeset_result(cid)
                    if stored is not None:
                        return stored
        if future.done() and not future.cancelled():
            return future.result()
        return await self.store.changeset_result(cid)
