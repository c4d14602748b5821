"""Async primitives whose sync twins live in `proxystore.store._compat`.

Driver code in `proxystore.aio` imports these names only; the generator
rewrites the import to the sync module, so a driver never branches on its
face for file I/O, locks, sleeping or blocking SDK calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiofiles

T = TypeVar("T")

open_file = aiofiles.open
"""Open a file for async reads and writes (`aiofiles.open`)."""

Lock = asyncio.Lock
"""A lock for tasks of one event loop."""

sleep = asyncio.sleep
"""Sleep without blocking the loop."""


async def run_blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in a worker thread and await its result."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def gather(*awaitables: Awaitable[T]) -> list[T]:
    """Await several operations concurrently, returning results in order."""
    return list(await asyncio.gather(*awaitables))
