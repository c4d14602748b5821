"""The async face over LocalStore and FileStore: what only it has.

What every store does on both faces is in tests/contract/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxystore import aio
from proxystore.aio.base import Store
from proxystore.proxy import is_resolved


@pytest.fixture(params=["local", "file"])
async def store(
    request: pytest.FixtureRequest, store_name: str, tmp_path: Path
) -> AsyncIterator[Store[Any]]:
    if request.param == "local":
        store: Store[Any] = aio.init_store("local", name=store_name)
    else:
        store = aio.init_store("file", name=store_name, store_dir=tmp_path)
    async with store:
        yield store


async def test_aproxy_and_aio_resolve(store: Store[Any]) -> None:
    p = await store.aproxy(np.arange(1_000_000))
    assert not is_resolved(p)
    target = await aio.resolve(p)
    assert is_resolved(p)
    assert int(target.sum()) == int(np.arange(1_000_000).sum())
    assert isinstance(p, np.ndarray)


async def test_resolve_all_and_batches(store: Store[Any]) -> None:
    proxies = await store.aproxy_batch([[i] for i in range(5)])
    assert await aio.resolve_all(*proxies) == [[i] for i in range(5)]
    keys = await store.aset_batch(["a", "b"])
    assert await store.aget_batch(keys) == ["a", "b"]


async def test_many_tasks_share_one_store(store: Store[Any]) -> None:
    async def work(i: int) -> int:
        key = await store.aset(i)
        value = await store.aget(key)
        await store.aevict(key)
        return value  # type: ignore[no-any-return]

    results = await asyncio.gather(*(work(i) for i in range(200)))
    assert results == list(range(200))


async def test_sync_face_resolves_async_made_proxy(store: Store[Any]) -> None:
    p = await store.aproxy([1, 2])
    # Touching the proxy uses the sync face of the same name.
    assert await asyncio.to_thread(lambda: list(p)) == [1, 2]


async def test_threads_and_tasks_use_one_store_at_once(store: Store[Any]) -> None:
    from proxystore import store as sync_api

    sync_store = sync_api.get_store(store.name)
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def in_thread(index: int) -> list[Any]:
        loop.call_soon_threadsafe(started.set)
        keys = [sync_store.set((index, i)) for i in range(100)]
        return [sync_store.get(key) for key in keys]

    async def in_task(index: int) -> list[Any]:
        await started.wait()
        keys = [await store.aset((index, i)) for i in range(100)]
        return [await store.aget(key) for key in keys]

    threads = [asyncio.to_thread(in_thread, i) for i in range(4)]
    tasks = [in_task(i) for i in range(4, 8)]
    results = await asyncio.wait_for(asyncio.gather(*threads, *tasks), timeout=60)
    for index, values in enumerate(results):
        assert values == [(index, i) for i in range(100)]
