# Generated from proxystore/aio/stream_brokers.py by scripts/generate_sync.py: DO NOT EDIT.
"""Brokers that carry stream events: the protocol and the in-process queue.

A `StreamProducer` publishes events through a `Publisher`; a `StreamConsumer`
receives them through a `Subscriber`. Events are small (a store name and a
key, or an inline frame of a few KB); the objects travel through stores.

- `QueueBroker` (here): an in-process queue per topic (tests,
  single-process pipelines). Each event goes to one receiver; both faces,
  any thread.
- `proxystore.store.stream_redis`: Redis Streams (consumer groups,
  acknowledgement, redelivery of a crashed consumer's items) and Redis
  pub/sub (fire and forget).

The event fields are described in `proxystore.stream_format` and
ARCHITECTURE.md ("Stream events").
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

from proxystore._compat import Waiter
from proxystore.exceptions import ConfigurationError
from proxystore.signing import SigningKeys
from proxystore.stream_format import Event, Fields, check_topic

_IS_SYNC = True


class Publisher(Protocol):
    """What a `StreamProducer` publishes events through."""

    fan_out: int
    """How many consumer groups acknowledge each event (0: none do)."""

    def publish(self, topic: str, events: Sequence[Fields]) -> None:
        """Publish events to a topic, in order."""

    def pending(self, topic: str) -> int | None:
        """Return how many items of `topic` are not finished (None: unknown)."""

    def close(self) -> None:
        """Release the broker's connections."""


class Subscriber(Protocol):
    """What a `StreamConsumer` receives events through."""

    topics: tuple[str, ...]
    """The topics it receives."""

    event_keys: SigningKeys | None
    """Keys events are verified with (set by `StreamConsumer` from its own).

    A subscriber that acts on an event itself (a Redis Streams subscriber
    ends its group's topic on an end event) acts only on authentic ones
    (`proxystore.stream_format.authentic`) and passes the others on, for the
    consumer to refuse.
    """

    def receive(
        self, count: int, timeout: float, acks: Sequence[Ack] = ()
    ) -> tuple[list[Event], list[bool]]:
        """Acknowledge `acks`, then return up to `count` events.

        Waits at most `timeout` seconds for events; an empty list means none
        came in time. When a topic has ended and nothing of it is left for
        this subscriber, an end event is returned. Acknowledging in the same
        call saves a round trip per item.

        Returns:
            The events, and for each of `acks` whether every consumer group
            is now done with it (see `ack`).
        """

    def ack(self, event: Event, fan_out: int) -> bool:
        """Say this subscriber is done with `event`.

        Returns:
            True if every one of `fan_out` consumer groups is now done with
            it (its object may be evicted).
        """

    def close(self) -> None:
        """Release the broker's connections."""


Ack = tuple[Event, int]
"""An event a consumer is done with, and its fan-out."""


def check_topics(topics: str | Iterable[str]) -> tuple[str, ...]:
    """Return a subscriber's topics (one name or several) as a checked tuple."""
    found = (topics,) if isinstance(topics, str) else tuple(topics)
    if not found:
        raise ConfigurationError("a subscriber needs at least one topic")
    return tuple(check_topic(topic) for topic in found)


class QueueBroker:
    """An in-process broker: one queue per topic, shared by threads and tasks.

    It is its own publisher; `subscriber` returns a receiver of some topics.
    Each event goes to one receiver (subscribers of one topic split it), and
    `ack` always reports the item finished.
    """

    fan_out = 1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[Event]] = {}
        self._waiters: dict[str, list[Waiter]] = {}
        self._counter = 0

    def subscriber(self, topics: str | Iterable[str]) -> QueueSubscriber:
        """Return a subscriber of `topics` on this broker."""
        return QueueSubscriber(self, check_topics(topics))

    def publish(self, topic: str, events: Sequence[Fields]) -> None:
        """Queue events on a topic and wake its receivers."""
        check_topic(topic)
        with self._lock:
            queue = self._queues.setdefault(topic, collections.deque())
            for fields in events:
                self._counter += 1
                queue.append(Event(topic, str(self._counter), dict(fields)))
            waiters = self._waiters.pop(topic, [])
        for waiter in waiters:
            waiter.wake()

    def pending(self, topic: str) -> int | None:
        """Return how many events of `topic` wait for a receiver."""
        with self._lock:
            return len(self._queues.get(topic, ()))

    def close(self) -> None:
        """Nothing to release."""

    def _take(
        self, topics: Sequence[str], count: int, waiter: Waiter | None
    ) -> list[Event]:
        taken: list[Event] = []
        with self._lock:
            for topic in topics:
                queue = self._queues.get(topic)
                while queue and len(taken) < count:
                    taken.append(queue.popleft())
            if not taken and waiter is not None:
                for topic in topics:
                    self._waiters.setdefault(topic, []).append(waiter)
        return taken

    def _forget(self, topics: Sequence[str], waiter: Waiter) -> None:
        with self._lock:
            for topic in topics:
                waiting = self._waiters.get(topic, [])
                if waiter in waiting:
                    waiting.remove(waiter)


class QueueSubscriber:
    """A receiver of some topics of a `QueueBroker`."""

    def __init__(self, broker: QueueBroker, topics: tuple[str, ...]) -> None:
        self.broker = broker
        self.topics = topics
        self.event_keys: SigningKeys | None = None

    def receive(
        self, count: int, timeout: float, acks: Sequence[Ack] = ()
    ) -> tuple[list[Event], list[bool]]:
        """Return up to `count` queued events, waiting up to `timeout` seconds."""
        finished = [True] * len(acks)
        taken = self.broker._take(self.topics, count, None)
        if taken:
            return taken, finished
        waiter = Waiter()
        taken = self.broker._take(self.topics, count, waiter)
        if taken:
            return taken, finished
        try:
            waiter.wait(timeout)
        finally:
            self.broker._forget(self.topics, waiter)
        return self.broker._take(self.topics, count, None), finished

    def ack(self, event: Event, fan_out: int) -> bool:
        """An in-process event has one receiver: it is finished."""
        return True

    def close(self) -> None:
        """Nothing to release."""
