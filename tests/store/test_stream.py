"""The blocking face of proxystore.stream: processes, crashes, backpressure."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from proxystore.exceptions import NotAStoreProxyError, StoreTimeoutError
from proxystore.store import init_store
from proxystore.store.utils import get_key
from proxystore.stream import (
    QueueBroker,
    RedisStreamPublisher,
    RedisStreamSubscriber,
    StreamConsumer,
    StreamProducer,
)
from proxystore.stream_format import redis_keys
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(90)

_topics = itertools.count()
_WAIT = 30.0
KiB = 1 << 10


@pytest.fixture
def topic() -> str:
    return f"sync-topic-{os.getpid()}-{next(_topics)}"


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def _item(index: int) -> bytes:
    # Every third item is large enough to go through the store.
    size = 10 * KiB if index % 3 == 0 else 100
    return index.to_bytes(4, "little") * (size // 4)


def _produce(host: str, port: int, store_name: str, topic: str, count: int) -> None:
    store = init_store("redis", store_name, hostname=host, port=port)
    with StreamProducer(RedisStreamPublisher(host, port), store) as producer:
        for index in range(count):
            producer.send(topic, _item(index), metadata={"i": index})
        producer.close_topic(topic)
    store.close()


def _consume(
    host: str,
    port: int,
    store_name: str,
    topic: str,
    results: Any,
    claim_after: float = 30.0,
) -> None:
    store = init_store("redis", store_name, hostname=host, port=port)
    subscriber = RedisStreamSubscriber(
        host, port, topic, claim_after=claim_after, block=0.1
    )
    seen = []
    keys = []
    with StreamConsumer(subscriber, timeout=_WAIT) as consumer:
        for value, metadata in consumer:
            with contextlib.suppress(NotAStoreProxyError):  # inline
                keys.append(get_key(value))
            assert value == _item(metadata["i"])
            seen.append(metadata["i"])
    results.put((seen, keys))
    store.close()


def _take_one_and_hang(
    host: str, port: int, store_name: str, topic: str, taken: Any
) -> None:
    init_store("redis", store_name, hostname=host, port=port)
    subscriber = RedisStreamSubscriber(host, port, topic, block=0.1, claim_after=0.5)
    consumer = StreamConsumer(subscriber, resolve=True, timeout=_WAIT)
    _, metadata = consumer.receive() or (None, {})
    # Its heartbeat is beating when it dies (and stops with it).
    heartbeat = subscriber._heartbeat
    assert heartbeat is not None
    deadline = time.monotonic() + _WAIT
    while heartbeat.beats < 2 and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    taken.put(metadata["i"])
    threading.Event().wait(_WAIT)  # working on it... until SIGKILL


def test_consumers_in_processes_get_each_item_once(
    redis_server: RedisServer, store_name: str, topic: str, raw: redis.Redis
) -> None:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    address = (redis_server.host, redis_server.port, store_name, topic)
    consumers = [
        ctx.Process(target=_consume, args=(*address, results)) for _ in range(3)
    ]
    for process in consumers:
        process.start()
    producer = ctx.Process(target=_produce, args=(*address, 60))
    producer.start()
    reports = [results.get(timeout=_WAIT) for _ in consumers]
    for process in [producer, *consumers]:
        process.join(_WAIT)
        assert process.exitcode == 0
    seen = itertools.chain.from_iterable(items for items, _ in reports)
    assert sorted(seen) == list(range(60))
    stored_keys = list(itertools.chain.from_iterable(keys for _, keys in reports))
    assert len(stored_keys) == 20  # every third item went through the store
    # Everything acknowledged by the group was evicted and deleted.
    assert raw.xlen(redis_keys(topic)[0]) == 0
    assert not raw.exists(*stored_keys)


def test_sigkilled_consumer_item_is_redelivered(
    redis_server: RedisServer, store_name: str, topic: str, raw: redis.Redis
) -> None:
    ctx = multiprocessing.get_context("spawn")
    taken = ctx.Queue()
    address = (redis_server.host, redis_server.port, store_name, topic)
    _produce(*address, 12)
    victim = ctx.Process(target=_take_one_and_hang, args=(*address, taken))
    victim.start()
    lost = taken.get(timeout=_WAIT)
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(_WAIT)
    assert victim.exitcode == -signal.SIGKILL

    results = ctx.Queue()
    _consume(*address, results, claim_after=0.5)
    seen, _ = results.get(timeout=_WAIT)
    # Nothing lost: the survivor got every item, including the one the
    # victim took and never acknowledged (delivered twice: at least once).
    assert sorted(seen) == list(range(12))
    assert lost in seen
    assert raw.xlen(redis_keys(topic)[0]) == 0


@pytest.mark.parametrize("heartbeat", [True, False])
def test_live_consumer_holding_an_item_past_claim_after_keeps_it(
    redis_server: RedisServer,
    store_name: str,
    topic: str,
    raw: redis.Redis,
    heartbeat: bool,
) -> None:
    host, port = redis_server.host, redis_server.port
    with StreamProducer(RedisStreamPublisher(host, port)) as producer:
        producer.send(topic, b"slow", metadata={"i": 0})
    holder = StreamConsumer(
        RedisStreamSubscriber(
            host, port, topic, claim_after=0.6, block=0.1, heartbeat=heartbeat
        )
    )
    other = StreamConsumer(
        RedisStreamSubscriber(host, port, topic, claim_after=0.6, block=0.1),
        timeout=2.5,
    )
    try:
        assert holder.receive() is not None
        # The holder works on its item for 2.5 s (4x claim_after) while the
        # other consumer of the group looks for work.
        if heartbeat:
            with pytest.raises(StoreTimeoutError):
                other.receive()
            (pending,) = raw.xpending_range(
                redis_keys(topic)[0], "default", "-", "+", 10
            )
            assert pending["consumer"] == holder.subscriber.consumer.encode()
            assert pending["times_delivered"] == 1
        else:
            # Without a heartbeat the item looks crashed: processed twice.
            item = other.receive()
            assert item is not None
            assert item.metadata == {"i": 0}
    finally:
        holder.close()
        other.close()
    assert raw.xlen(redis_keys(topic)[0]) == 0


def test_sync_face_with_threads(store_name: str) -> None:
    store = init_store("local", store_name)
    broker = QueueBroker()
    consumer = StreamConsumer(broker.subscriber("t"), resolve=True, timeout=_WAIT)
    got: list[tuple[int, dict[str, Any]]] = []

    def consume() -> None:
        for value, metadata in consumer:
            got.append((len(value), metadata))

    thread = threading.Thread(target=consume)
    thread.start()
    with StreamProducer(broker, store) as producer:
        producer.send_batch("t", [bytes(10**i) for i in range(5)])
        producer.send("t", "last", metadata={"end": True})
        producer.flush()
        producer.close_topic("t")
    thread.join(_WAIT)
    assert not thread.is_alive()
    assert got == [(10**i, {}) for i in range(5)] + [(4, {"end": True})]


def test_backpressure_bounds_server_memory(
    redis_server: RedisServer, store_name: str, topic: str, raw: redis.Redis
) -> None:
    item = 512 * KiB
    count = 40
    limit = 4
    store = init_store(
        "redis", store_name, hostname=redis_server.host, port=redis_server.port
    )
    subscriber = RedisStreamSubscriber(
        redis_server.host, redis_server.port, topic, block=0.1
    )
    consumer = StreamConsumer(subscriber, resolve=True, timeout=_WAIT)
    received = []

    def consume() -> None:
        for value, _ in consumer:
            received.append(len(value))

    thread = threading.Thread(target=consume)
    thread.start()
    base = int(raw.info("memory")["used_memory"])
    peak = 0
    with StreamProducer(
        RedisStreamPublisher(redis_server.host, redis_server.port),
        store,
        max_unconsumed=limit,
    ) as producer:
        for _ in range(count):
            producer.send(topic, bytes(item))
            used = int(raw.info("memory")["used_memory"])
            peak = max(peak, used - base)
        producer.close_topic(topic)
    thread.join(_WAIT)
    assert received == [item] * count
    # Without backpressure the server would hold up to count * item (20 MiB).
    # Measured: about limit + 2 items (one being evicted, one being written,
    # and the server's client buffers).
    assert peak <= (limit + 4) * item, f"peak {peak / item:.1f} items"
