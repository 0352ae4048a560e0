"""Messaging: the :class:`Broker` port, its NATS JetStream adapter, subjects and streams.

See ``subjects.py`` for every subject and stream name, ``broker.py`` for the port and the
adapter, ``pull_consumer.py`` for the consumer delivery guarantees.
"""

from backend.messaging.broker import (
    Broker,
    ConsumerState,
    CoreSubscription,
    NatsBroker,
    StreamState,
)
from backend.messaging.config import NatsConfig
from backend.messaging.messages import (
    BatchHandler,
    ConsumeStats,
    CoreHandler,
    CoreMessage,
    Delivery,
    PublishAck,
)

__all__ = [
    "BatchHandler",
    "Broker",
    "ConsumeStats",
    "ConsumerState",
    "CoreHandler",
    "CoreMessage",
    "CoreSubscription",
    "Delivery",
    "NatsBroker",
    "NatsConfig",
    "PublishAck",
    "StreamState",
]
