"""Async primitives whose sync twins live in `proxystore.store._compat`.

Driver code in `proxystore.aio` imports these names only; the generator
rewrites the import to the sync module, so a driver never branches on its
face for file I/O, locks, sleeping or blocking SDK calls.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class Waiter:
    """A one-shot wake-up that any thread may trigger, awaited in this loop.

    Made in the task that waits (it binds the running loop); `wake` is safe
    from any thread and after the wait ended.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Wake the waiting task (thread-safe; a closed loop is ignored)."""
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float | None) -> bool:
        """Wait for `wake`; return False if `timeout` seconds passed first."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
