"""Resolving proxies from async code without blocking the event loop."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from proxystore.proxy import Proxy, _set_target, extract, get_factory, is_resolved

T = TypeVar("T")


async def resolve(proxy: Proxy[T]) -> T:
    """Resolve a proxy through its factory's async path and return the target.

    A proxy already resolved returns at once. A store proxy whose fetch is
    pending in the background (``prefetch=True``, or
    `proxystore.store.utils.prefetch`) awaits that fetch instead of starting
    another. Factories without `aresolve` are called in a worker thread.

    Raises:
        MissingKeyError: If the key is not in the store; other errors raised
            by the factory (a connection error...) pass through unchanged.
    """
    if not is_resolved(proxy):
        factory = get_factory(proxy)
        aresolve = getattr(factory, "aresolve", None)
        if aresolve is not None:
            target = await aresolve()
        else:
            target = await asyncio.to_thread(factory)
        if not is_resolved(proxy):
            _set_target(proxy, target)
    return extract(proxy)


async def resolve_all(*proxies: Proxy[Any]) -> list[Any]:
    """Resolve several proxies concurrently and return their targets in order.

    If one fails, the others still finish (none is left running) and the
    first error in argument order is raised.
    """
    results = await asyncio.gather(
        *(resolve(proxy) for proxy in proxies), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)
