"""The messaging port (:class:`Broker`) and its NATS JetStream adapter (:class:`NatsBroker`).

Code above the port (gateway, applier, importer) depends on :class:`Broker` and the value
types in :mod:`backend.messaging.messages`; only this module and
:mod:`backend.messaging.pull_consumer` import nats-py, and every nats-py exception leaves as
a typed :class:`~backend.messaging.errors.MessagingError`.

Typical use::

    async with NatsBroker(NatsConfig(servers=("nats://127.0.0.1:4222",))) as broker:
        await broker.ensure_streams()
        ack = await broker.publish(changeset_subject(device), body, msg_id=changeset_id)
        if ack.duplicate: ...  # a replayed push inside the duplicate window
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from backend.messaging.config import NatsConfig
from backend.messaging.errors import (
    AuthFailedError,
    ConnectFailedError,
    JetStreamApiError,
    JetStreamUnavailableError,
    MessagingError,
    NotConnectedError,
    StreamConfigConflictError,
    StreamNotFoundError,
    mapped_nats_errors,
    translate_nats_error,
)
from backend.messaging.messages import (
    BatchHandler,
    ConsumeStats,
    CoreHandler,
    CoreMessage,
    PublishAck,
)
from backend.messaging.pull_consumer import ConsumerSettings, PullConsumer
from backend.messaging.subjects import (
    MSG_ID_HEADER,
    STREAMS,
    StreamSpec,
    max_deliveries_advisory_subject,
    validate_name,
)

logger = logging.getLogger("crmsync.messaging")

_CLOSE_WAIT_S = 10.0
_ENSURE_ATTEMPTS = 6
_ENSURE_FIRST_PAUSE_S = 0.05
_JS_ERR_STORE_CREATE = 10049


# ====================================================================== the port


@runtime_checkable
class CoreSubscription(Protocol):
    """A live core-NATS subscription."""

    subject: str

    async def unsubscribe(self) -> None:
        """Stop receiving; idempotent."""
        ...


@runtime_checkable
class Broker(Protocol):
    """What the services need from messaging: durable streams, core pub/sub, consumers."""

    async def connect(self) -> None:
        """Connect (idempotent)."""
        ...

    async def close(self) -> None:
        """Stop consumers gracefully, flush, and disconnect (idempotent)."""
        ...

    async def ensure_streams(self) -> None:
        """Create or update every stream the project uses (idempotent)."""
        ...

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> PublishAck:
        """Store a message in the stream that owns ``subject`` (de-duplicated by ``msg_id``)."""
        ...

    async def publish_core(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Fire-and-forget core-NATS publish (not stored)."""
        ...

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> CoreMessage:
        """Core-NATS request; returns the first reply."""
        ...

    async def subscribe_core(
        self, subject: str, handler: CoreHandler, *, queue: str | None = None
    ) -> CoreSubscription:
        """Subscribe to a core subject; active on the server when this returns."""
        ...

    async def consume(
        self,
        stream: str,
        durable: str,
        handler: BatchHandler,
        *,
        batch: int = 10,
        fetch_wait: float = 1.0,
        filter_subject: str | None = None,
        ack_wait: float | None = None,
        max_deliver: int | None = None,
        nak_delay: float | None = None,
        isolate_failures: bool = True,
        stop: asyncio.Event | None = None,
        stats: ConsumeStats | None = None,
    ) -> ConsumeStats:
        """Run a durable pull-consumer loop until ``stop`` is set or the broker closes."""
        ...


# ====================================================================== state snapshots


@dataclass(frozen=True, slots=True)
class StreamState:
    """A snapshot of a stream, for tests and operators.

    Attributes:
        name: Stream name.
        messages: Messages stored.
        first_seq: First sequence still stored.
        last_seq: Last sequence assigned.
        consumer_count: Consumers defined on the stream.
        duplicate_window: Configured de-duplication window, seconds.
    """

    name: str
    messages: int
    first_seq: int
    last_seq: int
    consumer_count: int
    duplicate_window: float


@dataclass(frozen=True, slots=True)
class ConsumerState:
    """A snapshot of a durable consumer.

    Attributes:
        stream: Stream name.
        name: Consumer name.
        num_pending: Messages not yet delivered.
        num_ack_pending: Delivered, not yet acked.
        num_redelivered: Messages delivered more than once and not yet acked.
        delivered_stream_seq: Last stream sequence delivered.
        ack_floor_stream_seq: Stream sequence up to which everything is acked.
    """

    stream: str
    name: str
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    delivered_stream_seq: int
    ack_floor_stream_seq: int


# ====================================================================== the adapter


class _NatsCoreSubscription:
    """:class:`CoreSubscription` over a nats-py subscription."""

    def __init__(self, subject: str, sub: Subscription) -> None:
        self.subject = subject
        self._sub: Subscription | None = sub

    async def unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


class NatsBroker:
    """:class:`Broker` over NATS with JetStream (nats-py).

    Args:
        config: Connection, stream and consumer settings.
        streams: Streams :meth:`ensure_streams` manages; all of the project's by default.
    """

    def __init__(self, config: NatsConfig, *, streams: tuple[StreamSpec, ...] = STREAMS) -> None:
        self.config = config
        self.streams = streams
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        # "loop finished" event -> stop event, per running consume() call (several calls may
        # share one stop event, so the finished event is the key)
        self._running_consumers: dict[asyncio.Event, asyncio.Event] = {}
        self._last_connect_error: BaseException | None = None
        self._auth_refused = False
        self._auth_refused_event = asyncio.Event()
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_connected(self) -> bool:
        """Whether the client is connected right now (false while reconnecting)."""
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Connect to the first reachable server; reconnects are automatic afterwards.

        Raises:
            AuthFailedError: The server refused the credentials.
            ConnectFailedError: No server answered before ``initial_connect_timeout``.
        """
        if self._nc is not None:
            return
        cfg = self.config
        nc = Client()
        options: dict[str, Any] = {
            "servers": list(cfg.servers),
            "name": cfg.connection_name,
            "connect_timeout": cfg.connect_timeout,
            "reconnect_time_wait": cfg.reconnect_time_wait,
            "max_reconnect_attempts": cfg.max_reconnect_attempts,
            "allow_reconnect": True,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if cfg.user is not None:
            options["user"] = cfg.user
            options["password"] = cfg.password
        if cfg.token is not None:
            options["token"] = cfg.token
        if cfg.creds_file is not None:
            options["user_credentials"] = cfg.creds_file
        self._last_connect_error = None
        self._auth_refused = False
        self._auth_refused_event = asyncio.Event()
        try:
            await self._first_connect(nc, options)
        except (TimeoutError, nats.errors.Error, OSError) as e:
            with contextlib.suppress(Exception):
                await nc.close()
            raise self._connect_error(e) from e
        self._nc = nc
        self._js = nc.jetstream(timeout=cfg.request_timeout)
        self._closing = False
        logger.info("connected to NATS %s", nc.connected_url.netloc if nc.connected_url else "?")

    async def _first_connect(self, nc: Client, options: dict[str, Any]) -> None:
        """Connect, giving up at ``initial_connect_timeout`` or at the first auth refusal.

        nats-py retries the first connect forever when reconnects are unlimited, and
        retrying refused credentials cannot succeed: both would hang a service's start-up.
        """
        connecting = asyncio.ensure_future(nc.connect(**options))
        refused = asyncio.ensure_future(self._auth_refused_event.wait())
        try:
            done, _ = await asyncio.wait(
                {connecting, refused},
                timeout=self.config.initial_connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            refused.cancel()
        if connecting in done:
            connecting.result()  # re-raises a connect error
            return
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await connecting
        raise TimeoutError("initial connect did not complete")

    def _connect_error(self, error: BaseException) -> MessagingError:
        cause = self._last_connect_error or error
        # Any refusal counts, not only the last error: after a few refusals the server may
        # just reset the connection.
        if self._auth_refused or _is_auth_error(cause):
            return AuthFailedError("NATS refused the credentials (authorization violation)")
        return ConnectFailedError(
            f"no NATS server reachable at {', '.join(self.config.servers)} within "
            f"{self.config.initial_connect_timeout}s (last error: {type(cause).__name__}: {cause})"
        )

    async def close(self) -> None:
        """Stop consumer loops gracefully (finish and ack the batch in hand), then drain.

        Idempotent; safe to call when never connected.
        """
        nc = self._nc
        if nc is None or self._closing:
            return
        self._closing = True
        running = list(self._running_consumers.items())
        for _, stop in running:
            stop.set()
        if running:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(done.wait() for done, _ in running)), _CLOSE_WAIT_S
                )
            except TimeoutError:
                logger.warning("consumer loops still busy after %ss; closing anyway", _CLOSE_WAIT_S)
        try:
            if not nc.is_closed:
                await nc.drain()
        except (nats.errors.Error, OSError) as e:
            logger.warning("NATS drain failed, closing: %s", type(e).__name__)
            with contextlib.suppress(Exception):
                await nc.close()
        finally:
            self._nc = None
            self._js = None

    async def __aenter__(self) -> NatsBroker:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _on_error(self, error: Exception) -> None:
        self._last_connect_error = error
        if _is_auth_error(error):
            self._auth_refused = True
            self._auth_refused_event.set()
        logger.warning("NATS client error: %s: %s", type(error).__name__, error)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            logger.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS")

    def _client(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            raise NotConnectedError("the broker is not connected")
        return self._nc

    def _jetstream(self) -> JetStreamContext:
        self._client()
        assert self._js is not None
        return self._js

    # ------------------------------------------------------------------ streams

    def stream_config(self, spec: StreamSpec) -> StreamConfig:
        """The JetStream configuration ``ensure_streams`` applies for ``spec``.

        Args:
            spec: Which stream.

        Returns:
            Its nats-py ``StreamConfig``.
        """
        cfg = self.config
        return StreamConfig(
            name=spec.name,
            description=spec.description,
            subjects=list(spec.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=cfg.stream_replicas,
            max_age=cfg.dead_letter_max_age if spec.dead_letter else cfg.max_age,
            duplicate_window=cfg.duplicate_window,
            max_msg_size=cfg.max_msg_size,
        )

    async def ensure_streams(self) -> None:
        """Create every stream, or update it to the configured shape (idempotent, race-safe).

        Raises:
            StreamConfigConflictError: A stream exists with settings that cannot change
                in place (e.g. storage type) or its subjects overlap another stream.
            MessagingError: Any other failure, typed.
        """
        for spec in self.streams:
            await self._ensure_stream(spec)

    async def _ensure_stream(self, spec: StreamSpec) -> None:
        js = self._jetstream()
        config = self.stream_config(spec)
        pause = _ENSURE_FIRST_PAUSE_S
        for attempt in range(_ENSURE_ATTEMPTS):
            try:
                with mapped_nats_errors():
                    try:
                        await js.add_stream(config)
                        return
                    except nats.js.errors.BadRequestError as e:
                        if translate_nats_error(e).code != StreamConfigConflictError.code:
                            raise
                    # It exists (maybe another process created it just now): reshape it.
                    await js.update_stream(config)
                    return
            except (JetStreamUnavailableError, JetStreamApiError) as e:
                # Transient server-side failures: a leader election (503), or "error
                # creating store" (10049) when a stream of the same name was deleted a
                # moment ago and its files are still going away.
                transient = isinstance(e, JetStreamUnavailableError) or (
                    isinstance(e, JetStreamApiError) and e.err_code == _JS_ERR_STORE_CREATE
                )
                if not transient or attempt + 1 == _ENSURE_ATTEMPTS:
                    raise
                logger.warning("creating stream %s failed (%s); retrying", spec.name, e.code)
                await asyncio.sleep(pause)
                pause *= 2

    async def delete_stream(self, name: str) -> bool:
        """Delete a stream with its messages, consumers and de-duplication state.

        Args:
            name: Stream name.

        Returns:
            True if it existed.
        """
        validate_name(name, kind="stream name")
        try:
            # Consumers first: with nats-server 2.15, a consumer re-created under the same
            # name right after its stream was deleted and re-created sometimes counts a
            # batch as delivered without sending it (reproduced in about 1 of 30 tries;
            # never seen when the consumers are deleted before the stream).
            await self.delete_consumers(name)
            with mapped_nats_errors():
                await self._jetstream().delete_stream(name)
        except StreamNotFoundError:
            return False
        return True

    async def purge_stream(self, name: str) -> None:
        """Delete every message of a stream (tests and operators).

        Sequences continue and recent ``Nats-Msg-Id`` values are still remembered as
        duplicates; use :meth:`delete_stream` and :meth:`ensure_streams` for a clean slate.

        Args:
            name: Stream name.
        """
        validate_name(name, kind="stream name")
        with mapped_nats_errors():
            await self._jetstream().purge_stream(name)

    async def stream_state(self, name: str) -> StreamState:
        """Return a snapshot of a stream.

        Args:
            name: Stream name.

        Returns:
            The :class:`StreamState`.

        Raises:
            StreamNotFoundError: No such stream.
        """
        validate_name(name, kind="stream name")
        with mapped_nats_errors():
            info = await self._jetstream().stream_info(name)
        state = info.state
        return StreamState(
            name=name,
            messages=state.messages,
            first_seq=state.first_seq,
            last_seq=state.last_seq,
            consumer_count=state.consumer_count,
            duplicate_window=info.config.duplicate_window,
        )

    # ------------------------------------------------------------------ consumers

    async def ensure_consumer(self, settings: ConsumerSettings) -> None:
        """Create the durable pull consumer, or update it to ``settings`` (idempotent).

        Args:
            settings: Consumer shape.

        Raises:
            StreamNotFoundError: The stream does not exist (call :meth:`ensure_streams`).
        """
        config = ConsumerConfig(
            name=settings.durable,
            durable_name=settings.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.max_ack_pending,
            filter_subject=settings.filter_subject,
        )
        with mapped_nats_errors():
            await self._jetstream().add_consumer(settings.stream, config)

    async def consumer_state(self, stream: str, durable: str) -> ConsumerState:
        """Return a snapshot of a durable consumer.

        Args:
            stream: Stream name.
            durable: Consumer name.

        Returns:
            The :class:`ConsumerState`.

        Raises:
            StreamNotFoundError: No such stream or consumer.
        """
        validate_name(stream, kind="stream name")
        validate_name(durable, kind="durable consumer name")
        with mapped_nats_errors():
            info = await self._jetstream().consumer_info(stream, durable)
        return ConsumerState(
            stream=stream,
            name=durable,
            num_pending=info.num_pending or 0,
            num_ack_pending=info.num_ack_pending or 0,
            num_redelivered=info.num_redelivered or 0,
            delivered_stream_seq=(info.delivered.stream_seq or 0) if info.delivered else 0,
            ack_floor_stream_seq=(info.ack_floor.stream_seq or 0) if info.ack_floor else 0,
        )

    async def delete_consumers(self, stream: str) -> int:
        """Delete every consumer of a stream (tests and operators).

        Args:
            stream: Stream name.

        Returns:
            How many consumers were deleted.
        """
        validate_name(stream, kind="stream name")
        js = self._jetstream()
        deleted = 0
        with mapped_nats_errors():
            for info in await js.consumers_info(stream):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_consumer(stream, info.name)
                    deleted += 1
        return deleted

    async def consume(
        self,
        stream: str,
        durable: str,
        handler: BatchHandler,
        *,
        batch: int = 10,
        fetch_wait: float = 1.0,
        filter_subject: str | None = None,
        ack_wait: float | None = None,
        max_deliver: int | None = None,
        nak_delay: float | None = None,
        isolate_failures: bool = True,
        stop: asyncio.Event | None = None,
        stats: ConsumeStats | None = None,
    ) -> ConsumeStats:
        """Run a durable pull consumer: fetch batches, call ``handler``, ack after it returns.

        Every process calling this with the same ``stream``/``durable`` shares the work.
        See :mod:`backend.messaging.pull_consumer` for the delivery guarantees. Unset
        ``ack_wait``, ``max_deliver`` and ``nak_delay`` come from the broker's config.

        Args:
            stream: Stream to consume.
            durable: Durable consumer name (created or updated here).
            handler: ``async def handler(batch: Sequence[Delivery]) -> None``; raising
                hands the batch back for redelivery.
            batch: Messages per fetch.
            fetch_wait: Longest idle wait per fetch (bounds graceful-stop latency).
            filter_subject: Optional subject filter within the stream.
            ack_wait: Redelivery deadline for unacked messages.
            max_deliver: Deliveries before dead-lettering (-1: unlimited).
            nak_delay: Redelivery delay after a handler failure.
            isolate_failures: Retry a failed batch message by message.
            stop: Set it to stop after the batch in hand; :meth:`close` also stops the loop.
            stats: Counters to update live.

        Returns:
            The loop's counters once it stopped.

        Raises:
            MessagingConfigError: Invalid settings.
            StreamNotFoundError: The stream (or consumer) does not exist.
            NotConnectedError: The broker is closed.
        """
        cfg = self.config
        settings = ConsumerSettings(
            stream=stream,
            durable=durable,
            batch=batch,
            fetch_wait=fetch_wait,
            filter_subject=filter_subject,
            ack_wait=cfg.ack_wait if ack_wait is None else ack_wait,
            max_deliver=cfg.max_deliver if max_deliver is None else max_deliver,
            nak_delay=cfg.nak_delay if nak_delay is None else nak_delay,
            max_ack_pending=max(cfg.max_ack_pending, batch),
            isolate_failures=isolate_failures,
        )
        if self._closing:
            raise NotConnectedError("the broker is closing")
        await self.ensure_consumer(settings)
        loop = PullConsumer(
            self._jetstream(), settings, handler, self._publish_dead_letter, stats=stats
        )
        stop_event = stop if stop is not None else asyncio.Event()
        done = asyncio.Event()
        self._running_consumers[done] = stop_event
        advisories: CoreSubscription | None = None
        try:
            if settings.max_deliver > 0:
                advisories = await self._watch_max_deliveries(loop)
            return await loop.run(stop_event)
        finally:
            if advisories is not None:
                await advisories.unsubscribe()
            done.set()
            self._running_consumers.pop(done, None)

    async def _watch_max_deliveries(self, loop: PullConsumer) -> CoreSubscription:
        """Let the workers of a durable dead-letter what the server gave up on.

        A queue group, so one live worker handles each advisory; the dead letter's
        ``Nats-Msg-Id`` makes a second copy (from any path) a no-op.
        """
        s = loop.settings

        async def on_advisory(message: CoreMessage) -> None:
            await loop.on_max_deliveries(message.data)

        return await self.subscribe_core(
            max_deliveries_advisory_subject(s.stream, s.durable),
            on_advisory,
            queue=f"crmsync-dlq-{s.stream}-{s.durable}",
        )

    async def _publish_dead_letter(
        self, subject: str, data: bytes, headers: dict[str, str]
    ) -> None:
        await self.publish(subject, data, headers=headers)

    # ------------------------------------------------------------------ publishing

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> PublishAck:
        """Store a message in JetStream and wait for the stream's ack.

        Args:
            subject: Subject owned by one of the streams (see :mod:`subjects`).
            data: Payload.
            msg_id: De-duplication key (``Nats-Msg-Id``), e.g. the changeset id. A second
                publish with the same id within the duplicate window stores nothing and
                returns ``duplicate=True``.
            headers: Extra headers.
            timeout_s: Seconds to wait for the ack; the config's ``request_timeout`` if unset.

        Returns:
            The :class:`PublishAck`.

        Raises:
            NoStreamError: No stream captures ``subject``.
            PayloadTooLargeError: ``data`` exceeds the stream's or server's limit.
            BrokerTimeoutError: No ack in time (the message may or may not be stored:
                publish again with the same ``msg_id``).
            MessagingError: Any other failure, typed.
        """
        if msg_id is not None and not msg_id:
            raise ValueError("msg_id must be a non-empty string or None")
        hdrs = dict(headers) if headers else {}
        if msg_id is not None:
            hdrs[MSG_ID_HEADER] = msg_id
        js = self._jetstream()
        with mapped_nats_errors():
            ack = await js.publish(
                subject,
                data,
                timeout=timeout_s or self.config.request_timeout,
                headers=hdrs or None,
            )
        return PublishAck(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate))

    async def publish_core(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish on core NATS: not stored, delivered to current subscribers only.

        Args:
            subject: Subject, e.g. :func:`~backend.messaging.subjects.event_subject`.
            data: Payload.
            headers: Optional headers.

        Raises:
            MessagingError: Typed failure (not connected, bad subject, too large).
        """
        nc = self._client()
        with mapped_nats_errors():
            await nc.publish(subject, data, headers=dict(headers) if headers else None)

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> CoreMessage:
        """Send a core-NATS request and wait for the first reply.

        Args:
            subject: Subject a responder listens on.
            data: Payload.
            timeout_s: Seconds to wait; the config's ``request_timeout`` if unset.
            headers: Optional headers.

        Returns:
            The reply.

        Raises:
            NoRespondersError: Nobody listens on ``subject``.
            BrokerTimeoutError: No reply in time.
        """
        nc = self._client()
        with mapped_nats_errors():
            msg = await nc.request(
                subject,
                data,
                timeout=timeout_s or self.config.request_timeout,
                headers=dict(headers) if headers else None,
            )
        return _core_message(msg)

    async def subscribe_core(
        self, subject: str, handler: CoreHandler, *, queue: str | None = None
    ) -> CoreSubscription:
        """Subscribe to a core subject (wildcards allowed); returns once the server has it.

        Handler exceptions are logged and swallowed: one bad message must not end the
        subscription.

        Args:
            subject: Subject or wildcard, e.g. ``crm.events.>``.
            handler: ``async def handler(message: CoreMessage) -> None``.
            queue: Optional queue group: each message goes to one member of the group.

        Returns:
            A handle to :meth:`CoreSubscription.unsubscribe`.
        """
        nc = self._client()

        async def on_message(msg: Msg) -> None:
            try:
                await handler(_core_message(msg))
            except Exception as e:
                logger.exception("core handler for %s failed: %s", subject, type(e).__name__)

        with mapped_nats_errors():
            sub = await nc.subscribe(subject, queue=queue or "", cb=on_message)
            # The flush round-trip guarantees the server registered the interest, so a
            # publish made right after this returns is delivered.
            await nc.flush(timeout=max(1, int(self.config.request_timeout)))
        return _NatsCoreSubscription(subject, sub)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the server has processed everything sent so far.

        Args:
            timeout_s: Seconds; the config's ``request_timeout`` if unset.
        """
        nc = self._client()
        with mapped_nats_errors():
            await nc.flush(timeout=max(1, int(timeout_s or self.config.request_timeout)))


def _is_auth_error(error: BaseException) -> bool:
    # nats-py reports a refused CONNECT as a plain Error carrying the server's -ERR text.
    text = str(error).lower()
    return isinstance(error, nats.errors.AuthorizationError) or "authorization" in text


def _core_message(msg: Msg) -> CoreMessage:
    return CoreMessage(
        subject=msg.subject,
        data=msg.data,
        headers=dict(msg.headers or {}),
        reply=msg.reply or None,
    )
