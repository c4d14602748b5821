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
import importlib
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from proxystore import _background, registry
from proxystore._shared import raw_bytes
from proxystore.exceptions import StoreTimeoutError
from proxystore.factory import Factory
from proxystore.metrics import OperationMetrics
from proxystore.proxy import Proxy
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
        target_type: ``"module:qualname"`` of the stored object's class, so
            `isinstance` checks on an unresolved proxy (by the consumer, or by
            a framework such as Dask inspecting task arguments) answer
            without fetching the object.
        strict: Resolve to the store's current version of the key, never an
            older cached one (ProxyStore 0.4's ``strict``).

    ProxyStore 0.4's form, ``StoreFactory(key, store_type, store_name,
    store_kwargs=None, *, evict=False, serialize=True, strict=False)``, still
    works with a `DeprecationWarning`: make proxies with
    ``store.proxy(key=...)`` instead.
    """

    __slots__ = (
        "_pending",
        "_pending_pid",
        "_resolve_stats",
        "_target_class",
        "_ticket",
        "config",
        "deserializer",
        "evict",
        "key",
        "prefetch",
        "strict",
        "target_type",
    )

    def __init__(
        self,
        config: StoreConfig,
        key: Any,
        *legacy: Any,
        evict: bool = False,
        deserializer: Callable[[bytes], Any] | None = None,
        prefetch: bool = False,
        target_type: str | None = None,
        strict: bool = False,
        **legacy_options: Any,
    ) -> None:
        if not isinstance(config, StoreConfig):
            config, key, deserializer = _from_0_4(config, key, legacy, legacy_options)
        elif legacy or legacy_options:
            unexpected = ", ".join(map(repr, legacy_options)) or "positional"
            raise TypeError(f"StoreFactory got unexpected arguments: {unexpected}")
        self.config = config
        self.key = key
        self.evict = evict
        self.deserializer = deserializer
        self.prefetch = prefetch
        self.target_type = target_type
        self.strict = strict
        self._target_class: type | object | None = _NOT_IMPORTED
        self._pending: concurrent.futures.Future[T | None] | None = None
        self._ticket: _background.Ticket | None = None
        self._pending_pid = 0
        self._resolve_stats: OperationMetrics | None = None

    @property
    def target_class(self) -> type | None:
        """The stored object's class, if it was recorded and imports here."""
        cls = self._target_class
        if cls is _NOT_IMPORTED:
            cls = self._target_class = import_type(self.target_type)
        return cls  # type: ignore[return-value]

    def start_prefetch(self, limiter: asyncio.Semaphore | None = None) -> None:
        """Start fetching on the background loop, unless a fetch is pending.

        Returns at once. The fetch waits its turn under the store's limit
        (`proxystore.store.utils.configure_prefetch`), and the next `resolve`
        or `aresolve` takes its result, or does the fetch itself if it
        has not started yet.

        Args:
            limiter: Also hold this semaphore until the result is used.
        """
        with _pending_lock:
            if self._pending is not None and self._pending_pid == os.getpid():
                return
            self._pending, ticket = _background.submit_held(
                self._prefetch, store=self.config.name, limiter=limiter
            )
            self._ticket = ticket
            self._pending_pid = os.getpid()
        # A proxy dropped before its first use must not keep the slot.
        finalizer = weakref.finalize(self, ticket.release)
        finalizer.atexit = False

    def resolve(self) -> T:
        """Return the object: the pending prefetch's result, or a fetch now.

        A fetch now goes through the store's sync face.

        Raises:
            MissingKeyError: If the key is not in the store.
            StoreTimeoutError: If a running prefetch did not finish within
                the wait timeout (`proxystore.store.utils.configure_prefetch`).
        """
        pending, ticket = self._take_pending()
        if pending is None or ticket is None:
            return self._fetch()
        if not pending.done() and self._has_sync_face() and ticket.claim():
            # Still queued behind other prefetches: fetching now is sooner.
            self._forget(pending)
            return self._fetch()
        if not pending.done() and _background.in_background_thread():
            # The thread this would block may be the one the fetch needs.
            return self._fetch()
        done, _ = concurrent.futures.wait([pending], _background.wait_timeout())
        if not done:
            raise StoreTimeoutError(
                f"store {self.config.name!r}",
                _background.wait_timeout(),
                f"prefetch of key {self.key!r}",
            )
        if pending.cancelled() or not ticket.started:
            return self._fetch()
        return self._result_of(pending, ticket)

    def resolve_async(self) -> None:
        """Start fetching the object in the background; return at once (0.4's API).

        The same as `start_prefetch`: the next `resolve` or `aresolve` takes
        the fetch's result. Async code that wants the object awaits
        `aresolve` instead.
        """
        self.start_prefetch()

    async def aresolve(self) -> T:
        """Return the object without blocking the running event loop.

        Awaits the pending prefetch if it has started, else fetches through
        the store's async face.

        Raises:
            MissingKeyError: If the key is not in the store.
        """
        pending, ticket = self._take_pending()
        if pending is None or ticket is None:
            return await self._afetch()
        if not pending.done() and ticket.claim():
            self._forget(pending)
            return await self._afetch()
        try:
            await asyncio.shield(asyncio.wrap_future(pending))
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise
        except Exception:
            pass  # raised from `_result_of`, which also forgets the fetch
        if pending.cancelled() or not ticket.started:
            return await self._afetch()
        return self._result_of(pending, ticket)

    def _take_pending(
        self,
    ) -> tuple[concurrent.futures.Future[T | None] | None, _background.Ticket | None]:
        with _pending_lock:
            if self._pending is not None and self._pending_pid != os.getpid():
                # Made before a fork: the thread that would finish it is
                # not in this process.
                self._pending = self._ticket = None
            return self._pending, self._ticket

    def _forget(self, pending: concurrent.futures.Future[T | None]) -> None:
        with _pending_lock:
            if self._pending is pending:
                self._pending = self._ticket = None

    def _result_of(
        self,
        pending: concurrent.futures.Future[T | None],
        ticket: _background.Ticket,
    ) -> T:
        try:
            result = pending.result(0)
        except Exception:
            # A failed prefetch is reported once; the next use fetches again.
            self._forget(pending)
            raise
        ticket.release()
        return result  # type: ignore[return-value]

    def _has_sync_face(self) -> bool:
        # A store class registered only as an async face (a user's driver
        # without a generated twin) is fetched through that face instead.
        cls = registry.import_class(self.config.face_kind("sync"))
        return bool(getattr(cls, "_IS_SYNC", False))

    def get_store(self) -> Any:
        """Deprecated (0.4): the sync store; use `proxystore.store.get_store(proxy)`."""
        warnings.warn(
            "StoreFactory.get_store() is ProxyStore 0.4's API; use "
            "proxystore.store.get_store(proxy)",
            DeprecationWarning,
            stacklevel=2,
        )
        return registry.lookup_or_build(self.config, "sync")

    @property
    def resolve_stats(self) -> OperationMetrics | None:
        """Timings of this factory's fetches, if its store keeps ``stats``.

        ProxyStore 0.4's per-proxy stats: `Store.stats(proxy)` reports them
        as ``resolve``. Never pickled.
        """
        return self._resolve_stats

    def _fetch(self) -> T:
        store = registry.lookup_or_build(self.config, "sync")
        start = time.perf_counter()
        result: T = store._resolve(self.key, self.deserializer, self.evict, self.strict)
        if store.has_stats:
            self._record_resolve(time.perf_counter() - start)
        return result

    async def _afetch(self) -> T:
        store = registry.lookup_or_build(self.config, "async")
        start = time.perf_counter()
        result: T = await store._aresolve(
            self.key, self.deserializer, self.evict, self.strict
        )
        if store.has_stats:
            self._record_resolve(time.perf_counter() - start)
        return result

    def _record_resolve(self, elapsed: float) -> None:
        if self._resolve_stats is None:
            self._resolve_stats = OperationMetrics()
        self._resolve_stats.add(elapsed, 0)

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
        flags: tuple[Any, ...] = (
            self.evict,
            self.deserializer,
            self.prefetch,
            self.target_type,
        )
        if self.strict:
            # Only when set: proxies without it keep their pickled form.
            flags += (True,)
        return (_rebuild, (config.kind, config.kwargs, self.key, flags))

    def __dask_tokenize__(self) -> object:
        """Identify the object by store and key (what Dask hashes for task keys)."""
        return ("StoreFactory", self.config.name, repr(self.key), self.evict)

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


def _from_0_4(
    key: Any, store_type: Any, args: tuple[Any, ...], options: dict[str, Any]
) -> tuple[StoreConfig, Any, Callable[[bytes], Any] | None]:
    """Read 0.4's ``StoreFactory(key, store_type, store_name, store_kwargs)``."""
    names = ("store_name", "store_kwargs")
    given = dict(zip(names, args, strict=False))
    unknown = set(options) - {*names, "serialize"}
    if len(args) > len(names) or unknown or not isinstance(store_type, type):
        raise TypeError(
            "StoreFactory takes (config, key, ...) or 0.4's (key, store_type, "
            "store_name, store_kwargs=None, *, evict, serialize, strict)"
        )
    given.update((name, options[name]) for name in names if name in options)
    name = given.get("store_name")
    if not isinstance(name, str):
        raise TypeError(f"StoreFactory: store_name must be a str, got {name!r}")
    warnings.warn(
        "StoreFactory(key, store_type, store_name, store_kwargs) is ProxyStore "
        "0.4's API; use store.proxy(key=...) or store.proxy_from_key(key)",
        DeprecationWarning,
        stacklevel=3,
    )
    kwargs = {**(given.get("store_kwargs") or {}), "name": name}
    config = StoreConfig(registry.kind_of(store_type), name, kwargs)
    deserializer = None if options.get("serialize", True) else raw_bytes
    return config, key, deserializer


def _rebuild(
    kind: str,
    kwargs: dict[str, Any],
    key: Any,
    flags: tuple[Any, ...],
) -> StoreFactory[Any]:
    evict, deserializer, prefetch, target_type, *extra = flags
    strict = bool(extra[0]) if extra else False
    config = StoreConfig(kind, kwargs["name"], kwargs)
    factory: StoreFactory[Any] = StoreFactory(
        config,
        key,
        evict=evict,
        deserializer=deserializer,
        prefetch=prefetch,
        target_type=target_type,
        strict=strict,
    )
    if prefetch:
        factory.start_prefetch()
    return factory


_pending_lock = threading.Lock()
_NOT_IMPORTED = object()


def type_path(obj: Any) -> str | None:
    """Return ``"module:qualname"`` of an object's class, if importable by name.

    None for classes defined inside functions, for proxies (whose class is
    only known once resolved) and for objects that report another class
    than their type.
    """
    cls = type(obj)
    if cls is Proxy or obj.__class__ is not cls:
        return None
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        return None
    return f"{cls.__module__}:{qualname}"


def import_type(path: str | None) -> type | None:
    """Import a class from a `type_path` string; None if it does not import."""
    if path is None:
        return None
    module_name, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:
        return None
    return found if isinstance(found, type) else None


def _new_lock_after_fork() -> None:
    global _pending_lock
    # Another thread of the parent may have held it at fork time.
    _pending_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)
