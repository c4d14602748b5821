"""Streams of proxies (blocking face): `StreamProducer` and `StreamConsumer`.

The same classes as `proxystore.aio.stream` with blocking methods (``send``,
``send_batch``, ``flush``, ``close_topic``; ``for item in consumer``),
generated into `proxystore.store.stream`; the brokers are in
`proxystore.store.stream_brokers` and `proxystore.store.stream_redis`.
See ``docs/guides/streams.md``.
"""

from __future__ import annotations

from proxystore.store.stream import StreamConsumer, StreamItem, StreamProducer
from proxystore.store.stream_brokers import QueueBroker
from proxystore.store.stream_redis import (
    RedisPubSubPublisher,
    RedisPubSubSubscriber,
    RedisStreamPublisher,
    RedisStreamSubscriber,
)

__all__ = [
    "QueueBroker",
    "RedisPubSubPublisher",
    "RedisPubSubSubscriber",
    "RedisStreamPublisher",
    "RedisStreamSubscriber",
    "StreamConsumer",
    "StreamItem",
    "StreamProducer",
]
