"""The heartbeat of a Redis Streams consumer: slow items are not crashed ones.

Face-neutral and hand-written: both faces of `proxystore.aio.stream_redis`
use it (a thread with its own blocking connection beats the same way under
either). See ARCHITECTURE.md ("Stream events").
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import redis.exceptions

logger = logging.getLogger(__name__)

# Reset the idle time of entries this consumer still owns (XCLAIM to itself,
# JUSTID: the delivery count stays), so that XAUTOCLAIM leaves them alone; an
# entry another consumer claimed meanwhile is left to it. Returns how many
# entries were still owned.
TOUCH_SCRIPT = """
local owned = 0
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if entry and entry[2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    owned = owned + 1
  end
end
return owned
"""


class Heartbeat:
    """Keeps the entries a live consumer holds from looking like a crash's.

    While entries delivered to this consumer are not yet acknowledged, a
    thread resets their idle time every `interval` seconds (`TOUCH_SCRIPT`),
    so other consumers' ``XAUTOCLAIM`` (after `claim_after`) leaves them
    alone however long the item takes; a killed process stops beating and
    its entries are claimed as before. A thread with its own blocking
    connection, not a task, so that it beats even while the consumer's code
    holds the event loop (or, on the blocking face, the thread) for the
    whole item. Started with the first held entry; `stop` (the subscriber's
    close, or its collection) ends it and forgets the entries.

    Args:
        connect: Makes a new blocking Redis client (the thread's own).
        group: The consumer group.
        consumer: The consumer whose entries are kept alive.
        interval: Seconds between two touches of the held entries.
        join_timeout: Seconds `stop` waits for the thread (one reply's).
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        group: str,
        consumer: str,
        interval: float,
        join_timeout: float,
    ) -> None:
        self._connect = connect
        self._join_timeout = join_timeout
        self._group = group
        self._consumer = consumer
        self.interval = interval
        self._lock = threading.Lock()
        # stream -> entry ids, in delivery order.
        self._held: dict[str, dict[str, None]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.beats = 0
        """Rounds of touches done (for tests and diagnostics)."""

    def hold(self, stream: str, entry: str) -> None:
        """Keep `entry` alive until `release`; start the thread if needed."""
        with self._lock:
            self._held.setdefault(stream, {})[entry] = None
            if self._pid != os.getpid():
                # A forked child: the parent's thread does not exist here.
                self._pid = os.getpid()
                self._thread = None
            if self._thread is None:
                self._stopping = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stopping,),
                    name=f"proxystore-stream-heartbeat-{self._consumer}",
                    daemon=True,
                )
                self._thread.start()

    def release(self, stream: str, entry: str) -> None:
        """Stop keeping `entry` alive (it was acknowledged)."""
        with self._lock:
            entries = self._held.get(stream)
            if entries is not None:
                entries.pop(entry, None)
                if not entries:
                    del self._held[stream]

    def _run(self, stopping: threading.Event) -> None:
        client = self._connect()
        try:
            while not stopping.wait(self.interval):
                self.beat(client)
        finally:
            client.close()

    def beat(self, client: Any) -> None:
        """Touch every held entry once."""
        with self._lock:
            held = [(stream, list(entries)) for stream, entries in self._held.items()]
        for stream, entries in held:
            try:
                owned = client.eval(
                    TOUCH_SCRIPT, 1, stream, self._group, self._consumer, *entries
                )
            except redis.exceptions.RedisError as err:
                logger.warning(
                    "stream heartbeat of consumer %r on %s failed: %s",
                    self._consumer,
                    stream,
                    err,
                )
                continue
            if owned < len(entries):
                logger.debug(
                    "consumer %r: %d of %d held entries of %s are no longer its own",
                    self._consumer,
                    len(entries) - owned,
                    len(entries),
                    stream,
                )
        self.beats += 1

    def stop(self) -> None:
        """End the thread (waiting for it) and forget the held entries."""
        with self._lock:
            self._held.clear()
            thread, self._thread = self._thread, None
            self._stopping.set()
        if (
            thread is not None
            and self._pid == os.getpid()
            and thread is not threading.current_thread()
        ):
            thread.join(self._join_timeout)
