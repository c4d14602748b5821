"""Streams of proxies: a producer publishes objects to topics, consumers iterate.

Small objects travel inline in the event, as a checksummed (and, with signing
keys, signed) payload frame; larger ones go to the store chosen for their
topic, and the event carries the store's name and the key. Consumers receive
proxies (or the objects) with the item's metadata; a filter on metadata skips
items without fetching them. Events travel through a broker: Redis Streams
for delivery that survives a crashed consumer, or Redis pub/sub
(`proxystore.aio.stream_redis`), or an in-process queue
(`proxystore.aio.stream_brokers`).

Example:
    ```python
    broker = QueueBroker()
    async with StreamProducer(broker, stores=store) as producer:
        await producer.asend("frames", frame, metadata={"step": 1})
        await producer.aclose_topic("frames")
    async for proxy, metadata in StreamConsumer(broker.subscriber("frames")):
        ...
    ```
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, NamedTuple

from typing_extensions import Self

from proxystore._compat import AFACE, asleep
from proxystore._validate import check_seconds
from proxystore.aio.base import Store
from proxystore.aio.stream_brokers import Publisher, Subscriber
from proxystore.exceptions import (
    ConfigurationError,
    MalformedEventError,
    SerializationError,
    StoreClosedError,
    StoreTimeoutError,
    StreamFullError,
)
from proxystore.factory import SimpleFactory
from proxystore.lifetimes import Lifetime, check_lifetime
from proxystore.proxy import Proxy, get_factory
from proxystore.registry import find
from proxystore.serialize import Payload, deserialize, serialize
from proxystore.signing import SigningKeys, SigningKeysOption, resolve_signing_keys
from proxystore.store.utils import prefetch as start_prefetch
from proxystore.stream_format import (
    DEFAULT_MAX_INLINE,
    KIND_END,
    KIND_INLINE,
    Event,
    Fields,
    Parsed,
    check_name,
    check_topic,
    encode_metadata,
    end_event,
    inline_event,
    parse,
    sign_event,
    stored_event,
)

_IS_SYNC = False

DEFAULT_INLINE_THRESHOLD = 4096
"""Objects whose payload is at most this many bytes travel inline."""

_SIGNING_NAME = "proxystore.stream"
# An inline frame may exceed the threshold by its header, checksum and MAC.
_FRAME_SLACK = 128
# What a malformed event is acknowledged as (by one group; never evicts).
_DROPPED = Parsed(KIND_END, None, None, None, {}, 1, False)
# Backpressure polls the broker with this backoff (seconds).
_FIRST_POLL = 0.001
_LAST_POLL = 0.05


class StreamItem(NamedTuple):
    """One item of a stream: ``for value, metadata in consumer``.

    Attributes:
        value: A proxy of the object (or the object, with ``resolve=True``).
        metadata: The metadata it was sent with (an empty dict if none).
    """

    value: Any
    metadata: dict[str, Any]


class StreamProducer:
    """Publishes objects to topics: small ones inline, large ones via a store.

    Args:
        publisher: The broker's publisher (`QueueBroker`,
            `RedisStreamPublisher`, `RedisPubSubPublisher`).
        stores: The store for large objects: one for every topic, or a
            mapping from topic to store (the store under None serves the
            topics not listed). Consumers must have stores of the same names
            registered (they read only from those).
        inline_threshold: Objects whose framed payload is at most this many
            bytes travel inside the event (0: never).
        evict: Evict an object from its store once every consumer group has
            acknowledged its item (brokers with acknowledgements: Redis
            Streams, the in-process queue). With fan-out, the last group to
            finish evicts, never the first.
        lifetime: Store objects in this lifetime (`proxystore.lifetimes`):
            they are evicted when it ends, acknowledged or not.
        max_unconsumed: Backpressure: before sending, wait while the topic
            holds this many items some group has not finished (None: never
            wait). Needs a broker that counts them (not pub/sub).
        on_full: ``"wait"`` (up to `full_timeout` seconds) or ``"error"``:
            raise `StreamFullError` at once.
        full_timeout: Seconds to wait for room before `StreamFullError`.
        batch_size: Publish events in batches of this many per topic
            (`aflush` publishes a partial batch).
        signing_keys: Keys that sign inline frames (the same option as a
            store's; default ``PROXYSTORE_SIGNING_KEYS``).
    """

    def __init__(
        self,
        publisher: Publisher,
        stores: Store[Any] | Mapping[str | None, Store[Any]] | None = None,
        *,
        inline_threshold: int = DEFAULT_INLINE_THRESHOLD,
        evict: bool = True,
        lifetime: Lifetime | None = None,
        max_unconsumed: int | None = None,
        on_full: Literal["wait", "error"] = "wait",
        full_timeout: float = 300.0,
        batch_size: int = 1,
        signing_keys: SigningKeysOption = None,
    ) -> None:
        self.publisher = publisher
        if stores is None:
            self._stores: dict[str | None, Store[Any]] = {}
        elif isinstance(stores, Mapping):
            self._stores = dict(stores)
        else:
            self._stores = {None: stores}
        for topic, store in self._stores.items():
            if topic is not None:
                check_topic(topic)
            check_name(store.name, "store name")
        self.inline_threshold = _check_count(inline_threshold, "inline_threshold", 0)
        if not isinstance(evict, bool):
            raise ConfigurationError(f"evict must be True or False, got {evict!r}")
        self.evict = evict
        check_lifetime(lifetime, False, "stream producer")
        self.lifetime = lifetime
        if max_unconsumed is not None:
            _check_count(max_unconsumed, "max_unconsumed", 1)
        self.max_unconsumed = max_unconsumed
        if on_full not in ("wait", "error"):
            raise ConfigurationError(f"on_full is 'wait' or 'error', got {on_full!r}")
        self.on_full = on_full
        self.full_timeout = check_seconds(full_timeout, "full_timeout", "producer")
        self.batch_size = _check_count(batch_size, "batch_size", 1)
        self._keys: SigningKeys | None = resolve_signing_keys(
            signing_keys, _SIGNING_NAME
        )
        self._buffers: dict[str, list[Fields]] = {}
        self._room: dict[str, int] = {}
        self._closed = False

    def _store_for(self, topic: str) -> Store[Any]:
        store = self._stores.get(topic) or self._stores.get(None)
        if store is None:
            raise ConfigurationError(
                f"no store for topic {topic!r}: an object over the inline "
                f"threshold ({self.inline_threshold} bytes) needs one"
            )
        return store

    def _route(self, topic: str, obj: Any) -> tuple[bytes | None, Payload | None]:
        """Serialize the object once: its inline frame, or its store payload.

        Returns ``(frame, None)`` when it travels inline, else ``(None,
        payload)`` with the payload its store will hold (None: not made yet).
        An object whose size is not known up front is serialized by the
        topic's store's rules (`Store._dump`, as `aset` would), and that
        payload is the one stored: pickled once. Only one found small
        enough to go inline is serialized again, as the inline frame.
        """
        if not self.inline_threshold:
            return None, None
        size = _known_size(obj)
        if size is not None and size > self.inline_threshold:
            return None, None
        payload: Payload | None = None
        if size is None:
            store = self._stores.get(topic) or self._stores.get(None)
            if store is not None:
                payload = store._dump(obj, None)
                if _nbytes(payload) > self.inline_threshold + _FRAME_SLACK:
                    return None, payload
        frame = serialize(obj, keys=self._keys)
        if len(frame) <= self.inline_threshold + _FRAME_SLACK:
            return frame, None
        return None, payload

    async def asend(
        self, topic: str, obj: Any, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Send an object to a topic.

        Args:
            topic: The topic (1-200 of ``[A-Za-z0-9._-]``).
            obj: The object.
            metadata: JSON-serializable metadata that consumers see (and
                filter on) before anything is fetched.

        Raises:
            ConfigurationError: If the topic or metadata is invalid, or a
                large object has no store.
            StreamFullError: If the topic stays full (see `max_unconsumed`).
        """
        await self.asend_batch(topic, [obj], metadata=[metadata])

    async def asend_batch(
        self,
        topic: str,
        objs: Sequence[Any],
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Send several objects to a topic, in order (large ones in one store batch).

        Args:
            topic: The topic.
            objs: The objects.
            metadata: Metadata per object (None: none).

        Raises:
            ConfigurationError: As `asend`, or if `metadata` and `objs`
                differ in length.
        """
        self._check_open()
        check_topic(topic)
        if metadata is None:
            metadata = [None] * len(objs)
        if len(metadata) != len(objs):
            raise ConfigurationError(
                f"send_batch got {len(objs)} objects and {len(metadata)} metadata"
            )
        encoded = [encode_metadata(item, topic) for item in metadata]
        await self._wait_for_room(topic, len(objs))
        fan_out = self.publisher.fan_out
        routes = [self._route(topic, obj) for obj in objs]
        large = [
            (obj, payload)
            for obj, (frame, payload) in zip(objs, routes, strict=True)
            if frame is None
        ]
        keys: list[Any] = []
        store = None
        if large:
            store = self._store_for(topic)
            payloads = [
                store._dump(obj, None) if payload is None else payload
                for obj, payload in large
            ]
            keys = await _astore_payloads(store, payloads, self.lifetime)
        frames = [frame for frame, _ in routes]
        stored = iter(keys)
        events = []
        for frame, meta in zip(frames, encoded, strict=True):
            if frame is not None:
                events.append(inline_event(frame, meta, fan_out))
            else:
                assert store is not None
                key = check_name(str(next(stored)), "key")
                events.append(stored_event(store.name, key, meta, fan_out, self.evict))
        buffer = self._buffers.setdefault(topic, [])
        buffer += events
        if len(buffer) >= self.batch_size:
            await self._apublish_buffer(topic)

    async def _apublish_buffer(self, topic: str) -> None:
        events = self._buffers.pop(topic, [])
        if events:
            await self.publisher.apublish(topic, self._signed(topic, events))

    def _signed(self, topic: str, events: list[Fields]) -> list[Fields]:
        """The events with their MACs when this producer has signing keys."""
        keys = self._keys
        if keys is None:
            return events
        return [sign_event(topic, fields, keys) for fields in events]

    async def _wait_for_room(self, topic: str, count: int) -> None:
        limit = self.max_unconsumed
        if limit is None:
            return
        room = self._room.get(topic, 0)
        if room >= count:
            self._room[topic] = room - count
            return
        deadline = time.monotonic() + self.full_timeout
        delay = _FIRST_POLL
        while True:
            pending = await self.publisher.apending(topic)
            if pending is None:
                raise ConfigurationError(
                    f"max_unconsumed needs a broker that counts unfinished items; "
                    f"{type(self.publisher).__name__} does not"
                )
            pending += len(self._buffers.get(topic, ()))
            # A batch larger than the limit goes into an empty topic.
            if pending + count <= limit or (pending == 0 and count > limit):
                self._room[topic] = limit - pending - count
                return
            if self.on_full == "error" or time.monotonic() >= deadline:
                raise StreamFullError(
                    f"topic {topic!r} holds {pending} unfinished items "
                    f"(max_unconsumed={limit})"
                    + ("" if self.on_full == "error" else f" for {self.full_timeout}s")
                )
            await asleep(delay)
            delay = min(delay * 2, _LAST_POLL)

    async def aflush(self) -> None:
        """Publish every buffered event now."""
        for topic in list(self._buffers):
            await self._apublish_buffer(topic)

    async def aclose_topic(self, topic: str) -> None:
        """End a topic: publish what is buffered, then the end event.

        Consumers finish the items sent before it, then stop iterating.
        """
        self._check_open()
        check_topic(topic)
        await self._apublish_buffer(topic)
        await self.publisher.apublish(
            topic, self._signed(topic, [end_event(self.publisher.fan_out)])
        )

    async def aclose(self, *, close_publisher: bool = True) -> None:
        """Publish what is buffered and close the publisher (topics stay open)."""
        if self._closed:
            return
        await self.aflush()
        self._closed = True
        if close_publisher:
            await self.publisher.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("stream producer")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class StreamConsumer:
    """Iterates over the items of a subscriber's topics until they all end.

    An item is done when the next one is asked for (or at `aclose`); it is
    acknowledged with the next read from the broker (so, with `prefetch`,
    up to that many items later). A consumer that crashes while working on
    an item never acknowledged it: it is redelivered (Redis Streams: to
    another consumer of the group, after its `claim_after`; a live one
    keeps its items however long it works on them: the subscriber's
    heartbeat). Delivery is at least once. With eviction, an object is
    deleted once every group is done with its item: use (or resolve) a
    proxy before asking for the next.

    Args:
        subscriber: The broker's subscriber.
        stores: Stores to read objects from, by name (default: the stores
            registered in this process under the names events carry). An
            event naming any other store is refused.
        resolve: Yield the objects instead of proxies.
        filter: Called with each item's metadata; items for which it
            returns False are acknowledged and skipped without fetching
            their objects (counted in `skipped`).
        prefetch: Fetch the objects of up to this many next items in the
            background while the current one is used (through
            `proxystore.store.utils.prefetch`, within its per-store limit).
        evict: Evict objects whose producer asked for it, once every
            consumer group acknowledged them (False: never evict).
        timeout: Seconds to wait for the next item before raising
            `StoreTimeoutError` (None: wait until the topics end).
        signing_keys: Keys that verify inline frames (default
            ``PROXYSTORE_SIGNING_KEYS``; with keys, unsigned frames are
            refused).
        max_inline: Largest inline frame accepted, in bytes.
    """

    def __init__(
        self,
        subscriber: Subscriber,
        *,
        stores: Iterable[Store[Any]] | None = None,
        resolve: bool = False,
        filter: Callable[[dict[str, Any]], bool] | None = None,
        prefetch: int = 0,
        evict: bool = True,
        timeout: float | None = None,
        signing_keys: SigningKeysOption = None,
        max_inline: int = DEFAULT_MAX_INLINE,
    ) -> None:
        self.subscriber = subscriber
        self._stores = None if stores is None else {s.name: s for s in stores}
        self.resolve = resolve
        self.filter = filter
        self.prefetch = _check_count(prefetch, "prefetch", 0)
        self.evict = evict
        self.timeout = (
            None if timeout is None else check_seconds(timeout, "timeout", "consumer")
        )
        self.max_inline = _check_count(max_inline, "max_inline", 0)
        self._keys: SigningKeys | None = resolve_signing_keys(
            signing_keys, _SIGNING_NAME
        )
        subscriber.event_keys = self._keys
        self._ready: collections.deque[tuple[Event, Parsed]] = collections.deque()
        self._prefetched: dict[str, Proxy[Any]] = {}
        self._current: tuple[Event, Parsed] | None = None
        # Items this consumer is done with, acknowledged with the next read.
        self._done: list[tuple[Event, Parsed]] = []
        self._ended: set[str] = set()
        self._closed = False
        self.received = 0
        """Items yielded so far."""
        self.skipped = 0
        """Items the filter skipped (their objects never fetched)."""

    def _store(self, event: Event, name: str) -> Store[Any]:
        store = self._stores_get(name)
        if store is None:
            raise MalformedEventError(
                event.topic, event.id, f"names store {name!r}, unknown to this consumer"
            )
        return store

    async def areceive(self) -> StreamItem | None:
        """Return the next item, or None once every topic has ended.

        Acknowledges the previous item first.

        Raises:
            MalformedEventError: If an event is malformed or names an unknown
                store (the event is acknowledged and dropped: asking again
                goes on with the next).
            SerializationError: If an inline frame fails its checksum or
                signature (likewise dropped).
            StoreTimeoutError: If no item came within `timeout`.
        """
        if self._closed:
            raise StoreClosedError("stream consumer")
        current, self._current = self._current, None
        if current is not None:
            self._done.append(current)
        while True:
            taken = await self._next_event()
            if taken is None:
                await self._aflush_done()
                return None
            event, parsed = taken
            if self.filter is not None and not self.filter(parsed.metadata):
                self.skipped += 1
                self._prefetched.pop(event.id, None)
                self._done.append((event, parsed))
                continue
            try:
                value = await self._avalue(event, parsed)
            except SerializationError:
                self._done.append((event, parsed))
                raise
            self._current = (event, parsed)
            self.received += 1
            await self._afetch_ahead()
            return StreamItem(value, parsed.metadata)

    async def _next_event(self) -> tuple[Event, Parsed] | None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            if self._ready:
                return self._ready.popleft()
            if set(self.subscriber.topics) <= self._ended:
                return None
            left = 5.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise StoreTimeoutError(
                    f"topics {self.subscriber.topics}", self.timeout or 0.0, "receive"
                )
            done, self._done = self._done, []
            events, finished = await self.subscriber.areceive(
                self.prefetch + 1,
                left,
                [(event, parsed.fan_out) for event, parsed in done],
            )
            await self._aevict_finished(done, finished)
            malformed = None
            for event in events:
                try:
                    parsed = parse(event, max_inline=self.max_inline, keys=self._keys)
                except MalformedEventError as err:
                    self._done.append((event, _DROPPED))
                    malformed = malformed or err
                    continue
                if parsed.kind == KIND_END:
                    self._ended.add(event.topic)
                    self._done.append((event, parsed))
                    continue
                self._ready.append((event, parsed))
            if malformed is not None:
                raise malformed

    async def _avalue(self, event: Event, parsed: Parsed) -> Any:
        if parsed.kind == KIND_INLINE:
            assert parsed.inline is not None
            try:
                obj = deserialize(parsed.inline, keys=self._keys, require_checksum=True)
            except SerializationError as err:
                err.args = (
                    f"stream {event.topic!r} entry {event.id!r}: inline object: {err}",
                )
                raise
            return obj if self.resolve else Proxy(SimpleFactory(obj))
        proxy = self._prefetched.pop(event.id, None)
        if proxy is None:
            proxy = await self._aproxy(event, parsed)
        if not self.resolve:
            return proxy
        factory: Any = get_factory(proxy)
        return await factory.aresolve()

    async def _aproxy(self, event: Event, parsed: Parsed) -> Proxy[Any]:
        assert parsed.store is not None
        assert parsed.key is not None
        store = self._store(event, parsed.store)
        try:
            key = store._validate_key(parsed.key)
        except Exception as err:
            raise MalformedEventError(
                event.topic, event.id, f"key {parsed.key!r}: {err}"
            ) from None
        return await store.aproxy_from_key(key)

    async def _afetch_ahead(self) -> None:
        if not self.prefetch:
            return
        started = []
        for event, parsed in list(self._ready)[: self.prefetch]:
            if parsed.kind == KIND_INLINE or event.id in self._prefetched:
                continue
            if self.filter is not None and not self.filter(parsed.metadata):
                continue
            store = self._stores_get(parsed.store)
            if store is None:
                continue  # refused when its turn comes
            try:
                key = store._validate_key(parsed.key)
            except Exception:
                continue
            proxy = await store.aproxy_from_key(key)
            self._prefetched[event.id] = proxy
            started.append(proxy)
        if started:
            start_prefetch(*started, max_concurrency=self.prefetch)

    def _stores_get(self, name: str | None) -> Store[Any] | None:
        if name is None:
            return None
        if self._stores is not None:
            return self._stores.get(name)
        store: Store[Any] | None = find(name, AFACE)
        return store

    async def _aflush_done(self) -> None:
        done, self._done = self._done, []
        finished = [
            await self.subscriber.aack(event, parsed.fan_out) for event, parsed in done
        ]
        await self._aevict_finished(done, finished)

    async def _aevict_finished(
        self, done: list[tuple[Event, Parsed]], finished: list[bool]
    ) -> None:
        if not self.evict:
            return
        for (_, parsed), last in zip(done, finished, strict=True):
            if last and parsed.evict and parsed.store is not None:
                store = self._stores_get(parsed.store)
                if store is not None and parsed.key is not None:
                    await store.aevict(store._validate_key(parsed.key))

    async def aclose(self, *, close_subscriber: bool = True) -> None:
        """Acknowledge the current item and close the subscriber.

        Items read ahead but not yielded stay unacknowledged (Redis Streams:
        another consumer claims them after `claim_after`).
        """
        if self._closed:
            return
        current, self._current = self._current, None
        self._closed = True
        if current is not None:
            self._done.append(current)
        await self._aflush_done()
        if close_subscriber:
            await self.subscriber.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamItem:
        item = await self.areceive()
        if item is None:
            raise StopAsyncIteration
        return item

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _check_count(value: Any, option: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{option} must be an int >= {low}, got {value!r}")
    return value


async def _astore_payloads(
    store: Store[Any], payloads: list[Payload], lifetime: Lifetime | None
) -> list[Any]:
    """Write payloads made by `Store._dump` as `aset_batch` would.

    The stored bytes are those `aset(obj)` stores (the same `_dump`), so a
    proxy of the key resolves them exactly as it would any object; only the
    serialization is not repeated. A lifetime is set as `aset_batch` sets it
    (on Redis, leases in the batch's own transaction).
    """
    store._check_open()
    if lifetime is not None:
        check_lifetime(lifetime, False, f"set_batch on store {store.name!r}")
    return await store._aset_payloads(payloads, lifetime=lifetime)


def _nbytes(payload: Payload) -> int:
    return sum(memoryview(part).nbytes for part in payload)


def _known_size(obj: Any) -> int | None:
    """The payload size of objects whose size is known without serializing."""
    if type(obj) in (bytes, bytearray, str):
        return len(obj)
    nbytes = getattr(type(obj), "nbytes", None)
    if nbytes is not None and type(obj).__module__ == "numpy":
        size: int = obj.nbytes
        return size
    return None
