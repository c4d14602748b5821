"""Small helpers for code that handles proxies made by stores."""

from __future__ import annotations

import asyncio
from typing import Any

from proxystore import _background
from proxystore._background import FetchFace
from proxystore.exceptions import ConfigurationError, NotAStoreProxyError
from proxystore.proxy import Proxy, get_factory, is_resolved
from proxystore.store_factory import StoreFactory


def get_key(proxy: Proxy[Any]) -> Any:
    """Return the key of the object a store proxy refers to (never resolves it).

    Raises:
        NotAStoreProxyError: If the proxy was not made by a store.
    """
    return _store_factory(proxy).key


def resolve_async(proxy: Proxy[Any]) -> None:
    """Start fetching a proxy's object in the background and return at once.

    For proxies made without ``prefetch=True``: the fetch runs on the
    process-wide background loop, and the proxy's first use (sync or under
    `proxystore.aio.resolve`) takes its result, or raises its error. A
    resolved proxy, or one whose fetch is already pending, is left alone.

    Raises:
        NotAStoreProxyError: If the proxy was not made by a store.
    """
    factory = _store_factory(proxy)
    if not is_resolved(proxy):
        factory.start_prefetch()


def prefetch(*proxies: Proxy[Any], max_concurrency: int | None = None) -> None:
    """Start fetching several proxies' objects in the background.

    Returns at once. Fetches start in argument order as slots free up: each
    store's own limit (`configure_prefetch`) always applies, and
    `max_concurrency` bounds these proxies further, together. A slot is held
    from the start of a fetch until its proxy is first used (or dropped), so
    the limit also bounds how many fetched objects wait in memory.

    Args:
        proxies: Proxies made by stores. Resolved ones are skipped.
        max_concurrency: At most this many of these proxies fetching or
            fetched and not yet used.

    Raises:
        NotAStoreProxyError: If a proxy was not made by a store (no fetch starts).
        ConfigurationError: If `max_concurrency` is not a positive int.

    Example:
        ```python
        batch = [queue.get() for _ in range(8)]
        prefetch(*batch, max_concurrency=4)
        for item in batch:
            compute(item)  # fetches overlap the compute of earlier items
        ```
    """
    if max_concurrency is not None and (
        not isinstance(max_concurrency, int) or max_concurrency < 1
    ):
        raise ConfigurationError(
            f"max_concurrency must be an int >= 1, got {max_concurrency!r}"
        )
    factories = [_store_factory(proxy) for proxy in proxies]
    limiter = None if max_concurrency is None else asyncio.Semaphore(max_concurrency)
    for proxy, factory in zip(proxies, factories, strict=True):
        if not is_resolved(proxy):
            factory.start_prefetch(limiter)


def configure_prefetch(
    *,
    max_concurrency: int | None = None,
    store: str | None = None,
    timeout: float | None = None,
    face: FetchFace | None = None,
) -> None:
    """Set the limits of background fetches in this process.

    Args:
        max_concurrency: Prefetches per store being fetched or fetched and
            not yet used (default 2): for the store named `store`, or for
            every store without a limit of its own. A proxy used before its
            prefetch started is fetched at once by its user instead.
        store: The store name `max_concurrency` applies to.
        timeout: Seconds a proxy's sync first use waits for its pending
            fetch before raising `StoreTimeoutError` (default 300).
        face: ``"sync"`` (default): fetch through the store's sync face in a
            worker thread of the background loop (cheaper per byte for large
            objects); ``"async"``: through its async face on the loop. A
            store with no sync face is always fetched through its async one.

    Raises:
        ConfigurationError: If a value is not positive, or `face` is unknown.
    """
    _background.configure(
        max_concurrency=max_concurrency, store=store, wait_timeout=timeout, face=face
    )


def _store_factory(proxy: Proxy[Any]) -> StoreFactory[Any]:
    factory = get_factory(proxy)
    if not isinstance(factory, StoreFactory):
        raise NotAStoreProxyError(factory)
    return factory
