"""`AsyncStoreExecutor`: `StoreExecutor` for asyncio services.

``await executor.submit(fn, *args)`` runs ``fn`` on the wrapped executor (any
`concurrent.futures.Executor`, a Dask client's ``get_executor()``, or a
Parsl executor loaded by a ``DataFlowKernel``) and returns its result
without blocking the event loop on I/O: arguments go to the store through
its async face, the task's future is awaited (`asyncio.wrap_future`), and a
result to fetch is fetched through the async face too. The wrapped
executor's own ``submit`` is called on the loop: quick for thread and
process pools (they pickle in their own threads); Dask and Parsl serialize
the task there, which is small when its large arguments are proxies (with
`ProxyNever` and large arguments, expect that cost on the loop).

As with `proxystore.executor.StoreExecutor`, arguments matching
`should_proxy` travel as proxies and are evicted when their task finishes
(before ``submit`` returns); results matching `should_proxy_result` are put
in the store by the worker and come back as a proxy made with
``evict=True`` (evicted by its first use: ``await proxystore.aio.resolve(p)``
or a plain touch) or, with ``result_as="value"``, fetched (and so evicted)
before ``submit`` returns. Cancelling ``submit`` cancels a task that has
not started; a task already running finishes in its worker, then its
arguments and proxied result are evicted.

Hand-written, like the sync `StoreExecutor` (the two differ in more than
the generator's token rules: futures and callbacks there, awaits here);
policies and the worker-side task are shared with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from typing_extensions import Self

from proxystore.aio.resolve import resolve
from proxystore.executor import (
    _discard_result,
    _ProxiedResult,
    _submit_task,
    _Task,
    _Wrapping,
)
from proxystore.lifetimes import ContextLifetime

T = TypeVar("T")


class AsyncStoreExecutor(_Wrapping):
    """Run tasks on an executor from asyncio code, large data passed by proxy.

    Args:
        executor: What `StoreExecutor` wraps: any
            `concurrent.futures.Executor` (shut down with this one) or a
            started Parsl executor (shut down by its ``DataFlowKernel``).
        store: The async-face store (`proxystore.aio...`) the proxied
            objects go to; workers reach it through its configuration
            (its sync face), so it must be reachable from them.
        should_proxy: Which arguments to proxy (default: `ProxySize` of
            100 kB).
        should_proxy_result: Which results to proxy (default: the same
            policy).
        result_as: ``"proxy"`` (the default, as `StoreExecutor`): a proxied
            result is returned unresolved; ``"value"``: it is fetched
            (without blocking the loop) and the object itself returned.

    Raises:
        ConfigurationError: If `executor` is not an executor, `store` not an
            async-face store, a policy not callable, or `result_as` unknown.

    Example:
        ```python
        from concurrent.futures import ProcessPoolExecutor
        from proxystore.aio.executor import AsyncStoreExecutor

        async with AsyncStoreExecutor(ProcessPoolExecutor(), store) as ex:
            result = await ex.submit(simulate, big_array)
            results = await asyncio.gather(*(ex.submit(f, x) for x in xs))
        ```
    """

    _SYNC_FACE = False

    async def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the executor and return its result.

        Matching arguments go as proxies and are evicted when the task
        finishes (successfully or not), before this returns. For many tasks
        at once, gather several calls or make tasks of them.

        Raises:
            Exception: What `fn` raised (as the wrapped executor reports
                it), or a store error while proxying or fetching.
        """
        lifetime = ContextLifetime()
        try:
            args = tuple([await self._wrap(arg, lifetime) for arg in args])
            kwargs = {
                name: await self._wrap(arg, lifetime) for name, arg in kwargs.items()
            }
            task = _Task(fn, self.store.store_config, self.should_proxy_result)
            inner = _submit_task(self.executor, self._parsl, task, args, kwargs)
        except BaseException:
            await lifetime.aclose()
            raise
        try:
            outcome = await asyncio.wrap_future(inner)
        except asyncio.CancelledError:
            if inner.cancel():  # it never started
                await lifetime.aclose()
            else:
                # Running in its worker: clean up once it finishes there
                # (at once, in this thread, if it just finished).
                inner.add_done_callback(functools.partial(_clean_up, lifetime))
            raise
        except BaseException:
            await lifetime.aclose()
            raise
        await lifetime.aclose()
        if type(outcome) is not _ProxiedResult:
            result: T = outcome
            return result
        if self.result_as == "proxy":
            proxied: T = outcome.proxy
            return proxied
        value: T = await resolve(outcome.proxy)
        return value

    async def _wrap(self, obj: Any, lifetime: ContextLifetime) -> Any:
        if not self.should_proxy(obj):
            return obj
        return await self.store.aproxy(obj, lifetime=lifetime)

    async def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False
    ) -> None:
        """Shut the wrapped executor down in a thread (a Parsl one is left alone)."""
        if not self._parsl:
            await asyncio.to_thread(
                self.executor.shutdown, wait=wait, cancel_futures=cancel_futures
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


def _clean_up(lifetime: ContextLifetime, inner: concurrent.futures.Future[Any]) -> None:
    """Evict a cancelled call's arguments and result (sync faces: any thread)."""
    lifetime.close()
    if not inner.cancelled() and inner.exception() is None:
        _discard_result(inner.result())
