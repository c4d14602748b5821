"""The async face of proxystore.stream against a real redis-server."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from proxystore import aio, signing
from proxystore.aio.redis import RedisStore
from proxystore.aio.stream import StreamConsumer, StreamProducer
from proxystore.aio.stream_brokers import QueueBroker
from proxystore.aio.stream_redis import (
    RedisPubSubPublisher,
    RedisPubSubSubscriber,
    RedisStreamPublisher,
    RedisStreamSubscriber,
)
from proxystore.exceptions import (
    ConfigurationError,
    MalformedEventError,
    SerializationError,
    StoreTimeoutError,
    StreamFullError,
)
from proxystore.lifetimes import ContextLifetime
from proxystore.proxy import Proxy, is_resolved
from proxystore.serialize import serialize
from proxystore.signing import SigningKeys
from proxystore.store.utils import get_key
from proxystore.stream_format import redis_keys
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

_topics = itertools.count()
KEYS = SigningKeys([("k1", b"k" * 32)])


@pytest.fixture(autouse=True)
def forget_stream_keys() -> Iterator[None]:
    """Keys given to one producer or consumer are the process's stream keys."""
    yield
    signing._given.pop("proxystore.stream", None)


@pytest.fixture
def topic() -> str:
    return f"topic-{next(_topics)}"


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
async def store(
    redis_server: RedisServer, store_name: str
) -> AsyncIterator[RedisStore]:
    store = RedisStore(store_name, redis_server.host, redis_server.port, metrics=True)
    aio.register_store(store)
    yield store
    await store.aclose()


def publisher(server: RedisServer, **kwargs: Any) -> RedisStreamPublisher:
    return RedisStreamPublisher(server.host, server.port, **kwargs)


def subscriber(server: RedisServer, topic: str, **kwargs: Any) -> RedisStreamSubscriber:
    kwargs.setdefault("block", 0.1)
    return RedisStreamSubscriber(server.host, server.port, topic, **kwargs)


async def collect(consumer: StreamConsumer) -> list[tuple[Any, dict[str, Any]]]:
    items = []
    async with consumer:
        async for value, metadata in consumer:
            items.append((value, metadata))
    return items


async def test_queue_broker_round_trip(store: RedisStore, topic: str) -> None:
    broker = QueueBroker()
    async with StreamProducer(broker, store) as producer:
        await producer.asend(topic, b"small", metadata={"i": 0})
        await producer.asend(topic, bytes(100_000), metadata={"i": 1})
        await producer.aclose_topic(topic)
    sizes = []
    async for value, metadata in StreamConsumer(broker.subscriber(topic)):
        assert isinstance(value, Proxy)
        # Used before the next item is asked for: then this one is done
        # (and its object evicted).
        sizes.append((len(value), metadata))
    assert sizes == [(5, {"i": 0}), (100_000, {"i": 1})]


async def test_redis_streams_round_trip_evicts_when_done(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    producer = StreamProducer(publisher(redis_server), store)
    await producer.asend_batch(topic, [bytes(10_000 + i) for i in range(5)])
    await producer.aclose_topic(topic)
    await producer.aclose()
    entries: Any = raw.xrange(redis_keys(topic)[0])
    stored_keys = [fields[b"k"] for _, fields in entries if b"k" in fields]
    assert len(stored_keys) == 5
    consumer = StreamConsumer(subscriber(redis_server, topic), resolve=True)
    items = await collect(consumer)
    assert [len(value) for value, _ in items] == [10_000 + i for i in range(5)]
    # Every object was evicted once acknowledged, every entry deleted.
    assert raw.xlen(redis_keys(topic)[0]) == 0
    assert not raw.exists(*stored_keys)


async def test_fan_out_evicts_only_after_every_group(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    producer = StreamProducer(publisher(redis_server, groups=("a", "b")), store)
    await producer.asend(topic, bytes(50_000))
    await producer.aclose_topic(topic)
    await producer.aclose()
    first = StreamConsumer(subscriber(redis_server, topic, group="a"), resolve=True)
    assert [len(v) for v, _ in await collect(first)] == [50_000]
    # Group a is done; group b still needs the object.
    second = StreamConsumer(subscriber(redis_server, topic, group="b"), resolve=True)
    assert [len(v) for v, _ in await collect(second)] == [50_000]


async def test_a_forged_group_count_does_not_evict_early(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    producer = StreamProducer(publisher(redis_server, groups=("a", "b")), store)
    await producer.asend(topic, bytes(50_000))
    await producer.aflush()
    # A writer of the stream claims the item needs only one group.
    entries: Any = raw.xrange(redis_keys(topic)[0])
    ((entry, fields),) = entries
    assert fields[b"g"] == b"2"
    raw.xdel(redis_keys(topic)[0], entry)
    raw.xadd(redis_keys(topic)[0], {**fields, b"g": b"1"})
    await producer.aclose_topic(topic)
    await producer.aclose()
    key = fields[b"k"].decode()
    first = StreamConsumer(subscriber(redis_server, topic, group="a"), resolve=True)
    assert [len(v) for v, _ in await collect(first)] == [50_000]
    # The stream has two groups: group b's object is still there.
    assert raw.exists(key)
    second = StreamConsumer(subscriber(redis_server, topic, group="b"), resolve=True)
    assert [len(v) for v, _ in await collect(second)] == [50_000]
    assert not raw.exists(key)


async def test_consumers_of_one_group_split_items(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    producer = StreamProducer(publisher(redis_server), store)
    await producer.asend_batch(
        topic, list(range(40)), metadata=[{"i": i} for i in range(40)]
    )
    await producer.aclose_topic(topic)
    await producer.aclose()

    async def consume() -> list[int]:
        consumer = StreamConsumer(subscriber(redis_server, topic))
        return [metadata["i"] for _, metadata in await collect(consumer)]

    results = await asyncio.gather(*(consume() for _ in range(3)))
    got = sorted(itertools.chain.from_iterable(results))
    assert got == list(range(40))


async def test_filter_skips_without_fetching(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    producer = StreamProducer(publisher(redis_server), store, inline_threshold=0)
    for i in range(10):
        await producer.asend(topic, bytes(1000), metadata={"keep": i % 3 == 0})
    await producer.aclose_topic(topic)
    await producer.aclose()
    assert store.metrics is not None
    store.metrics.reset()
    consumer = StreamConsumer(
        subscriber(redis_server, topic),
        filter=lambda metadata: metadata["keep"],
        resolve=True,
    )
    items = await collect(consumer)
    assert len(items) == 4
    assert consumer.skipped == 6
    # Only the kept items were fetched.
    assert store.metrics["get"].count == 4


async def test_prefetch_fetches_next_items(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    producer = StreamProducer(publisher(redis_server), store, evict=False)
    await producer.asend_batch(topic, [bytes(20_000) for _ in range(6)])
    await producer.aclose_topic(topic)
    await producer.aclose()
    consumer = StreamConsumer(subscriber(redis_server, topic), prefetch=2)
    seen = 0
    async with consumer:
        async for value, _ in consumer:
            if seen:
                await asyncio.wait_for(aio.resolve(value), 10)
            seen += 1
    assert seen == 6


async def test_small_objects_travel_inline(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    producer = StreamProducer(publisher(redis_server), store, evict=False)
    await producer.asend(topic, {"small": [1, 2, 3]})
    await producer.asend(topic, bytes(10_000))
    await producer.aflush()
    entries: Any = raw.xrange(redis_keys(topic)[0])
    assert b"d" in entries[0][1]
    assert b"s" not in entries[0][1]
    assert entries[1][1][b"s"] == store.name.encode()
    await producer.aclose_topic(topic)
    await producer.aclose()
    items = await collect(StreamConsumer(subscriber(redis_server, topic)))
    assert items[0][0] == {"small": [1, 2, 3]}
    assert is_resolved(items[0][0])


class CountsPickles:
    """An object of unknown size that counts how often it is pickled."""

    pickled = 0

    def __init__(self, size: int) -> None:
        self.data = bytes(size)

    def __reduce__(self) -> tuple[Any, ...]:
        CountsPickles.pickled += 1
        return (CountsPickles, (len(self.data),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CountsPickles) and other.data == self.data


async def test_objects_of_unknown_size_are_pickled_once(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    big = [list(range(5000)), CountsPickles(10)]  # over the inline threshold
    producer = StreamProducer(publisher(redis_server), store, evict=False)
    CountsPickles.pickled = 0
    await producer.asend(topic, big)
    assert CountsPickles.pickled == 1
    await producer.asend_batch(topic, [big, big])
    assert CountsPickles.pickled == 3
    # Small: sized by the store's serialization, then framed for the event.
    await producer.asend(topic, CountsPickles(10))
    assert CountsPickles.pickled == 5
    await producer.aclose_topic(topic)
    await producer.aclose()
    entries: Any = raw.xrange(redis_keys(topic)[0])
    assert [b"k" in fields for _, fields in entries[:4]] == [True] * 3 + [False]
    # Stored exactly as aset stores the object: a proxy resolves it as ever.
    key = await store.aset(big)
    stored = entries[0][1][b"k"].decode()
    expected = await store.aget(key, deserialize=False)
    assert await store.aget(store._validate_key(stored), deserialize=False) == expected
    items = await collect(StreamConsumer(subscriber(redis_server, topic)))
    assert [value for value, _ in items] == [big, big, big, CountsPickles(10)]


async def test_tampered_inline_frame_is_refused(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    stream = redis_keys(topic)[0]
    raw.xgroup_create(stream, "default", id="0", mkstream=True)
    frame = bytearray(serialize([1, 2, 3]))
    frame[-2] ^= 0xFF
    entry = raw.xadd(stream, {"v": "1", "t": "i", "d": bytes(frame)})
    raw.xadd(stream, {"v": "1", "t": "e"})
    consumer = StreamConsumer(subscriber(redis_server, topic))
    with pytest.raises(SerializationError, match="checksum") as info:
        await consumer.areceive()
    assert topic in str(info.value)
    assert entry.decode() in str(info.value)
    # Dropped (acknowledged): the consumer goes on to the end.
    assert await consumer.areceive() is None
    await consumer.aclose()


async def test_unsigned_inline_pickle_is_refused_with_keys(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    stream = redis_keys(topic)[0]
    raw.xgroup_create(stream, "default", id="0", mkstream=True)
    # What someone who can write to the stream but has no key could inject.
    raw.xadd(stream, {"v": "1", "t": "i", "d": serialize(Exploit())})
    consumer = StreamConsumer(subscriber(redis_server, topic), signing_keys=KEYS)
    with pytest.raises(MalformedEventError, match="unsigned event"):
        await consumer.areceive()
    assert UNPICKLED == []
    await consumer.aclose()


async def test_forged_events_cannot_evict_fetch_or_end_with_keys(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    victim = await store.aset(b"someone else's object")
    producer = StreamProducer(
        publisher(redis_server), store, signing_keys=KEYS, inline_threshold=0
    )
    await producer.asend(topic, b"genuine", metadata={"n": 1})
    await producer.aflush()
    stream = redis_keys(topic)[0]
    # Someone who can write to the stream, without the key: an event naming
    # the victim for eviction, one ending the topic, and a signed event
    # with its key changed.
    raw.xadd(
        stream, {"v": "1", "t": "o", "s": store.name, "k": victim, "g": "1", "x": "1"}
    )
    raw.xadd(stream, {"v": "1", "t": "e", "g": "1"})
    genuine: Any = raw.xrange(stream)[0][1]  # type: ignore[index]
    raw.xadd(stream, {**genuine, b"k": victim.encode()})
    await producer.aclose_topic(topic)
    await producer.aclose()
    consumer = StreamConsumer(
        subscriber(redis_server, topic), signing_keys=KEYS, resolve=True, timeout=10
    )
    received = []
    refused = []
    while True:
        try:
            item = await consumer.areceive()
        except MalformedEventError as err:
            refused.append(str(err))
            continue
        if item is None:
            break
        received.append(item)
    await consumer.aclose()
    assert received == [(b"genuine", {"n": 1})]
    assert len(refused) == 3
    assert all("unsigned event" in r or "does not verify" in r for r in refused)
    assert await store.aget(victim) == b"someone else's object"


UNPICKLED: list[str] = []


def _run_on_unpickle() -> str:
    UNPICKLED.append("ran")
    return "ran"


class Exploit:
    def __reduce__(self) -> Any:
        return (_run_on_unpickle, ())


async def test_signed_inline_frames_round_trip(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    producer = StreamProducer(publisher(redis_server), store, signing_keys=KEYS)
    await producer.asend(topic, [1, 2, 3])
    await producer.aclose_topic(topic)
    await producer.aclose()
    consumer = StreamConsumer(
        subscriber(redis_server, topic), signing_keys=KEYS, resolve=True
    )
    assert await collect(consumer) == [([1, 2, 3], {})]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"v": "2", "t": "i", "d": "x"}, "version"),
        ({"v": "1", "t": "z"}, "kind"),
        ({"v": "1", "t": "o", "s": "x"}, "missing key"),
        ({"v": "1", "t": "o", "s": "no such store", "k": "a"}, "store name"),
        ({"v": "1", "t": "o", "s": "nosuchstore", "k": "a"}, "unknown to this"),
        ({"v": "1", "t": "i", "d": "x", "m": "[1]"}, "not an object"),
        ({"v": "1", "t": "i", "d": "x", "evil": "1"}, "unknown fields"),
        ({"v": "1", "t": "i", "d": "x", "g": "99999"}, "fan-out"),
    ],
)
async def test_malformed_events_name_stream_and_entry(
    store: RedisStore,
    topic: str,
    redis_server: RedisServer,
    raw: redis.Redis,
    fields: dict[str, str],
    problem: str,
) -> None:
    stream = redis_keys(topic)[0]
    raw.xgroup_create(stream, "default", id="0", mkstream=True)
    entry = raw.xadd(stream, fields).decode()
    raw.xadd(stream, {"v": "1", "t": "e"})
    consumer = StreamConsumer(subscriber(redis_server, topic))
    with pytest.raises(MalformedEventError, match=problem) as info:
        await consumer.areceive()
    assert info.value.stream == topic
    assert info.value.entry == entry
    assert await consumer.areceive() is None
    await consumer.aclose()


async def test_inline_frame_over_the_cap_is_refused(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    producer = StreamProducer(publisher(redis_server), store, inline_threshold=100_000)
    await producer.asend(topic, bytes(50_000))
    await producer.aclose_topic(topic)
    await producer.aclose()
    consumer = StreamConsumer(subscriber(redis_server, topic), max_inline=1000)
    with pytest.raises(MalformedEventError, match="at most 1000"):
        await consumer.areceive()
    await consumer.aclose()


async def test_backpressure_fails_by_option(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    producer = StreamProducer(
        publisher(redis_server), store, max_unconsumed=3, on_full="error"
    )
    for i in range(3):
        await producer.asend(topic, i)
    with pytest.raises(StreamFullError, match="3 unfinished"):
        await producer.asend(topic, 3)
    consumer = StreamConsumer(subscriber(redis_server, topic))
    await consumer.areceive()
    await consumer.areceive()  # the first is acknowledged: room for one
    await producer.asend(topic, 3)
    await consumer.aclose()
    await producer.aclose()


async def test_backpressure_waits_for_consumers(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    producer = StreamProducer(publisher(redis_server), store, max_unconsumed=4)
    stream = redis_keys(topic)[0]
    longest = 0

    async def produce() -> None:
        nonlocal longest
        for i in range(30):
            await producer.asend(topic, bytes(8000), metadata={"i": i})
            longest = max(longest, raw.xlen(stream))
        await producer.aclose_topic(topic)

    consumer = StreamConsumer(subscriber(redis_server, topic))
    _, items = await asyncio.gather(produce(), collect(consumer))
    await producer.aclose()
    assert [metadata["i"] for _, metadata in items] == list(range(30))
    assert longest <= 4


async def test_backpressure_needs_a_counting_broker(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    pub = RedisPubSubPublisher(redis_server.host, redis_server.port)
    producer = StreamProducer(pub, store, max_unconsumed=2)
    with pytest.raises(ConfigurationError, match="counts unfinished"):
        await producer.asend(topic, 1)
    await producer.aclose()


async def test_pubsub_fire_and_forget(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    sub = RedisPubSubSubscriber(redis_server.host, redis_server.port, topic)
    await sub.asubscribe()
    producer = StreamProducer(
        RedisPubSubPublisher(redis_server.host, redis_server.port), store
    )
    await producer.asend(topic, "inline", metadata={"i": 0})
    await producer.asend(topic, bytes(10_000), metadata={"i": 1})
    await producer.aclose_topic(topic)
    await producer.aclose()
    items = await collect(StreamConsumer(sub, resolve=True))
    assert [(len(v), m) for v, m in items] == [(6, {"i": 0}), (10_000, {"i": 1})]


async def test_bad_arguments(store: RedisStore, redis_server: RedisServer) -> None:
    broker = QueueBroker()
    producer = StreamProducer(broker, store)
    with pytest.raises(ConfigurationError, match="topic"):
        await producer.asend("bad topic", 1)
    with pytest.raises(ConfigurationError, match="JSON"):
        await producer.asend("t", 1, metadata={"x": object()})
    with pytest.raises(ConfigurationError, match="no store"):
        await StreamProducer(broker).asend("t", bytes(10_000))
    with pytest.raises(ConfigurationError, match="groups"):
        RedisStreamPublisher(redis_server.host, redis_server.port, groups="a")
    with pytest.raises(ConfigurationError, match="on_full"):
        StreamProducer(broker, store, on_full="drop")  # type: ignore[arg-type]


async def test_lifetime_evicts_what_consumers_left(
    store: RedisStore, topic: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    lifetime = ContextLifetime()
    producer = StreamProducer(
        publisher(redis_server), store, evict=False, lifetime=lifetime
    )
    await producer.asend_batch(topic, [bytes(10_000), bytes(20_000)])
    await producer.aclose_topic(topic)
    await producer.aclose()
    items = await collect(StreamConsumer(subscriber(redis_server, topic)))
    keys = [get_key(value) for value, _ in items]
    # Not evicted on acknowledgement (evict=False): the lifetime owns them.
    assert all([await store.aexists(key) for key in keys])
    await lifetime.aclose()
    assert not any([await store.aexists(key) for key in keys])


async def test_a_new_producer_reopens_an_ended_topic(
    store: RedisStore, topic: str, redis_server: RedisServer
) -> None:
    for run in range(2):
        producer = StreamProducer(publisher(redis_server), store)
        await producer.asend(topic, run)
        await producer.aclose_topic(topic)
        await producer.aclose()
        consumer = StreamConsumer(subscriber(redis_server, topic), resolve=True)
        assert await collect(consumer) == [(run, {})]


async def test_heartbeat_beats_while_the_consumer_holds_the_loop(
    redis_server: RedisServer, topic: str, raw: redis.Redis
) -> None:
    async with StreamProducer(publisher(redis_server)) as producer:
        await producer.asend(topic, b"slow")
    holder = StreamConsumer(subscriber(redis_server, topic, claim_after=0.6))
    other = StreamConsumer(
        subscriber(redis_server, topic, claim_after=0.6), timeout=0.5
    )
    try:
        assert await holder.areceive() is not None
        # CPU-bound work on the item holds the event loop for 2 s (over 3x
        # claim_after): the heartbeat is a thread, it beats regardless.
        threading.Event().wait(2.0)
        (pending,) = raw.xpending_range(redis_keys(topic)[0], "default", "-", "+", 1)
        idle = pending["time_since_delivered"]
        assert isinstance(idle, int)
        assert idle < 600
        with pytest.raises(StoreTimeoutError):
            await other.areceive()
        (pending,) = raw.xpending_range(redis_keys(topic)[0], "default", "-", "+", 1)
        assert pending["consumer"] == holder.subscriber.consumer.encode()
        assert pending["times_delivered"] == 1
    finally:
        await holder.aclose()
        await other.aclose()
    assert raw.xlen(redis_keys(topic)[0]) == 0


def _heartbeat_threads(consumer: str) -> list[threading.Thread]:
    name = f"proxystore-stream-heartbeat-{consumer}"
    return [thread for thread in threading.enumerate() if thread.name == name]


async def test_heartbeat_thread_is_owned(redis_server: RedisServer, topic: str) -> None:
    async with StreamProducer(publisher(redis_server)) as producer:
        await producer.asend_batch(topic, [b"a", b"b"])
    closed = subscriber(redis_server, topic, claim_after=0.6)
    events, _ = await closed.areceive(1, 5.0)
    assert len(events) == 1
    (thread,) = _heartbeat_threads(closed.consumer)
    await closed.aclose()
    assert not thread.is_alive()  # close stops and joins it
    # A subscriber dropped without close stops it too.
    dropped = subscriber(redis_server, topic, claim_after=0.6)
    events, _ = await dropped.areceive(1, 5.0)
    assert len(events) == 1
    (thread,) = _heartbeat_threads(dropped.consumer)
    await dropped._redis.aclose()
    del dropped
    gc.collect()
    thread.join(5.0)
    assert not thread.is_alive()
