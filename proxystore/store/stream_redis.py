# Generated from proxystore/aio/stream_redis.py by scripts/generate_sync.py: DO NOT EDIT.
"""Redis brokers of stream events: Redis Streams and Redis pub/sub.

- `RedisStreamPublisher` / `RedisStreamSubscriber`: Redis Streams. ``XADD``
  with a length cap, consumer groups read with ``XREADGROUP``, an item is
  acknowledged (``XACK``) only when the consumer is done with it, and items a
  crashed consumer never acknowledged are claimed by another after
  `claim_after` seconds (``XAUTOCLAIM``): at-least-once delivery. Consumers
  sharing a group split the items; each group sees every item (fan-out).
- `RedisPubSubPublisher` / `RedisPubSubSubscriber`: Redis pub/sub, fire and
  forget: subscribers connected at publish time get the event, nothing is
  acknowledged or redelivered.

The Redis keys of a topic are described in `proxystore.stream_format` and
ARCHITECTURE.md ("Stream events").
"""

from __future__ import annotations

import os
import secrets
import socket
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import redis
import redis.exceptions

from proxystore._validate import check_seconds
from proxystore.store.stream_brokers import Ack, check_topics
from proxystore.exceptions import (
    ConfigurationError,
    MalformedEventError,
    StoreConnectionError,
    StoreTimeoutError,
)
from proxystore.signing import SigningKeys
from proxystore.stream_format import (
    KIND_END,
    Event,
    Fields,
    authentic,
    check_topic,
    end_event,
    pack_fields,
    redis_keys,
    sign_event,
    unpack_fields,
)
from proxystore.stream_heartbeat import Heartbeat

_IS_SYNC = True

DEFAULT_GROUP = "default"
"""The consumer group of a Redis Streams subscriber unless told otherwise."""

DEFAULT_MAXLEN = 100_000
"""Entries a Redis stream keeps at most (approximately; older ones are trimmed)."""

DEFAULT_CLAIM_AFTER = 30.0
"""Seconds an item may stay unacknowledged before another consumer claims it."""

# XACK the entry; count the group's acknowledgement; when every consumer
# group of the stream has acknowledged it, forget the count and delete the
# entry (so XLEN counts the items some group still has to finish). The number
# of groups is the stream's own (XINFO GROUPS), never the event's "g" field:
# whoever can XADD to the stream could lower that and have an object evicted
# before the other groups read it. Returns 1 when this was the last group, 0
# when others remain, -1 when this group had acknowledged it already (a
# redelivered duplicate). XINFO is non-deterministic: Redis < 7 must
# replicate the script's effects, not the script.
_ACK_SCRIPT = """
redis.replicate_commands()
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 then return -1 end
local groups = #redis.call('XINFO', 'GROUPS', KEYS[1])
if groups > 1 then
  local count = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  if count < groups then return 0 end
  redis.call('HDEL', KEYS[2], ARGV[2])
end
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""


class _RedisClient:
    """Connection settings shared by the Redis brokers; the client is made lazily."""

    def __init__(
        self,
        hostname: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.db = db
        self.username = username
        self._password = (
            password
            if password is not None
            else os.environ.get("PROXYSTORE_REDIS_PASSWORD")
        )
        self.ssl = ssl
        self.timeout = check_seconds(timeout, "timeout", f"broker {self.target}")
        self._client: Any = None
        self._pid = os.getpid()

    @property
    def target(self) -> str:
        return f"redis://{self.hostname}:{self.port}/{self.db}"

    def client(self, block: float = 0.0) -> Any:
        if self._client is None or self._pid != os.getpid():
            self._pid = os.getpid()
            # A blocking read waits up to `block` on the server.
            self._client = redis.Redis(**self._options(self.timeout + block))
        return self._client

    def _options(self, socket_timeout: float) -> dict[str, Any]:
        return {
            "host": self.hostname,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self._password,
            "ssl": self.ssl,
            "socket_connect_timeout": self.timeout,
            "socket_timeout": socket_timeout,
        }

    def blocking_client(self) -> Any:
        """A new blocking client (for a thread of its own; the caller closes it)."""
        return redis.Redis(**self._options(self.timeout))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()

    def error(self, err: Exception, operation: str) -> Exception:
        if isinstance(err, redis.exceptions.TimeoutError):
            return StoreTimeoutError(self.target, self.timeout, operation)
        return StoreConnectionError(self.target, f"{operation}: {err}")


class RedisStreamPublisher:
    """Publishes events to Redis Streams (one stream per topic).

    Args:
        hostname: The Redis server.
        port: Its port.
        groups: The consumer groups that read every topic. They are created
            (reading from the start of the stream) before the first event is
            published, so no group misses an item; an item's object is
            evicted once all of them acknowledged it. Consumers must use
            these groups.
        maxlen: Cap on each stream's length (``XADD MAXLEN ~``): older
            entries are trimmed, read or not. Keep it above the producer's
            `max_unconsumed` so that trimming only drops finished items.
        db: Database number.
        username: ACL user.
        password: Password (default ``PROXYSTORE_REDIS_PASSWORD``).
        ssl: Connect with TLS.
        timeout: Seconds to connect and for each reply.
    """

    def __init__(
        self,
        hostname: str,
        port: int,
        *,
        groups: Sequence[str] = (DEFAULT_GROUP,),
        maxlen: int | None = DEFAULT_MAXLEN,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(groups, str) or not groups:
            raise ConfigurationError(
                f"groups must be a non-empty sequence of names, got {groups!r}"
            )
        self.groups = tuple(check_topic(group) for group in groups)
        self.fan_out = len(self.groups)
        if maxlen is not None and (
            isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1
        ):
            raise ConfigurationError(f"maxlen must be an int >= 1, got {maxlen!r}")
        self.maxlen = maxlen
        self._redis = _RedisClient(
            hostname,
            port,
            db=db,
            username=username,
            password=password,
            ssl=ssl,
            timeout=timeout,
        )
        self._ready: set[str] = set()

    def _prepare(self, client: Any, topic: str) -> None:
        if topic in self._ready:
            return
        stream, _, end = redis_keys(topic)
        for group in self.groups:
            _create_group(client, stream, group)
        # Publishing to a topic that ended reopens it (a producer run again).
        client.delete(end)
        self._ready.add(topic)

    def publish(self, topic: str, events: Sequence[Fields]) -> None:
        """Append events to the topic's stream (one round trip), in order."""
        check_topic(topic)
        stream, _, end = redis_keys(topic)
        client = self._redis.client()
        try:
            self._prepare(client, topic)
            if len(events) == 1:
                ids = [
                    client.xadd(
                        stream, events[0], maxlen=self.maxlen, approximate=True
                    )
                ]
            else:
                pipe = client.pipeline(transaction=False)
                for fields in events:
                    pipe.xadd(stream, fields, maxlen=self.maxlen, approximate=True)
                ids = pipe.execute()
            ends = [
                entry
                for entry, fields in zip(ids, events, strict=True)
                if fields.get(b"t") == KIND_END
            ]
            if ends:
                client.set(end, ends[-1])
        except redis.exceptions.RedisError as err:
            raise self._redis.error(err, f"publish to topic {topic!r}") from err

    def pending(self, topic: str) -> int | None:
        """Return the stream's length: items some group has not finished."""
        try:
            count: int = self._redis.client().xlen(redis_keys(topic)[0])
        except redis.exceptions.RedisError as err:
            raise self._redis.error(err, f"length of topic {topic!r}") from err
        return count

    def close(self) -> None:
        """Close the connections."""
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisStreamPublisher({self._redis.target}, groups={self.groups})"


def _create_group(client: Any, stream: str, group: str) -> None:
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


class RedisStreamSubscriber:
    """Receives events from Redis Streams as one consumer of a consumer group.

    Args:
        hostname: The Redis server.
        port: Its port.
        topics: The topic (or topics) to read.
        group: The consumer group: consumers of one group split the items;
            every group reads every item. Use a group the producer declares.
        consumer: This consumer's name in the group (default: host, pid and
            a random suffix, so a restarted process is a new consumer).
        claim_after: Seconds an item may go without a sign of life from the
            consumer that took it (its heartbeat, see `heartbeat`) before
            this one claims it (``XAUTOCLAIM``): how long a crashed
            consumer's items wait. Use the same value for every consumer of
            a group (each beats at a third of its own).
        block: Seconds one read waits on the server; also how often a
            consumer whose group-mates took the end event checks whether the
            topic is finished.
        heartbeat: While this consumer holds items (delivered, not yet
            acknowledged), a background thread resets their idle time every
            `claim_after` / 3 seconds, so a slow item is not claimed by
            another consumer while this process lives (False: no heartbeat;
            an item held over `claim_after` is then processed twice).
        db: Database number.
        username: ACL user.
        password: Password (default ``PROXYSTORE_REDIS_PASSWORD``).
        ssl: Connect with TLS.
        timeout: Seconds to connect and for each reply.
    """

    def __init__(
        self,
        hostname: str,
        port: int,
        topics: str | Iterable[str],
        *,
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        claim_after: float = DEFAULT_CLAIM_AFTER,
        block: float = 0.5,
        heartbeat: bool = True,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.topics = check_topics(topics)
        self.group = check_topic(group)
        self.consumer = check_topic(
            consumer
            if consumer is not None
            else f"{socket.gethostname()[:64]}-{os.getpid()}-{secrets.token_hex(4)}"
        )
        self.claim_after = check_seconds(claim_after, "claim_after", "subscriber")
        self.block = check_seconds(block, "block", "subscriber")
        self._redis = _RedisClient(
            hostname,
            port,
            db=db,
            username=username,
            password=password,
            ssl=ssl,
            timeout=timeout,
        )
        self._streams = {redis_keys(topic)[0]: topic for topic in self.topics}
        self.event_keys: SigningKeys | None = None
        self._ready = False
        self._ended: set[str] = set()
        self._next_claim = 0.0
        self._sha = ""
        if not isinstance(heartbeat, bool):
            raise ConfigurationError(
                f"heartbeat must be True or False, got {heartbeat!r}"
            )
        self._heartbeat: Heartbeat | None = None
        if heartbeat:
            self._heartbeat = Heartbeat(
                self._redis.blocking_client,
                self.group,
                self.consumer,
                self.claim_after / 3,
                self._redis.timeout + 1.0,
            )
            # The thread holds the heartbeat, not the subscriber: a
            # subscriber dropped without close still stops it.
            weakref.finalize(self, self._heartbeat.stop)

    def _prepare(self, client: Any) -> None:
        if self._ready:
            return
        for stream in self._streams:
            _create_group(client, stream, self.group)
        self._sha = _text(client.script_load(_ACK_SCRIPT))
        self._ready = True

    def _queue_ack(self, pipe: Any, event: Event, fan_out: int) -> None:
        stream, acks, _ = redis_keys(event.topic)
        if self._heartbeat is not None:
            self._heartbeat.release(stream, event.id)
        pipe.evalsha(self._sha, 2, stream, acks, self.group, event.id)

    def _acks(
        self, client: Any, acks: Sequence[Ack], results: list[Any]
    ) -> list[bool]:
        finished = []
        for (event, fan_out), result in zip(acks, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                # The server lost its scripts (restart, SCRIPT FLUSH).
                self._ready = False
                self._prepare(client)
                pipe = client.pipeline(transaction=False)
                self._queue_ack(pipe, event, fan_out)
                (result,) = pipe.execute()
            elif isinstance(result, Exception):
                raise result
            finished.append(result == 1 and fan_out > 0)
        return finished

    def receive(
        self, count: int, timeout: float, acks: Sequence[Ack] = ()
    ) -> tuple[list[Event], list[bool]]:
        """Acknowledge `acks`, then return up to `count` events.

        Events left unacknowledged by crashed consumers come first (claimed),
        then new ones; the acknowledgements and the read share a round trip.
        """
        block = min(timeout, self.block)
        client = self._redis.client(block)
        try:
            self._prepare(client)
            events = self._claim(client, count)
            live = {
                stream: ">"
                for stream, topic in self._streams.items()
                if topic not in self._ended
            }
            pipe = client.pipeline(transaction=False)
            for event, fan_out in acks:
                self._queue_ack(pipe, event, fan_out)
            if live and not events:
                pipe.xreadgroup(
                    self.group,
                    self.consumer,
                    live,
                    count=count,
                    block=max(1, int(block * 1000)),
                )
            results = pipe.execute(raise_on_error=False) if len(pipe) else []
            finished = self._acks(client, acks, results[: len(acks)])
            if events or not live:
                return events, finished
            replies = results[-1]
            if isinstance(replies, Exception):
                raise replies
            for stream, entries in replies or ():
                topic = self._streams[_text(stream)]
                for entry, fields in entries:
                    self._receive_entry(
                        client, Event(topic, _text(entry), fields or {}), events
                    )
            if not events:
                events = self._finished(client)
        except redis.exceptions.RedisError as err:
            raise self._redis.error(err, f"read of topics {self.topics}") from err
        for event in events:
            if event.fields.get(b"t") == KIND_END and authentic(event, self.event_keys):
                self._ended.add(event.topic)
        return events, finished

    def _receive_entry(
        self, client: Any, event: Event, events: list[Event]
    ) -> None:
        if event.fields.get(b"t") != KIND_END or not authentic(event, self.event_keys):
            # An end event without a valid MAC ends nothing: the consumer
            # refuses it like any other forged event.
            events.append(event)
            if self._heartbeat is not None:
                self._heartbeat.hold(redis_keys(event.topic)[0], event.id)
            return
        # The group ends when it has finished every item, including those
        # group-mates took and may still drop (see _finished), not when one
        # of its consumers reads the end event.
        self.ack(event, _fan_out(event.fields))
        client.set(redis_keys(event.topic)[2], event.id)

    def _claim(self, client: Any, count: int) -> list[Event]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + self.claim_after / 4
        events: list[Event] = []
        idle = int(self.claim_after * 1000)
        for stream, topic in self._streams.items():
            reply = client.xautoclaim(
                stream, self.group, self.consumer, idle, start_id="0-0", count=count
            )
            entries = reply[1] if len(reply) > 1 else []
            for entry, fields in entries:
                if entry is None:
                    continue  # Redis 6.2: an entry deleted while pending
                if fields is None:
                    # Trimmed while pending: nothing left to deliver.
                    client.xack(stream, self.group, entry)
                    continue
                self._receive_entry(
                    client, Event(topic, _text(entry), fields), events
                )
            if events:
                # More may be waiting: claim again on the next read.
                self._next_claim = now
                break
        return events

    def _finished(self, client: Any) -> list[Event]:
        """End events for topics that ended and that this group has finished."""
        ended = []
        for stream, topic in self._streams.items():
            if topic in self._ended:
                continue
            end = client.get(redis_keys(topic)[2])
            if end is None:
                continue
            for info in client.xinfo_groups(stream):
                if _text(info["name"]) != self.group:
                    continue
                delivered = _entry_id(_text(info["last-delivered-id"]))
                if info["pending"] == 0 and delivered >= _entry_id(_text(end)):
                    fields = end_event()
                    if self.event_keys is not None:
                        # Made here from an end event that was verified.
                        fields = sign_event(topic, fields, self.event_keys)
                    ended.append(Event(topic, _text(end), fields))
        return ended

    def ack(self, event: Event, fan_out: int) -> bool:
        """Acknowledge `event` for this group; True when every group has."""
        client = self._redis.client(self.block)
        try:
            self._prepare(client)
            pipe = client.pipeline(transaction=False)
            self._queue_ack(pipe, event, fan_out)
            results = pipe.execute(raise_on_error=False)
            (finished,) = self._acks(client, [(event, fan_out)], results)
        except redis.exceptions.RedisError as err:
            raise self._redis.error(
                err, f"acknowledge entry {event.id} of topic {event.topic!r}"
            ) from err
        return finished

    def close(self) -> None:
        """Close the connections (unacknowledged items stay pending, to be claimed).

        Stops the heartbeat: items held and not acknowledged are claimed by
        another consumer after `claim_after`.
        """
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self._redis.close()

    def __repr__(self) -> str:
        return (
            f"RedisStreamSubscriber({self._redis.target}, topics={self.topics}, "
            f"group={self.group!r}, consumer={self.consumer!r})"
        )


def _fan_out(fields: Any) -> int:
    raw = fields.get(b"g", b"1")
    return int(raw) if raw.isdigit() and 0 < len(raw) <= 4 else 1


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _entry_id(text: str) -> tuple[int, int]:
    millis, _, sequence = text.partition("-")
    return int(millis), int(sequence or 0)


class RedisPubSubPublisher:
    """Publishes events on Redis pub/sub channels (fire and forget).

    Subscribers connected when an event is published receive it; nothing is
    stored, acknowledged or redelivered, so objects are never evicted on
    acknowledgement (give the producer a lifetime instead) and a producer
    cannot apply backpressure.
    """

    fan_out = 0

    def __init__(self, hostname: str, port: int, **kwargs: Any) -> None:
        self._redis = _RedisClient(hostname, port, **kwargs)

    def publish(self, topic: str, events: Sequence[Fields]) -> None:
        """Publish events on the topic's channel (one round trip)."""
        channel = redis_keys(check_topic(topic))[0]
        try:
            pipe = self._redis.client().pipeline(transaction=False)
            for fields in events:
                pipe.publish(channel, pack_fields(fields))
            pipe.execute()
        except redis.exceptions.RedisError as err:
            raise self._redis.error(err, f"publish to topic {topic!r}") from err

    def pending(self, topic: str) -> int | None:
        """Unknown: pub/sub keeps nothing."""
        return None

    def close(self) -> None:
        """Close the connections."""
        self._redis.close()


class RedisPubSubSubscriber:
    """Receives the events published on some topics while it is subscribed."""

    def __init__(
        self, hostname: str, port: int, topics: str | Iterable[str], **kwargs: Any
    ) -> None:
        self.topics = check_topics(topics)
        self._redis = _RedisClient(hostname, port, **kwargs)
        self._channels = {redis_keys(topic)[0]: topic for topic in self.topics}
        self.event_keys: SigningKeys | None = None
        self._pubsub: Any = None
        self._counter = 0

    def subscribe(self) -> None:
        """Subscribe now (else on the first receive): later events are received."""
        if self._pubsub is None:
            pubsub = self._redis.client().pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*self._channels)
            except redis.exceptions.RedisError as err:
                raise self._redis.error(err, f"subscribe to {self.topics}") from err
            self._pubsub = pubsub

    def receive(
        self, count: int, timeout: float, acks: Sequence[Ack] = ()
    ) -> tuple[list[Event], list[bool]]:
        """Return up to `count` events, waiting up to `timeout` for the first."""
        self.subscribe()
        events: list[Event] = []
        deadline = time.monotonic() + timeout
        try:
            while len(events) < count:
                left = deadline - time.monotonic() if not events else 0.0
                message = self._pubsub.get_message(timeout=max(left, 0.0))
                if message is None:
                    if events or time.monotonic() >= deadline:
                        break
                    continue
                if message.get("type") != "message":
                    continue
                self._counter += 1
                topic = self._channels.get(_text(message["channel"]))
                if topic is None:
                    continue
                entry = str(self._counter)
                data = message["data"]
                if not isinstance(data, bytes):
                    raise MalformedEventError(topic, entry, "message is not bytes")
                events.append(Event(topic, entry, unpack_fields(data, topic, entry)))
        except redis.exceptions.RedisError as err:
            raise self._redis.error(err, f"read of topics {self.topics}") from err
        return events, [False] * len(acks)

    def ack(self, event: Event, fan_out: int) -> bool:
        """Nothing to acknowledge; never reports an item finished."""
        return False

    def close(self) -> None:
        """Unsubscribe and close the connections."""
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            pubsub.close()
        self._redis.close()
