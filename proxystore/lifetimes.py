"""Lifetimes: evict a group of objects together (``store.proxy(obj, lifetime=...)``).

- `ContextLifetime`: everything made in a ``with`` / ``async with`` block is
  evicted when the block exits (or at `close`).
- `LeaseLifetime`: everything is evicted `seconds` after the lease was made,
  unless `extend` pushes the expiry back. Stores that can enforce it
  themselves do, so objects of a producer that crashed still go on time:
  `RedisStore` sets a server-side expiry (``PEXPIREAT``) on every key of the
  object in the transaction that writes it; `FileStore` writes a lease file
  ``.lease-K`` that the next sweep (`FileStore.sweep`, run when a process
  first opens the directory) removes together with the object once expired.
  `LocalStore` and endpoint stores expire in their own process: one daemon
  thread per process ends every lease at its expiry.
- `StaticLifetime`: everything is evicted when the interpreter exits.

A lifetime records (store configuration, key) pairs, so it evicts through
either face of a store: `close` through the sync face, `aclose` through the
async one. A lifetime is process-local: it is never pickled.
"""

from __future__ import annotations

import atexit
import heapq
import os
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from proxystore import registry
from proxystore.exceptions import ConfigurationError, LifetimeEndedError
from proxystore.registry import StoreConfig

if TYPE_CHECKING:
    from typing_extensions import Self


def _logger() -> Any:
    # logging costs milliseconds to import; only a failing eviction logs.
    import logging

    return logging.getLogger(__name__)


class Lifetime:
    """Objects that are evicted together; see the subclasses."""

    expiry: float | None = None
    """Unix time at which the objects are evicted (None: no expiry)."""

    def __init__(self) -> None:
        self._keys: list[tuple[StoreConfig, Any]] = []
        self._lock = threading.Lock()
        self._ended = False

    def done(self) -> bool:
        """Whether the lifetime ended (its objects were evicted)."""
        return self._ended

    @property
    def keys(self) -> list[tuple[str, Any]]:
        """The (store name, key) pairs this lifetime will evict."""
        with self._lock:
            return [(config.name, key) for config, key in self._keys]

    def add(self, store: Any, key: Any) -> None:
        """Evict `key` of `store` when this lifetime ends.

        Stores call this for objects set with ``lifetime=``; call it for
        keys written otherwise.

        Raises:
            LifetimeEndedError: If the lifetime already ended.
        """
        with self._lock:
            self._check_alive()
            self._keys.append((store.store_config, key))

    def close(self) -> None:
        """End the lifetime now: evict its objects (through the sync faces).

        Eviction errors are logged and the remaining objects still evicted;
        closing twice is a no-op.
        """
        for config, key in self._end():
            try:
                registry.lookup_or_build(config, "sync").evict(key)
            except Exception as err:
                _logger().warning(
                    "lifetime could not evict %r from store %r: %s",
                    key,
                    config.name,
                    err,
                )

    async def aclose(self) -> None:
        """End the lifetime now: evict its objects through the async faces."""
        for config, key in self._end():
            try:
                await registry.lookup_or_build(config, "async").aevict(key)
            except Exception as err:
                _logger().warning(
                    "lifetime could not evict %r from store %r: %s",
                    key,
                    config.name,
                    err,
                )

    def _end(self) -> list[tuple[StoreConfig, Any]]:
        with self._lock:
            if self._ended:
                return []
            self._ended = True
            keys, self._keys = self._keys, []
        self._ended_hook()
        return keys

    def _ended_hook(self) -> None:
        """Subclasses release timers or exit hooks here."""

    def _check_alive(self) -> None:
        if self._ended:
            raise LifetimeEndedError(f"{self!r} already ended; make a new lifetime")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} is process-local; it cannot be pickled")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(objects={len(self._keys)}, ended={self._ended})"


class ContextLifetime(Lifetime):
    """Evict everything made with it when its ``with`` block exits.

    Example:
        ```python
        with ContextLifetime() as lifetime:
            p = store.proxy(data, lifetime=lifetime)
            run(p)
        # data is evicted here
        ```
    """


class LeaseLifetime(Lifetime):
    """Evict everything made with it `seconds` from now, unless extended.

    Args:
        seconds: How long the lease lasts.

    Raises:
        ConfigurationError: If `seconds` is not a number > 0.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        _check_seconds(seconds)
        self.expiry = time.time() + seconds
        _scheduler.add(self.expiry, self)

    def extend(self, seconds: float) -> None:
        """Push the expiry back by `seconds`, in this process and in the stores.

        Raises:
            LifetimeEndedError: If the lease already ended.
        """
        _check_seconds(seconds)
        for config, key, expiry in self._extended(seconds):
            store = registry.lookup_or_build(config, "sync")
            store._set_lease(key, expiry)

    async def aextend(self, seconds: float) -> None:
        """`extend` through the stores' async faces."""
        _check_seconds(seconds)
        for config, key, expiry in self._extended(seconds):
            store = registry.lookup_or_build(config, "async")
            await store._aset_lease(key, expiry)

    def _extended(self, seconds: float) -> list[tuple[StoreConfig, Any, float]]:
        with self._lock:
            self._check_alive()
            assert self.expiry is not None
            self.expiry += seconds
            expiry = self.expiry
            keys = list(self._keys)
        _scheduler.add(expiry, self)
        return [(config, key, expiry) for config, key in keys]

    def _expire(self) -> None:
        # Called by the scheduler at an expiry this lease had; it may have
        # been extended since.
        if not self._ended and self.expiry is not None and time.time() >= self.expiry:
            self.close()


class StaticLifetime(Lifetime):
    """Evict everything made with it when the interpreter exits.

    There is one per process: ``StaticLifetime()`` always returns it.
    """

    _instance: ClassVar[StaticLifetime | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(cls) -> StaticLifetime:
        """Return the process's static lifetime (a new one after it ended)."""
        with cls._instance_lock:
            if cls._instance is None or cls._instance.done():
                instance = super().__new__(cls)
                Lifetime.__init__(instance)
                atexit.register(instance.close)
                cls._instance = instance
            return cls._instance

    def __init__(self) -> None:
        pass  # initialised once, in __new__

    def _ended_hook(self) -> None:
        atexit.unregister(self.close)


class _Scheduler:
    """One daemon thread that ends leases at their expiry (started lazily).

    A heap of (expiry, sequence, lease); an extended lease is pushed again
    and its older entry does nothing when it comes up. A forked child
    starts its own thread for the leases it makes.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, LeaseLifetime]] = []
        self._count = 0
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, expiry: float, lease: LeaseLifetime) -> None:
        with self._wakeup:
            self._count += 1
            heapq.heappush(self._heap, (expiry, self._count, lease))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="proxystore-leases", daemon=True
                )
                self._thread.start()
            self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._heap:
                    self._wakeup.wait()
                expiry, _, lease = self._heap[0]
                delay = expiry - time.time()
                if delay > 0:
                    self._wakeup.wait(delay)
                    continue
                heapq.heappop(self._heap)
            try:
                lease._expire()
            except Exception:  # never let one lease stop the others
                _logger().exception("ending lease %r failed", lease)

    def _after_fork(self) -> None:
        self._heap = []
        self._wakeup = threading.Condition()
        self._thread = None


_scheduler = _Scheduler()
os.register_at_fork(after_in_child=_scheduler._after_fork)


def check_lifetime(lifetime: Any, evict: bool, where: str) -> None:
    """Refuse a non-lifetime, or ``evict=True`` together with a lifetime."""
    if lifetime is None:
        return
    if not isinstance(lifetime, Lifetime):
        raise ConfigurationError(
            f"{where}: lifetime must be a Lifetime (ContextLifetime, "
            f"LeaseLifetime, StaticLifetime), got {type(lifetime).__name__}"
        )
    if evict:
        raise ConfigurationError(
            f"{where}: evict=True and lifetime= both decide when the object "
            "is deleted; give one"
        )
    lifetime._check_alive()


def _check_seconds(seconds: Any) -> None:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 < seconds < float("inf")
    ):
        raise ConfigurationError(f"lease seconds must be a number > 0, got {seconds!r}")
