"""`StoreFactory`: the factory inside every proxy a store makes.

It carries the store's configuration, not the store: a process that never
initialised the store rebuilds it (and registers it under its name) on the
first resolve. The same factory resolves through the sync face when a proxy
is touched and through the async face under `await proxystore.aio.resolve`.

A factory made with ``prefetch=True`` starts fetching on the process-wide
background loop as soon as it is unpickled in a consumer; first use, sync or
async, then takes that fetch's result (or its error) instead of fetching
again. The pending fetch is never pickled, and a child forked while it was in
flight fetches for itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from proxystore import _background, registry
from proxystore.exceptions import StoreTimeoutError
from proxystore.factory import Factory
from proxystore.registry import StoreConfig

T = TypeVar("T")


class StoreFactory(Factory[T]):
    """Resolve a key from a named store.

    Args:
        config: The store's configuration (`store.store_config`).
        key: The object's key in the store.
        evict: Evict the object from the store once resolved.
        deserializer: Custom deserializer for the stored bytes, if the object
            was stored with a custom serializer.
        prefetch: Start fetching as soon as the factory is unpickled.
    """

    __slots__ = (
        "_pending",
        "_pending_pid",
        "config",
        "deserializer",
        "evict",
        "key",
        "prefetch",
    )

    def __init__(
        self,
        config: StoreConfig,
        key: Any,
        *,
        evict: bool = False,
        deserializer: Callable[[bytes], Any] | None = None,
        prefetch: bool = False,
    ) -> None:
        self.config = config
        self.key = key
        self.evict = evict
        self.deserializer = deserializer
        self.prefetch = prefetch
        self._pending: concurrent.futures.Future[T] | None = None
        self._pending_pid = 0

    def start_prefetch(self, limiter: asyncio.Semaphore | None = None) -> None:
        """Start fetching on the background loop, unless a fetch is pending.

        Returns at once; the next `resolve` or `resolve_async` takes the result.

        Args:
            limiter: Also hold this semaphore while fetching (besides the
                store's own concurrency limit).
        """
        with _pending_lock:
            if self._pending is not None and self._pending_pid == os.getpid():
                return
            self._pending = _background.submit(
                self._prefetch(), store=self.config.name, limiter=limiter
            )
            self._pending_pid = os.getpid()

    def resolve(self) -> T:
        """Return the object: the pending prefetch's result, or a fetch now.

        A fetch now goes through the store's sync face.

        Raises:
            MissingKeyError: If the key is not in the store.
            StoreTimeoutError: If a pending prefetch did not finish within
                the wait timeout (`proxystore.store.utils.configure_prefetch`).
        """
        pending = self._take_pending()
        # Waiting on the background loop's own thread would deadlock it.
        if pending is not None and (
            pending.done() or not _background.in_background_thread()
        ):
            done, _ = concurrent.futures.wait([pending], _background.wait_timeout())
            if not done:
                raise StoreTimeoutError(
                    f"store {self.config.name!r}",
                    _background.wait_timeout(),
                    f"prefetch of key {self.key!r}",
                )
            if not pending.cancelled():
                return self._result_of(pending)
        return self._fetch()

    async def resolve_async(self) -> T:
        """Return the object without blocking the running event loop.

        Awaits the pending prefetch if there is one, else fetches through
        the store's async face.

        Raises:
            MissingKeyError: If the key is not in the store.
        """
        pending = self._take_pending()
        if pending is not None:
            try:
                await asyncio.shield(asyncio.wrap_future(pending))
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise
            except Exception:
                pass  # raised from `_result_of`, which also forgets the fetch
            if not pending.cancelled():
                return self._result_of(pending)
        return await self._afetch()

    def _take_pending(self) -> concurrent.futures.Future[T] | None:
        with _pending_lock:
            if self._pending is not None and self._pending_pid != os.getpid():
                # Made before a fork: the thread that would finish it is
                # not in this process.
                self._pending = None
            return self._pending

    def _result_of(self, pending: concurrent.futures.Future[T]) -> T:
        try:
            return pending.result(0)
        except Exception:
            # A failed prefetch is reported once; the next use fetches again.
            with _pending_lock:
                if self._pending is pending:
                    self._pending = None
            raise

    def _has_sync_face(self) -> bool:
        # A store class registered only as an async face (a user's driver
        # without a generated twin) is fetched through that face instead.
        cls = registry.import_class(self.config.face_kind("sync"))
        return hasattr(cls, "_resolve")

    def _fetch(self) -> T:
        store = registry.lookup_or_build(self.config, "sync")
        result: T = store._resolve(self.key, self.deserializer, self.evict)
        return result

    async def _afetch(self) -> T:
        store = registry.lookup_or_build(self.config, "async")
        result: T = await store._aresolve(self.key, self.deserializer, self.evict)
        return result

    async def _prefetch(self) -> T:
        try:
            if _background.fetch_face() == "sync" and self._has_sync_face():
                return await _background.run_blocking(self._fetch)
            return await self._afetch()
        except Exception as err:
            add_note = getattr(err, "add_note", None)
            if add_note is not None:
                add_note(
                    f"raised by the background prefetch of key {self.key!r} "
                    f"from store {self.config.name!r}"
                )
            raise

    def __reduce__(self) -> tuple[Any, ...]:
        config = self.config
        flags = (self.evict, self.deserializer, self.prefetch)
        return (_rebuild, (config.kind, config.kwargs, self.key, flags))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoreFactory):
            return NotImplemented
        return (self.config, self.key, self.evict) == (
            other.config,
            other.key,
            other.evict,
        )

    def __hash__(self) -> int:
        return hash((self.config.name, self.key))

    def __repr__(self) -> str:
        return f"StoreFactory(store={self.config.name!r}, key={self.key!r})"


def _rebuild(
    kind: str,
    kwargs: dict[str, Any],
    key: Any,
    flags: tuple[bool, Callable[[bytes], Any] | None, bool],
) -> StoreFactory[Any]:
    evict, deserializer, prefetch = flags
    config = StoreConfig(kind, kwargs["name"], kwargs)
    factory: StoreFactory[Any] = StoreFactory(
        config, key, evict=evict, deserializer=deserializer, prefetch=prefetch
    )
    if prefetch:
        factory.start_prefetch()
    return factory


_pending_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    global _pending_lock
    # Another thread of the parent may have held it at fork time.
    _pending_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)
