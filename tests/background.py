"""Test helpers for `proxystore._background`: coroutines on its loop.

The library only runs prefetches there (`submit_held`); tests also run
their own coroutines on the loop, to hold a store's slot or look around.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

from proxystore import _background

T = TypeVar("T")


def submit(
    coro: Coroutine[Any, Any, T], *, store: str | None = None
) -> concurrent.futures.Future[T]:
    """Run a coroutine on the background loop (under `store`'s limit, if given)."""
    runner = _background._get_runner()
    if store is not None:
        coro = _bounded(runner, store, coro)
    return asyncio.run_coroutine_threadsafe(coro, runner.loop)


async def _bounded(runner: Any, store: str, coro: Coroutine[Any, Any, T]) -> T:
    # The semaphore is looked up on the loop, which owns the runner's map.
    async with runner.semaphore(store):
        return await coro
