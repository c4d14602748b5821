"""Code run in spawned processes that pretend to be different hosts.

Each process is started with `pretend_to_be` as its initializer, so the
store it builds picks the endpoint whose host_regex matches ``hostname``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
from typing import Any

from proxystore import aio


def pretend_to_be(hostname: str, proxystore_home: str) -> None:
    os.environ["PROXYSTORE_GLOBUS_HOSTNAME"] = hostname
    os.environ["PROXYSTORE_HOME"] = proxystore_home


def make_proxy(store_kwargs: dict[str, Any], value: Any) -> bytes:
    """Store ``value`` in a new GlobusStore and return the pickled proxy."""

    async def run() -> bytes:
        store = aio.init_store("globus", **store_kwargs)
        proxy = await store.aproxy(value)
        return pickle.dumps(proxy)

    return asyncio.run(run())


def resolve_async(pickled_proxy: bytes) -> Any:
    """Resolve a pickled proxy through the async face (store rebuilt here)."""
    proxy = pickle.loads(pickled_proxy)
    return asyncio.run(aio.resolve(proxy))


def resolve_sync(pickled_proxy: bytes) -> Any:
    """Resolve a pickled proxy by touching it: the generated sync face."""
    from proxystore.proxy import extract

    return extract(pickle.loads(pickled_proxy))
