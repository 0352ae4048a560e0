"""The durable JetStream pull-consumer loop behind :meth:`NatsBroker.consume`.

Guarantees, in the order they matter:

* **At least once, ack after success.** A message is acked only after the handler returned
  for the batch that holds it. A worker that dies (crash, SIGKILL, lost connection) never
  acks, so the server redelivers its messages to another worker after ``ack_wait``. Handlers
  must therefore be idempotent (the applier is: changeset id).
* **Work sharing.** Every worker on the same durable pulls from one server-side cursor, so
  N processes split the stream between them and no message is handed to two workers at
  once (one could still see a message another worker was too slow to ack in ``ack_wait``;
  the loop sends progress acks while the handler runs to keep that from happening to
  live workers).
* **A failure does not block the batch.** When the handler raises on a batch, each message
  is retried alone so one poison message does not hold back the others; those that fail
  alone are nak'd with a delay and come back later.
* **Poison messages end.** On its last allowed delivery (``max_deliver``) a failing message
  is copied to the dead-letter stream with headers saying where it came from and why, then
  terminated. A message that never fails but kills or stalls every worker that takes it
  reaches ``max_deliver`` without a handler error: the server's MAX_DELIVERIES advisory
  makes a live worker copy it to the dead-letter stream too. Either way it also stays in
  its own stream (limits retention) until ``max_age``.
* **Graceful stop.** When ``stop`` is set the loop finishes the batch in hand (handler,
  acks) and returns; cancelling the task instead hands unsettled messages straight back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from backend.messaging.errors import (
    DeliveryLimitError,
    MessagingConfigError,
    MessagingError,
    NotConnectedError,
    StreamNotFoundError,
    translate_nats_error,
)
from backend.messaging.messages import BatchHandler, ConsumeStats, Delivery
from backend.messaging.subjects import (
    DLQ_CONSUMER_HEADER,
    DLQ_DELIVERIES_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_MSG_ID_HEADER,
    DLQ_SEQ_HEADER,
    DLQ_STREAM_HEADER,
    DLQ_SUBJECT_HEADER,
    MSG_ID_HEADER,
    dead_letter_subject,
    validate_name,
)

logger = logging.getLogger("crmsync.messaging.consumer")

DeadLetterPublisher = Callable[[str, bytes, dict[str, str]], Awaitable[object]]
"""Publishes a dead letter: (subject, data, headers)."""

_TRANSIENT_BACKOFF_S = 0.5
_TOP_UP_WAIT_S = 0.005
_MAX_ERROR_HEADER = 500


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Shape of one durable pull consumer and of the loop that drives it.

    Attributes:
        stream: Stream to consume.
        durable: Durable consumer name, shared by every worker that splits the work.
        batch: Messages fetched (and handed to the handler) at once.
        fetch_wait: Longest wait for a batch when the stream is idle; also bounds how long
            a graceful stop takes.
        filter_subject: Optional subject filter within the stream.
        ack_wait: Seconds before an unacked message is redelivered to some worker.
        max_deliver: Deliveries before the message is dead-lettered (-1: never give up).
        nak_delay: Delay before redelivery after a handler failure.
        max_ack_pending: Unacked messages the consumer may have out across all workers.
        isolate_failures: Retry the messages of a failed batch one by one.
        dead_letter: Copy given-up messages to the dead-letter stream (else only log).
    """

    stream: str
    durable: str
    batch: int = 10
    fetch_wait: float = 1.0
    filter_subject: str | None = None
    ack_wait: float = 30.0
    max_deliver: int = 5
    nak_delay: float = 1.0
    max_ack_pending: int = 1000
    isolate_failures: bool = True
    dead_letter: bool = True

    def __post_init__(self) -> None:
        validate_name(self.stream, kind="stream name")
        validate_name(self.durable, kind="durable consumer name")
        if self.batch < 1:
            raise MessagingConfigError("batch must be at least 1")
        if self.fetch_wait <= 0 or self.ack_wait <= 0:
            raise MessagingConfigError("fetch_wait and ack_wait must be positive")
        if self.nak_delay < 0:
            raise MessagingConfigError("nak_delay must not be negative")
        if self.max_deliver == 0 or self.max_deliver < -1:
            raise MessagingConfigError("max_deliver must be >= 1, or -1 for unlimited")
        if self.max_ack_pending < self.batch:
            raise MessagingConfigError("max_ack_pending must be at least batch")


def to_delivery(msg: Msg) -> Delivery:
    """Copy what a handler needs out of a nats-py JetStream message.

    Args:
        msg: A message delivered by a JetStream consumer.

    Returns:
        The :class:`Delivery`.
    """
    meta = msg.metadata
    return Delivery(
        subject=msg.subject,
        data=msg.data,
        headers=dict(msg.headers or {}),
        stream=meta.stream,
        consumer=meta.consumer,
        stream_seq=meta.sequence.stream,
        consumer_seq=meta.sequence.consumer,
        num_delivered=meta.num_delivered,
        num_pending=meta.num_pending,
    )


class PullConsumer:
    """Runs the fetch / handle / ack loop for one worker on one durable consumer.

    Args:
        js: JetStream context of a connected client.
        settings: Consumer and loop settings (the consumer must already exist).
        handler: Async batch handler.
        publish_dead_letter: Used to park given-up messages.
        stats: Counters to update (a fresh one if ``None``).
    """

    def __init__(
        self,
        js: JetStreamContext,
        settings: ConsumerSettings,
        handler: BatchHandler,
        publish_dead_letter: DeadLetterPublisher,
        stats: ConsumeStats | None = None,
    ) -> None:
        self._js = js
        self.settings = settings
        self._handler = handler
        self._publish_dead_letter = publish_dead_letter
        self.stats = stats if stats is not None else ConsumeStats()

    async def run(self, stop: asyncio.Event) -> ConsumeStats:
        """Consume until ``stop`` is set, then return after the batch in hand is settled.

        Args:
            stop: Set it to stop gracefully.

        Returns:
            The loop's counters.

        Raises:
            NotConnectedError: The connection was closed under the loop.
            StreamNotFoundError: The stream or consumer was deleted.
        """
        s = self.settings
        try:
            sub = await self._js.pull_subscribe_bind(durable=s.durable, stream=s.stream)
        except nats.errors.Error as e:
            raise translate_nats_error(e) from e
        try:
            while not stop.is_set():
                try:
                    msgs = await self._fetch(sub)
                except TimeoutError:
                    # Idle stream (nats-py raises its own TimeoutError or the builtin one,
                    # depending on where the deadline hits): fetch again, look at stop.
                    self.stats.empty_fetches += 1
                    continue
                except (
                    nats.errors.ConnectionClosedError,
                    nats.errors.ConnectionDrainingError,
                ) as e:
                    raise NotConnectedError("connection closed under the consumer") from e
                except nats.js.errors.NotFoundError as e:
                    raise StreamNotFoundError(f"consumer {s.stream}/{s.durable} is gone") from e
                except nats.js.errors.APIError as e:
                    # "409 Consumer Deleted" on a pending pull, or 503 (no responders) on the
                    # next one: ask whether the consumer still exists before retrying.
                    if await self._consumer_gone():
                        raise StreamNotFoundError(
                            f"consumer {s.stream}/{s.durable} was deleted"
                        ) from e
                    logger.warning("fetch from %s/%s refused, retrying: %r", s.stream, s.durable, e)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), _TRANSIENT_BACKOFF_S)
                    continue
                except nats.errors.Error as e:
                    # Reconnects, leader changes and the like: the server keeps our state.
                    logger.warning(
                        "fetch from %s/%s failed, retrying: %s",
                        s.stream,
                        s.durable,
                        translate_nats_error(e).code,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), _TRANSIENT_BACKOFF_S)
                    continue
                if msgs:
                    await self._process(msgs)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        return self.stats

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        """The first message as soon as one arrives, then what else is ready, up to a batch.

        nats-py's ``fetch(batch)`` on an idle stream, once its first message has come,
        waits for the rest of the batch or the whole timeout: at 200 changesets/s with
        batches of 64 that held each push for up to ``fetch_wait`` (p99 of half a second).
        Waiting for one message and then topping up with what the server has right now
        keeps batching under load and adds at most ``_TOP_UP_WAIT_S`` when idle.

        Raises:
            TimeoutError: No message arrived within ``fetch_wait``.
        """
        s = self.settings
        msgs = await sub.fetch(1, timeout=s.fetch_wait)
        if s.batch > 1:
            with contextlib.suppress(TimeoutError):
                msgs += await sub.fetch(s.batch - 1, timeout=_TOP_UP_WAIT_S)
        return msgs

    async def _consumer_gone(self) -> bool:
        try:
            await self._js.consumer_info(self.settings.stream, self.settings.durable)
        except nats.js.errors.NotFoundError:
            return True
        except (nats.errors.Error, TimeoutError):
            return False  # cannot tell (e.g. leader election): treat as transient
        return False

    async def on_max_deliveries(self, advisory: bytes) -> None:
        """Dead-letter a message the server gave up on (MAX_DELIVERIES advisory).

        Args:
            advisory: The advisory's JSON body (``stream``, ``consumer``, ``stream_seq``,
                ``deliveries``).
        """
        s = self.settings
        try:
            event = json.loads(advisory)
            seq = int(event["stream_seq"])
            deliveries = int(event.get("deliveries", 0))
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed MAX_DELIVERIES advisory on %s", s.stream)
            return
        logger.error(
            "%s seq %d reached %d deliveries on %s without an ack; dead-lettering it",
            s.stream,
            seq,
            deliveries,
            s.durable,
        )
        if not s.dead_letter:
            return
        try:
            raw = await self._js.get_msg(s.stream, seq)
        except nats.errors.Error as e:
            logger.error(
                "could not read %s seq %d to dead-letter it (%s)",
                s.stream,
                seq,
                translate_nats_error(e).code,
            )
            return
        delivery = Delivery(
            subject=raw.subject or "",
            data=raw.data or b"",
            headers=dict(raw.headers or {}),
            stream=s.stream,
            consumer=s.durable,
            stream_seq=seq,
            consumer_seq=0,
            num_delivered=deliveries,
            num_pending=0,
        )
        error = DeliveryLimitError(
            f"delivered {deliveries} times without an ack (workers crashed or timed out)"
        )
        try:
            await self._publish_dead_letter(
                dead_letter_subject(s.stream, s.durable),
                delivery.data,
                _dead_letter_headers(delivery, error),
            )
        except MessagingError as e:
            logger.error("could not dead-letter %s seq %d (%s)", s.stream, seq, e.code)
        else:
            self.stats.dead_lettered += 1

    # ------------------------------------------------------------------ batch handling

    async def _process(self, msgs: Sequence[Msg]) -> None:
        settled: set[int] = set()
        deliveries = [to_delivery(m) for m in msgs]
        self.stats.batches += 1
        self.stats.delivered += len(msgs)
        keep_alive = asyncio.create_task(self._keep_alive(msgs, settled))
        try:
            try:
                await self._handler(deliveries)
            except Exception as error:
                self.stats.handler_failures += 1
                if self.settings.isolate_failures and len(msgs) > 1:
                    logger.warning(
                        "handler failed on a batch of %d from %s/%s (%s); retrying one by one",
                        len(msgs),
                        self.settings.stream,
                        self.settings.durable,
                        _error_label(error),
                    )
                    await self._retry_alone(msgs, deliveries, settled)
                else:
                    for i, (msg, delivery) in enumerate(zip(msgs, deliveries, strict=True)):
                        await self._fail(msg, delivery, error)
                        settled.add(i)
            else:
                for i, msg in enumerate(msgs):
                    await self._ack(msg)
                    settled.add(i)
        except asyncio.CancelledError:
            # Hand back what we did not settle, now, so a live worker takes it without
            # waiting for ack_wait.
            for i, msg in enumerate(msgs):
                if i not in settled:
                    with contextlib.suppress(nats.errors.Error):
                        await msg.nak()
            raise
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive

    async def _retry_alone(
        self, msgs: Sequence[Msg], deliveries: Sequence[Delivery], settled: set[int]
    ) -> None:
        for i, (msg, delivery) in enumerate(zip(msgs, deliveries, strict=True)):
            try:
                await self._handler([delivery])
            except Exception as error:
                self.stats.handler_failures += 1
                await self._fail(msg, delivery, error)
            else:
                await self._ack(msg)
            settled.add(i)

    async def _keep_alive(self, msgs: Sequence[Msg], settled: set[int]) -> None:
        """Tell the server we are still working so a slow batch is not redelivered."""
        interval = self.settings.ack_wait / 3
        while True:
            await asyncio.sleep(interval)
            for i, msg in enumerate(msgs):
                if i not in settled:
                    with contextlib.suppress(nats.errors.Error):
                        await msg.in_progress()

    async def _ack(self, msg: Msg) -> None:
        try:
            await msg.ack()
        except nats.errors.Error as e:
            # Not fatal: the server redelivers, and handlers are idempotent.
            logger.warning("ack failed (message will be redelivered): %s", _error_label(e))
        else:
            self.stats.acked += 1

    async def _fail(self, msg: Msg, delivery: Delivery, error: BaseException) -> None:
        s = self.settings
        last_try = s.max_deliver > 0 and delivery.num_delivered >= s.max_deliver
        if not last_try:
            try:
                await msg.nak(delay=s.nak_delay or None)
            except nats.errors.Error as e:
                logger.warning("nak failed (redelivery after ack_wait): %s", _error_label(e))
            else:
                self.stats.nacked += 1
            return
        # Payloads may hold personal data: log only where the message is.
        logger.error(
            "giving up on %s seq %d (subject %s) after %d deliveries: %s",
            delivery.stream,
            delivery.stream_seq,
            delivery.subject,
            delivery.num_delivered,
            _error_label(error),
        )
        if s.dead_letter:
            try:
                await self._publish_dead_letter(
                    dead_letter_subject(delivery.stream, delivery.consumer),
                    delivery.data,
                    _dead_letter_headers(delivery, error),
                )
            except MessagingError as e:
                logger.error(
                    "could not dead-letter %s seq %d (%s); it stays in its stream until max_age",
                    delivery.stream,
                    delivery.stream_seq,
                    e.code,
                )
            else:
                self.stats.dead_lettered += 1
        with contextlib.suppress(nats.errors.Error):
            await msg.term()
        self.stats.terminated += 1


def _error_label(error: BaseException, *, with_message: bool = False) -> str:
    """Name an error for logs: type and stable code; the message only where asked for,
    since handler messages may quote record fields (personal data stays out of logs)."""
    code = getattr(error, "code", None)
    label = type(error).__name__
    if isinstance(code, str):
        label += f"[{code}]"
    return f"{label}: {error}" if with_message else label


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _dead_letter_headers(delivery: Delivery, error: BaseException) -> dict[str, str]:
    headers: Mapping[str, str] = {
        DLQ_STREAM_HEADER: delivery.stream,
        DLQ_SEQ_HEADER: str(delivery.stream_seq),
        DLQ_SUBJECT_HEADER: delivery.subject,
        DLQ_CONSUMER_HEADER: delivery.consumer,
        DLQ_DELIVERIES_HEADER: str(delivery.num_delivered),
        DLQ_ERROR_HEADER: _one_line(_error_label(error, with_message=True))[:_MAX_ERROR_HEADER],
        # Two workers giving up on the same message store one dead letter.
        MSG_ID_HEADER: f"dlq:{delivery.stream}:{delivery.consumer}:{delivery.stream_seq}",
    }
    result = dict(headers)
    if delivery.msg_id is not None:
        result[DLQ_MSG_ID_HEADER] = delivery.msg_id
    return result
