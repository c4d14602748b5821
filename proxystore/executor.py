"""`StoreExecutor`: any `concurrent.futures.Executor`, with large data passed by proxy.

Arguments that match a policy are put in a store and sent as proxies (a few
hundred bytes each), resolved where the task runs; results that match the
result policy come back the same way. What the executor created is evicted
once it is no longer needed: argument objects when their task finishes,
result objects when the caller first uses the result proxy (``evict=True``).

The wrapped executor is any `concurrent.futures.Executor` (thread and
process pools, ``distributed.Client.get_executor()``) or one of Parsl's
executors (``ThreadPoolExecutor``, ``HighThroughputExecutor``, ... as loaded
by a ``DataFlowKernel``: ``dfk.executors[label]``), whose ``submit`` takes a
resource specification first; tasks then go straight to the executor, past
the kernel's dependency handling.

Policies are picklable callables ``obj -> bool``: `ProxyAlways`,
`ProxyNever`, `ProxyTypes` and `ProxySize`, or any function of yours that
the workers can import.
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from proxystore import registry
from proxystore.exceptions import ConfigurationError
from proxystore.lifetimes import ContextLifetime
from proxystore.proxy import Proxy
from proxystore.registry import StoreConfig

T = TypeVar("T")

Policy = Callable[[Any], bool]


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


class StoreExecutor(concurrent.futures.Executor):
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

    Raises:
        ConfigurationError: If a policy is not callable.
    """

    def __init__(
        self,
        executor: concurrent.futures.Executor,
        store: Any,
        should_proxy: Policy | None = None,
        should_proxy_result: Policy | None = None,
    ) -> None:
        self._parsl = _is_parsl_executor(executor)
        if not self._parsl and not isinstance(executor, concurrent.futures.Executor):
            raise ConfigurationError(
                f"StoreExecutor wraps a concurrent.futures.Executor or a Parsl "
                f"executor, got {type(executor).__name__}"
            )
        if getattr(store, "_IS_SYNC", None) is not True:
            raise ConfigurationError(
                "StoreExecutor needs a store of the sync face "
                f"(proxystore.store...), got {type(store).__name__}"
            )
        should_proxy = ProxySize(100_000) if should_proxy is None else should_proxy
        if should_proxy_result is None:
            should_proxy_result = should_proxy
        for name, policy in (
            ("should_proxy", should_proxy),
            ("should_proxy_result", should_proxy_result),
        ):
            if not callable(policy):
                raise ConfigurationError(f"{name} must be callable, got {policy!r}")
        self.executor: Any = executor
        self.store = store
        self.should_proxy = should_proxy
        self.should_proxy_result = should_proxy_result

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
            if self._parsl:
                # Parsl's submit takes a resource specification first.
                future = self.executor.submit(task, {}, *args, **kwargs)
            else:
                future = self.executor.submit(task, *args, **kwargs)
        except BaseException:
            lifetime.close()
            raise
        outer: concurrent.futures.Future[T] = concurrent.futures.Future()
        # The caller sees the result only after the arguments were evicted.
        future.add_done_callback(lambda inner: _settle(inner, outer, lifetime))
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


def _is_parsl_executor(executor: Any) -> bool:
    """Whether `executor` is one of Parsl's (never imports Parsl)."""
    base = sys.modules.get("parsl.executors.base")
    kind = getattr(base, "ParslExecutor", None)
    return isinstance(kind, type) and isinstance(executor, kind)


def _settle(
    inner: concurrent.futures.Future[Any],
    outer: concurrent.futures.Future[Any],
    lifetime: ContextLifetime,
) -> None:
    """Evict a task's arguments, then pass its outcome on to the caller's future."""
    lifetime.close()
    if outer.done():
        return
    if inner.cancelled():
        outer.cancel()
        return
    error = inner.exception()
    if error is not None:
        outer.set_exception(error)
    else:
        result = inner.result()
        if type(result) is _ProxiedResult:
            result = result.proxy
        outer.set_result(result)


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
