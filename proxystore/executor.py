"""`StoreExecutor`: any `concurrent.futures.Executor`, with large data passed by proxy.

Arguments that match a policy are put in a store and sent as proxies (a few
hundred bytes each), resolved where the task runs; results that match the
result policy come back the same way. What the executor created is evicted
once it is no longer needed: argument objects when their task finishes,
result objects when the caller first uses the result proxy (``evict=True``),
or, with ``result_as="value"``, when the executor fetched the value for the
caller (the caller's future then holds the object itself).

The wrapped executor is any `concurrent.futures.Executor` (thread and
process pools, ``distributed.Client.get_executor()``) or one of Parsl's
executors (``ThreadPoolExecutor``, ``HighThroughputExecutor``, ... as loaded
by a ``DataFlowKernel``: ``dfk.executors[label]``), whose ``submit`` takes a
resource specification first; tasks then go straight to the executor, past
the kernel's dependency handling.

Policies are picklable callables ``obj -> bool``: `ProxyAlways`,
`ProxyNever`, `ProxyTypes` and `ProxySize`, or any function of yours that
the workers can import.

`AsyncStoreExecutor` (in `proxystore.aio.executor`) is the async twin, for
asyncio services: ``await executor.submit(...)``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import sys
from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

from proxystore import _background, registry
from proxystore.exceptions import ConfigurationError
from proxystore.lifetimes import ContextLifetime
from proxystore.proxy import Proxy, extract, get_factory
from proxystore.registry import StoreConfig
from proxystore.store_factory import StoreFactory

T = TypeVar("T")

logger = logging.getLogger(__name__)

Policy = Callable[[Any], bool]

ResultAs = Literal["proxy", "value"]
"""What the caller gets for a result that travelled by proxy."""

_RESULT_AS = ("proxy", "value")


class ProxyAlways:
    """Proxy every object."""

    def __call__(self, obj: Any) -> bool:
        """Whether to proxy `obj`: unless it already is a proxy."""
        return type(obj) is not Proxy


class ProxyNever:
    """Proxy nothing."""

    def __call__(self, obj: Any) -> bool:
        """Whether to proxy `obj`: never."""
        return False


class ProxyTypes:
    """Proxy instances of these types.

    Args:
        types: The types.
    """

    def __init__(self, *types: type) -> None:
        if not types or not all(isinstance(kind, type) for kind in types):
            raise ConfigurationError(
                f"ProxyTypes takes one or more types, got {types!r}"
            )
        self.types = types

    def __call__(self, obj: Any) -> bool:
        """Whether to proxy `obj`: an instance of `types`, not a proxy."""
        return type(obj) is not Proxy and isinstance(obj, self.types)


class ProxySize:
    """Proxy objects of at least `min_bytes` (as `size_of` counts them).

    Args:
        min_bytes: The threshold.
    """

    def __init__(self, min_bytes: int) -> None:
        if (
            isinstance(min_bytes, bool)
            or not isinstance(min_bytes, int)
            or min_bytes < 0
        ):
            raise ConfigurationError(
                f"ProxySize min_bytes must be an int >= 0, got {min_bytes!r}"
            )
        self.min_bytes = min_bytes

    def __call__(self, obj: Any) -> bool:
        """Whether to proxy `obj`: `size_of` it is `min_bytes` or more."""
        return type(obj) is not Proxy and size_of(obj) >= self.min_bytes


def size_of(obj: Any) -> int:
    """Return an object's size cheaply: ``nbytes``, a bytes' length, else getsizeof."""
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj)
    return sys.getsizeof(obj)


class _Wrapping:
    """What `StoreExecutor` and `AsyncStoreExecutor` share: checked settings."""

    _SYNC_FACE: ClassVar[bool] = True

    def __init__(
        self,
        executor: concurrent.futures.Executor,
        store: Any,
        should_proxy: Policy | None = None,
        should_proxy_result: Policy | None = None,
        result_as: ResultAs = "proxy",
    ) -> None:
        who = type(self).__name__
        self._parsl = _check_executor(executor, who)
        if getattr(store, "_IS_SYNC", None) is not self._SYNC_FACE:
            face = (
                "sync (proxystore.store" if self._SYNC_FACE else "async (proxystore.aio"
            )
            raise ConfigurationError(
                f"{who} needs a store of the {face}...) face, "
                f"got {type(store).__name__}"
            )
        self.executor: Any = executor
        self.store = store
        self.should_proxy, self.should_proxy_result = _check_policies(
            should_proxy, should_proxy_result
        )
        self.result_as: ResultAs = _check_result_as(result_as)


class StoreExecutor(_Wrapping, concurrent.futures.Executor):
    """Wrap an executor so arguments and results matching a policy travel as proxies.

    Args:
        executor: Any `concurrent.futures.Executor` (thread or process pool,
            a Dask client's executor, ...), shut down with this one; or a
            started Parsl executor, which its ``DataFlowKernel`` shuts down
            (``dfk.cleanup()``), not this one.
        store: The (sync-face) store the proxied objects go to; workers
            reach it through its configuration, so it must be reachable
            from them (not a `LocalStore` for a process pool).
        should_proxy: Which arguments to proxy (default: `ProxySize` of
            100 kB).
        should_proxy_result: Which results to proxy (default: the same
            policy). Must be picklable for process pools.
        result_as: What the caller's future holds for a result that
            travelled by proxy. ``"proxy"`` (the default, as in ProxyStore
            1.x): the proxy, unresolved; the future completes without a
            fetch, and the bytes move only if and where the result is used
            (passed on to another task, the proxy is resolved on that
            task's worker, never here). ``"value"``: the object itself,
            fetched by the executor (in the background loop's worker
            threads, not the executor's callback thread) before the future
            completes. Either way the store's copy is evicted by that first
            fetch.

    Raises:
        ConfigurationError: If a policy is not callable, or `result_as` is
            neither ``"proxy"`` nor ``"value"``.
    """

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Submit `fn(*args, **kwargs)`; matching arguments go as proxies.

        The arguments this call put in the store are evicted when the task
        finishes (successfully or not).
        """
        lifetime = ContextLifetime()
        try:
            args = tuple(self._wrap(arg, lifetime) for arg in args)
            kwargs = {name: self._wrap(arg, lifetime) for name, arg in kwargs.items()}
            task = _Task(fn, self.store.store_config, self.should_proxy_result)
            future = _submit_task(self.executor, self._parsl, task, args, kwargs)
        except BaseException:
            lifetime.close()
            raise
        outer: concurrent.futures.Future[T] = concurrent.futures.Future()
        # The caller sees the result only after the arguments were evicted.
        future.add_done_callback(
            lambda inner: _settle(inner, outer, lifetime, self.result_as)
        )
        outer.add_done_callback(lambda done: done.cancelled() and future.cancel())
        return outer

    def _wrap(self, obj: Any, lifetime: ContextLifetime) -> Any:
        if not self.should_proxy(obj):
            return obj
        return self.store.proxy(obj, lifetime=lifetime)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down (a Parsl one is left to its kernel)."""
        if not self._parsl:
            self.executor.shutdown(wait=wait, cancel_futures=cancel_futures)


def _check_executor(executor: Any, who: str) -> bool:
    """Refuse what is not an executor; return whether it is one of Parsl's."""
    parsl = _is_parsl_executor(executor)
    if not parsl and not isinstance(executor, concurrent.futures.Executor):
        raise ConfigurationError(
            f"{who} wraps a concurrent.futures.Executor or a Parsl "
            f"executor, got {type(executor).__name__}"
        )
    return parsl


def _check_policies(
    should_proxy: Policy | None, should_proxy_result: Policy | None
) -> tuple[Policy, Policy]:
    """Return the argument and result policies, defaults filled in, checked."""
    should_proxy = ProxySize(100_000) if should_proxy is None else should_proxy
    if should_proxy_result is None:
        should_proxy_result = should_proxy
    for name, policy in (
        ("should_proxy", should_proxy),
        ("should_proxy_result", should_proxy_result),
    ):
        if not callable(policy):
            raise ConfigurationError(f"{name} must be callable, got {policy!r}")
    return should_proxy, should_proxy_result


def _check_result_as(result_as: Any) -> ResultAs:
    """Refuse a `result_as` other than ``"proxy"`` or ``"value"``."""
    if result_as not in _RESULT_AS:
        raise ConfigurationError(
            f'result_as must be "proxy" or "value", got {result_as!r}'
        )
    return result_as  # type: ignore[no-any-return]


def _submit_task(
    executor: Any,
    parsl: bool,
    task: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> concurrent.futures.Future[Any]:
    """Hand `task` to the wrapped executor."""
    if parsl:
        # Parsl's submit takes a resource specification first.
        future: concurrent.futures.Future[Any] = executor.submit(
            task, {}, *args, **kwargs
        )
    else:
        future = executor.submit(task, *args, **kwargs)
    return future


def _discard_result(outcome: Any) -> None:
    """Evict a task's proxied result nobody will use (its caller cancelled).

    Blocking (the sync face), but only a delete.
    """
    if type(outcome) is not _ProxiedResult:
        return
    factory = _store_factory(outcome.proxy)
    try:
        registry.lookup_or_build(factory.config, "sync").evict(factory.key)
    except Exception as err:
        logger.warning(
            "could not evict the result %r of a cancelled task from store %r: %s",
            factory.key,
            factory.config.name,
            err,
        )


def _store_factory(proxy: Any) -> StoreFactory[Any]:
    factory = get_factory(proxy)
    assert isinstance(factory, StoreFactory)
    return factory


def _is_parsl_executor(executor: Any) -> bool:
    """Whether `executor` is one of Parsl's (never imports Parsl)."""
    base = sys.modules.get("parsl.executors.base")
    kind = getattr(base, "ParslExecutor", None)
    return isinstance(kind, type) and isinstance(executor, kind)


def _settle(
    inner: concurrent.futures.Future[Any],
    outer: concurrent.futures.Future[Any],
    lifetime: ContextLifetime,
    result_as: ResultAs,
) -> None:
    """Evict a task's arguments, then pass its outcome on to the caller's future."""
    lifetime.close()
    if inner.cancelled():
        outer.cancel()
        return
    error = inner.exception()
    if error is not None:
        _deliver(outer, False, error)
        return
    result = inner.result()
    if outer.done():  # cancelled by the caller while the task ran
        _discard_result(result)
    elif type(result) is not _ProxiedResult:
        _deliver(outer, True, result)
    elif result_as == "proxy":
        if not _deliver(outer, True, result.proxy):
            _discard_result(result)
    else:
        # Fetched off this thread: it may be an engine's event loop (Dask).
        fetch = _background.run_on_loop(_fetch_value(result.proxy))
        fetch.add_done_callback(lambda done: _deliver_fetched(done, outer))


async def _fetch_value(proxy: Any) -> Any:
    """Resolve `proxy` through its store's sync face in a background worker thread."""
    return await _background.run_blocking(lambda: extract(proxy))


def _deliver_fetched(
    fetch: concurrent.futures.Future[Any], outer: concurrent.futures.Future[Any]
) -> None:
    if fetch.cancelled():  # the background loop stopped (interpreter exit)
        outer.cancel()
        return
    error = fetch.exception()
    if error is None:
        _deliver(outer, True, fetch.result())
    else:
        _deliver(outer, False, error)


def _deliver(outer: concurrent.futures.Future[Any], ok: bool, value: Any) -> bool:
    """Complete `outer` unless the caller cancelled it meanwhile; say which."""
    try:
        if ok:
            outer.set_result(value)
        else:
            outer.set_exception(value)
    except concurrent.futures.InvalidStateError:
        return False
    return True


class _Task:
    """Run the user's function where the executor puts it; proxy its result."""

    def __init__(
        self, fn: Callable[..., Any], config: StoreConfig, should_proxy: Policy
    ) -> None:
        self.fn = fn
        self.config = config
        self.should_proxy = should_proxy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.fn(*args, **kwargs)
        if not self.should_proxy(result):
            return result
        store = registry.lookup_or_build(self.config, "sync")
        # Evicted by its first use in the caller: nobody else holds it.
        # Boxed: an engine must not touch it on the way (Parsl asks a
        # top-level result whether it is callable, then hashes it).
        return _ProxiedResult(store.proxy(result, evict=True))


class _ProxiedResult(NamedTuple):
    """A task's result proxy on its way back, unboxed by `_settle`."""

    proxy: Any
