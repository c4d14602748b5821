"""Pairs of test helpers for the two faces of the contract (see `aio._compat`).

The generator renames each async name (``aresolve``) to its twin
(``resolve``) in the generated sync contract.
"""

from __future__ import annotations

from typing import Any

from proxystore import aio
from proxystore.proxy import Proxy, extract


async def aresolve(proxy: Proxy[Any]) -> Any:
    """Resolve a proxy on the event loop and return its target."""
    return await aio.resolve(proxy)


def resolve(proxy: Proxy[Any]) -> Any:
    """Resolve a proxy by using it and return its target."""
    return extract(proxy)
