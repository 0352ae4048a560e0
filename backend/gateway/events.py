"""WebSocket "changes available" pokes, fanned out in process from one NATS subscription
per channel.

The applier publishes a :class:`~backend.applier.messages.ChangeEvent` to
``crm.events.<channel>`` after every commit that touched the channel. A gateway process
subscribes to a channel's subject only while at least one of its sockets is granted that
channel, and fans each event out to those sockets as ``{"type":"changes","seq":N}``; a
socket gets at most one poke per committed sequence however many of its channels the
commit touched. Idle sockets cost no task and no timer: a poke is a callback from the
subscription, so one process holds tens of thousands of idle connections.

A socket only ever hears about its own channels and the poke carries nothing but the
sequence number, so events reveal nothing outside the caller's scope.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from backend.applier.messages import event_decoder
from backend.messaging.broker import Broker, CoreSubscription
from backend.messaging.messages import CoreMessage
from backend.messaging.subjects import channel_from_event_subject, event_subject
from backend.observability import Metrics

logger = logging.getLogger("crmsync.gateway.events")

Sender = Callable[[str], Awaitable[None]]
"""Sends one text frame to a socket."""

_SEND_TIMEOUT_S = 10.0


class EventConnection:
    """One connected device socket.

    Args:
        device_id: the device.
        user: its user.
        channels: the channels it is granted.
        send: sends a text frame.
        expires_at: the token's expiry (epoch seconds); no pokes are sent after it.
        on_expired: called once when a poke finds the token expired (closes the socket).
    """

    __slots__ = ("channels", "device_id", "expires_at", "last_seq", "on_expired", "send", "user")

    def __init__(
        self,
        device_id: str,
        user: str,
        channels: frozenset[str],
        send: Sender,
        *,
        expires_at: float = 0.0,
        on_expired: Callable[[], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self.user = user
        self.channels = channels
        self.send = send
        self.expires_at = expires_at
        self.on_expired = on_expired
        self.last_seq = 0


class EventHub:
    """Which sockets want which channels, and the NATS subscriptions that feed them.

    Args:
        broker: the messaging port (core subscriptions).
        metrics: gauges for connections and subscriptions, a counter for pokes.
        max_connections: sockets this process accepts.
    """

    def __init__(
        self, broker: Broker, metrics: Metrics | None = None, *, max_connections: int = 20_000
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self.max_connections = max_connections
        self._by_channel: dict[str, set[EventConnection]] = {}
        self._subscriptions: dict[str, CoreSubscription] = {}
        self._connections: set[EventConnection] = set()
        self._lock = asyncio.Lock()
        self._sends: set[asyncio.Task[None]] = set()

    @property
    def connection_count(self) -> int:
        """Sockets currently registered."""
        return len(self._connections)

    @property
    def channel_count(self) -> int:
        """Channels this process is subscribed to."""
        return len(self._subscriptions)

    def has_room(self) -> bool:
        """True if another socket may join."""
        return len(self._connections) < self.max_connections

    async def join(self, conn: EventConnection) -> None:
        """Register a socket; subscribe to its channels not yet subscribed.

        Raises:
            MessagingError: a subscription failed (the socket is not registered).
        """
        async with self._lock:
            added: list[str] = []
            try:
                for channel in sorted(conn.channels):
                    if channel not in self._subscriptions:
                        self._subscriptions[channel] = await self.broker.subscribe_core(
                            event_subject(channel), self._on_event
                        )
                        added.append(channel)
            except Exception:
                for channel in added:
                    if not self._by_channel.get(channel):
                        sub = self._subscriptions.pop(channel, None)
                        if sub is not None:
                            await sub.unsubscribe()
                raise
            for channel in conn.channels:
                self._by_channel.setdefault(channel, set()).add(conn)
            self._connections.add(conn)
            self._gauge()

    async def leave(self, conn: EventConnection) -> None:
        """Unregister a socket; drop subscriptions no socket needs any more (idempotent)."""
        async with self._lock:
            if conn not in self._connections:
                return
            self._connections.discard(conn)
            for channel in conn.channels:
                members = self._by_channel.get(channel)
                if members is None:
                    continue
                members.discard(conn)
                if not members:
                    del self._by_channel[channel]
                    sub = self._subscriptions.pop(channel, None)
                    if sub is not None:
                        await sub.unsubscribe()
            self._gauge()

    async def close(self) -> None:
        """Drop every subscription (sockets are closed by the server shutting down)."""
        async with self._lock:
            for sub in self._subscriptions.values():
                await sub.unsubscribe()
            self._subscriptions.clear()
            self._by_channel.clear()
            self._connections.clear()
            self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.ws_connections.set(len(self._connections))
            self.metrics.ws_channels.set(len(self._subscriptions))

    async def _on_event(self, message: CoreMessage) -> None:
        try:
            event = event_decoder.decode(message.data)
            channel = channel_from_event_subject(message.subject)
        except Exception as e:  # a bad event must not end the subscription
            logger.warning("undecodable change event on %s: %s", message.subject, type(e).__name__)
            return
        self.poke(channel, event.seq)

    def poke(self, channel: str, seq: int) -> int:
        """Tell every socket granted ``channel`` that sequence ``seq`` is committed.

        Returns:
            How many sockets were poked.
        """
        members = self._by_channel.get(channel)
        if not members:
            return 0
        now = time.time()
        frame = f'{{"type":"changes","seq":{int(seq)}}}'
        poked = 0
        for conn in list(members):
            if seq <= conn.last_seq:
                continue
            if conn.expires_at and now >= conn.expires_at:
                if conn.on_expired is not None:
                    conn.on_expired()
                    conn.on_expired = None
                continue
            conn.last_seq = seq
            task = asyncio.create_task(self._send(conn, frame))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
            poked += 1
        if self.metrics is not None and poked:
            self.metrics.ws_pokes.inc(poked)
        return poked

    async def _send(self, conn: EventConnection, frame: str) -> None:
        try:
            await asyncio.wait_for(conn.send(frame), _SEND_TIMEOUT_S)
        except Exception as e:
            # A dead or stuck socket: its handler notices the disconnect and leaves.
            logger.debug("poke to a socket failed: %s", type(e).__name__)
