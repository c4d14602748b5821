"""`StoreFactory`: the factory inside every proxy a store makes.

Face-neutral, like `proxystore.registry`: it imports neither `proxystore.aio`
nor `proxystore.store`, and both faces import it (`proxystore.store.factory`
re-exports it under its ProxyStore 0.4 path).

It carries the store's configuration, not the store: a process that never
initialised the store rebuilds it (and registers it under its name) on the
first resolve. The same factory resolves through the sync face when a proxy
is touched and through the async face under `await proxystore.aio.resolve`.

A factory made with ``prefetch=True`` starts fetching on the process-wide
background loop as soon as it is unpickled in a consumer; first use, sync or
async, then takes that fetch's result (or its error) instead of fetching
again. The pending fetch is never pickled, and a child forked while it was in
flight fetches for itself.

Unpickling a factory is the receiving side of an untrusted channel: it
builds, imports and connects nothing until the carried configuration passed
`proxystore.registry.admit` (a built-in or registered store class, declared
plain-data arguments, the registered store's identity for a known name, the
proxy policy for an unknown one), and looks the recorded target type up only
among modules already imported. See ``docs/security/proxies.md``.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from proxystore import policy, registry
from proxystore._shared import raw_bytes
from proxystore.exceptions import (
    NotAStoreProxyError,
    StoreTimeoutError,
    UntrustedProxyError,
    describe,
)
from proxystore.factory import Factory
from proxystore.metrics import OperationMetrics
from proxystore.proxy import Proxy, get_factory
from proxystore.registry import StoreConfig

if TYPE_CHECKING:
    # The background loop, asyncio and concurrent.futures are imported by
    # the first prefetch or async resolve: the sync face never needs them.
    import asyncio
    import concurrent.futures

    from proxystore import _background

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
        wait: The key is a future's: wait up to this many seconds for its
            value (``math.inf``: no limit) and raise the producer's
            `FutureError` if it set one. None for ordinary proxies.

    ProxyStore 0.4's form, ``StoreFactory(key, store_type, store_name,
    store_kwargs=None, *, evict=False, serialize=True, strict=False)``, still
    works with a `DeprecationWarning`: make proxies with
    ``store.proxy(key=...)`` instead.
    """

    __slots__ = (
        "_pending",
        "_resolve_stats",
        "_target_class",
        "config",
        "deserializer",
        "evict",
        "key",
        "prefetch",
        "strict",
        "target_type",
        "wait",
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
        wait: float | None = None,
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
        self.wait = wait
        self._target_class: type | object | None = _NOT_IMPORTED
        self._pending: _background.Prefetch[T] | None = None
        self._resolve_stats: OperationMetrics | None = None

    @property
    def target_class(self) -> type | None:
        """The stored object's class, if recorded and its module is already imported."""
        cls = self._target_class
        if cls is _NOT_IMPORTED:
            cls = find_type(self.target_type)
            if cls is not None or self.target_type is None:
                # Not found is not cached: its module may be imported later.
                self._target_class = cls
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
        from proxystore import _background

        with _pending_lock:
            if self._pending is not None and not self._pending.inherited:
                return
            pending = self._pending = _background.submit_held(
                self._prefetch, store=self.config.name, limiter=limiter
            )
        # A proxy dropped before its first use must not keep the slot.
        finalizer = weakref.finalize(self, pending.release)
        finalizer.atexit = False

    def resolve(self) -> T:
        """Return the object: the pending prefetch's result, or a fetch now.

        A fetch now goes through the store's sync face.

        Raises:
            MissingKeyError: If the key is not in the store.
            StoreTimeoutError: If a running prefetch did not finish within
                the wait timeout (`proxystore.store.utils.configure_prefetch`).
        """
        if self._pending is None:
            return self._fetch()  # no prefetch: the usual case, in one step
        pending = self._take_pending()
        if pending is None:
            return self._fetch()
        import concurrent.futures

        from proxystore import _background

        if not pending.future.done() and self._has_sync_face() and pending.claim():
            # Still queued behind other prefetches: fetching now is sooner.
            self._forget(pending)
            return self._fetch()
        if not pending.future.done() and _background.in_background_thread():
            # The thread this would block may be the one the fetch needs.
            return self._fetch()
        # A future's prefetch is waiting for its value: give it that long too.
        timeout = _background.wait_timeout() + (self.wait or 0.0)
        done, _ = concurrent.futures.wait(
            [pending.future], None if math.isinf(timeout) else timeout
        )
        if not done:
            raise StoreTimeoutError(
                f"store {self.config.name!r}",
                timeout,
                f"prefetch of key {self.key!r}",
            )
        if pending.future.cancelled() or not pending.started:
            return self._fetch()
        return self._result_of(pending)

    def resolve_async(self) -> None:
        """Start fetching the object in the background; return at once (0.4's API).

        The same as `start_prefetch`: the next `resolve` or `aresolve` takes
        the fetch's result. Async code that wants the object awaits
        `aresolve` instead. As in 0.4, nothing is started when the registered
        store already has the object cached (a non-strict factory).
        """
        if not self.strict and self.deserializer is None:
            store = registry.find(self.config.name, "sync")
            if store is not None and store.is_cached(self.key):
                return
        self.start_prefetch()

    @property
    def _obj_future(self) -> concurrent.futures.Future[T | None] | None:
        # ProxyStore 0.4's private attribute, read by code (and tests) written
        # for it: the background fetch resolve_async started, until taken.
        pending = self._take_pending()
        return None if pending is None else pending.future

    async def aresolve(self) -> T:
        """Return the object without blocking the running event loop.

        Awaits the pending prefetch if it has started, else fetches through
        the store's async face.

        Raises:
            MissingKeyError: If the key is not in the store.
        """
        pending = self._take_pending()
        if pending is None:
            return await self._afetch()
        import asyncio

        if not pending.future.done() and pending.claim():
            self._forget(pending)
            return await self._afetch()
        try:
            await asyncio.shield(asyncio.wrap_future(pending.future))
        except asyncio.CancelledError:
            if not pending.future.cancelled():
                raise
        except Exception:
            pass  # raised from `_result_of`, which also forgets the fetch
        if pending.future.cancelled() or not pending.started:
            return await self._afetch()
        return self._result_of(pending)

    def _take_pending(self) -> _background.Prefetch[T] | None:
        if self._pending is None:
            # Most proxies never prefetch: no lock for them. One that starts
            # a prefetch while this runs is fetched here as well, harmlessly.
            return None
        with _pending_lock:
            if self._pending is not None and self._pending.inherited:
                # Made before a fork: the thread that would finish it is
                # not in this process.
                self._pending = None
            return self._pending

    def _forget(self, pending: _background.Prefetch[T]) -> None:
        with _pending_lock:
            if self._pending is pending:
                self._pending = None

    def _result_of(self, pending: _background.Prefetch[T]) -> T:
        try:
            result = pending.future.result(0)
        except BaseException:
            # A failed prefetch is reported once; the next use fetches again.
            self._forget(pending)
            raise
        # Taken once (as in 0.4): a later resolve fetches, and the factory
        # does not keep the object alive.
        self._forget(pending)
        pending.release()
        return result  # type: ignore[return-value]

    def _has_sync_face(self) -> bool:
        # A store class registered only as an async face (a user's driver
        # without a generated twin) is fetched through that face instead.
        return registry.has_face(self.config.kind, "sync")

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
        stats = store.has_stats
        start = time.perf_counter() if stats else 0.0
        result: T
        if self.wait is not None:
            wait = None if math.isinf(self.wait) else self.wait
            result = store._resolve_future(self.key, wait, self.evict)
        else:
            result = store._resolve(
                self.key, self.deserializer, self.evict, self.strict
            )
        if stats:
            self._record_resolve(time.perf_counter() - start)
        return result

    async def _afetch(self) -> T:
        store = registry.lookup_or_build(self.config, "async")
        start = time.perf_counter() if store.has_stats else 0.0
        result: T
        if self.wait is not None:
            wait = None if math.isinf(self.wait) else self.wait
            result = await store._aresolve_future(self.key, wait, self.evict)
        else:
            result = await store._aresolve(
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
        from proxystore import _background

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
        if self.strict or self.wait is not None:
            # Only when set: proxies without them keep their pickled form.
            flags += (self.strict,)
        if self.wait is not None:
            flags += (float(self.wait),)
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


_MAX_KIND_LENGTH = 512
_MAX_TYPE_PATH_LENGTH = 1024


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
    # The class object comes from this process's own code, as with init_store.
    registry.register_store_class(store_type)
    kwargs = {**_plain_0_4_kwargs(given.get("store_kwargs") or {}), "name": name}
    # 0.4 carried LocalStore's dict in the factory; here that dict is the
    # process's objects for the name (never in a configuration or a proxy).
    kwargs.pop("store_dict", None)
    config = StoreConfig(registry.kind_of(store_type), name, kwargs)
    deserializer = None if options.get("serialize", True) else raw_bytes
    return config, key, deserializer


def _plain_0_4_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """0.4's store kwargs as a configuration holds them (plain data only).

    0.4 code passes the constructor's arguments: `GlobusEndpoints` or a list
    of `GlobusEndpoint`, `uuid.UUID` endpoints, path objects.
    """
    plain: dict[str, Any] = {}
    for name, value in kwargs.items():
        if isinstance(value, list | tuple) and value:
            if all(hasattr(item, "host_regex") for item in value):
                from proxystore.globus.endpoints import GlobusEndpoints

                value = GlobusEndpoints(value)
            else:
                value = [_plain_value(item) for item in value]
        plain[name] = _plain_value(value)
    return plain


def _plain_value(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    uuid = sys.modules.get("uuid")  # not imported: value is no UUID
    if uuid is not None and isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _rebuild(
    kind: str,
    kwargs: dict[str, Any],
    key: Any,
    flags: tuple[Any, ...],
) -> StoreFactory[Any]:
    # Everything here arrived from whoever sent the proxy: check it all
    # before anything can build, import, connect or prefetch.
    # A configuration admitted before (most proxies carry one) is not
    # checked again; flags and key always are.
    config = registry.admitted(kind, kwargs)
    checked = config is not None
    if config is None:
        config = _carried_config(kind, kwargs)
    evict, deserializer, prefetch, target_type, strict, wait = _carried_flags(
        flags, config.name
    )
    if not _plain_key(key):
        raise UntrustedProxyError(
            f"a proxy of store {config.name!r} carries a key of type "
            f"{type(key).__name__}, not a str, int, bytes or tuple of those"
        )
    if not checked:
        registry.admit(config)
    # `StoreFactory.__init__`'s assignments without its argument handling
    # (everything is checked above): this runs for every proxy unpickled.
    factory: StoreFactory[Any] = _new_factory(StoreFactory)
    factory.config = config
    factory.key = key
    factory.evict = evict
    factory.deserializer = deserializer
    factory.prefetch = prefetch
    factory.target_type = target_type
    factory.strict = strict
    factory.wait = wait
    factory._target_class = _NOT_IMPORTED
    factory._pending = None
    factory._resolve_stats = None
    if prefetch:
        factory.start_prefetch()
    return factory


# Pickled proxies name `proxystore.store.factory._rebuild`, the path the
# safe-unpickling allowlists admit (docs/security/proxies.md); that module
# re-exports it, so moving the code changed nothing on the wire.
_rebuild.__module__ = "proxystore.store.factory"


def _carried_config(kind: Any, kwargs: Any) -> StoreConfig:
    if type(kind) is not str or not 0 < len(kind) <= _MAX_KIND_LENGTH:
        raise UntrustedProxyError(
            f"a proxy names store class {describe(kind)}, not a dotted path"
        )
    name = kwargs.get("name") if type(kwargs) is dict else None
    if type(name) is not str or not name:
        raise UntrustedProxyError(
            f"a proxy of store class {describe(kind)} carries configuration "
            f"{describe(kwargs)}, not a dict with a str name"
        )
    return StoreConfig(kind, name, kwargs)


_KEY_PARTS = (str, int, bytes)


def _plain_key(key: Any) -> bool:
    # Keys are plain or tuples of plain parts (GlobusKey, EndpointKey).
    kind = type(key)
    if kind in _KEY_PARTS:
        return True
    return (
        issubclass(kind, tuple)
        and len(key) <= 8
        and all(type(part) in _KEY_PARTS for part in key)
    )


def _where(name: str) -> str:
    return f"a proxy of store {name!r}"


def _carried_flags(
    flags: Any, name: str
) -> tuple[bool, Callable[[bytes], Any] | None, bool, str | None, bool, float | None]:
    # `where` is formatted only on the way to an error: this runs for every
    # proxy unpickled.
    if type(flags) is tuple and len(flags) == 4:
        # The usual proxy: no eviction, deserializer or prefetch; checked by
        # identity (nothing carried is compared with `==`).
        evict, deserializer, prefetch, target_type = flags
        if (
            evict is False
            and deserializer is None
            and prefetch is False
            and (
                target_type is None
                or (
                    type(target_type) is str
                    and len(target_type) <= _MAX_TYPE_PATH_LENGTH
                )
            )
        ):
            return False, None, False, target_type, False, None
    if type(flags) is not tuple or len(flags) not in (4, 5, 6):
        raise UntrustedProxyError(
            f"{_where(name)} carries malformed flags {describe(flags)}"
        )
    evict, deserializer, prefetch, target_type, *extra = flags
    strict = extra[0] if extra else False
    wait = extra[1] if len(extra) > 1 else None
    if wait is not None and (type(wait) is not float or not wait >= 0):
        raise UntrustedProxyError(
            f"{_where(name)} carries future wait {describe(wait)}, not seconds >= 0"
        )
    if (
        type(evict) is not bool
        or type(prefetch) is not bool
        or type(strict) is not bool
    ):
        raise UntrustedProxyError(
            f"{_where(name)} carries non-bool evict/prefetch/strict flags"
        )
    if target_type is not None and (
        type(target_type) is not str or len(target_type) > _MAX_TYPE_PATH_LENGTH
    ):
        raise UntrustedProxyError(
            f"{_where(name)} carries target type {describe(target_type)}, "
            "not a type path"
        )
    if deserializer is not None and deserializer is not raw_bytes:
        # type(), not isinstance(): a proxy answers isinstance for its target.
        if type(deserializer) is Proxy or not callable(deserializer):
            raise UntrustedProxyError(
                f"{_where(name)} carries deserializer {describe(deserializer)}, "
                "which is a proxy or not callable"
            )
        if not policy.current().allows_deserializer(deserializer):
            raise UntrustedProxyError(
                f"{_where(name)} carries deserializer {describe(deserializer)}; the "
                "strict proxy policy accepts only deserializers given to "
                "proxystore.policy.configure(deserializers=...)"
            )
    return evict, deserializer, prefetch, target_type, strict, wait


_pending_lock = threading.Lock()
_NOT_IMPORTED = object()
_new_factory = object.__new__


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


def find_type(path: str | None) -> type | None:
    """Return the class a `type_path` string names, if its module is imported.

    Only modules already in `sys.modules` are searched, through their and
    their classes' namespaces (no module ``__getattr__``, no descriptor):
    a received proxy never makes this process import anything.
    """
    if type(path) is not str:
        return None
    module_name, _, qualname = path.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        if not isinstance(found, (types.ModuleType, type)):
            return None
        found = found.__dict__.get(part)
    return found if isinstance(found, type) else None


def _new_lock_after_fork() -> None:
    global _pending_lock
    # Another thread of the parent may have held it at fork time.
    _pending_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def store_of_proxy(proxy: Any, face: registry.Face) -> Any:
    """Return the `face` of the store a proxy's factory names, building it if needed.

    Raises:
        NotAStoreProxyError: If the proxy was not made by a store.
    """
    factory = get_factory(proxy)
    if not isinstance(factory, StoreFactory):
        raise NotAStoreProxyError(factory)
    return registry.lookup_or_build(factory.config, face)
