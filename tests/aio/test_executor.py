"""AsyncStoreExecutor over a real ProcessPoolExecutor (spawned worker processes)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from proxystore import aio
from proxystore.aio.executor import AsyncStoreExecutor
from proxystore.aio.file import FileStore
from proxystore.aio.redis import RedisStore
from proxystore.exceptions import ConfigurationError
from proxystore.executor import ProxyNever, ProxySize
from proxystore.proxy import Proxy, is_resolved
from proxystore.store.local import LocalStore
from tests.redis_server import RedisServer
from tests.test_executor import SIZE, CountingPool, double, wait_then_double

SPAWN = multiprocessing.get_context("spawn")


def fail(array: Any) -> None:
    raise ValueError(f"no thanks ({type(array).__name__})")


@pytest.fixture
async def file_store(store_name: str, tmp_path: Path) -> AsyncIterator[FileStore]:
    store = FileStore(store_name, tmp_path / "store", metrics=True)
    aio.register_store(store)
    yield store
    aio.unregister_store(store_name)
    await store.aclose()


def left_in(store: FileStore) -> list[Path]:
    return list(Path(store.store_dir).iterdir())


async def test_arguments_and_results_travel_as_proxies(file_store: FileStore) -> None:
    pool = CountingPool()
    array = np.ones(SIZE, dtype=np.uint8)
    async with AsyncStoreExecutor(
        pool, file_store, should_proxy=ProxySize(10_000)
    ) as executor:
        result = await executor.submit(double, array, offset=1)
        assert pool.sent < 5_000  # the 1 MB array did not go through the pool
        assert type(result) is Proxy
        assert not is_resolved(result)
        # The argument was evicted when the task ended; the result is there.
        assert len(left_in(file_store)) == 1
        assert int((await aio.resolve(result)).sum()) == 3 * SIZE
        assert left_in(file_store) == []  # evicted by its first use
        # Small values pass as they are.
        assert await executor.submit(double, np.ones(3, dtype=np.uint8)) is not None


async def test_results_as_values_on_redis(
    redis_server: RedisServer, store_name: str
) -> None:
    store = RedisStore(store_name, redis_server.host, redis_server.port, metrics=True)
    aio.register_store(store)
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    before = client.dbsize()
    try:
        async with AsyncStoreExecutor(
            concurrent.futures.ProcessPoolExecutor(2, mp_context=SPAWN),
            store,
            should_proxy=ProxySize(10_000),
            result_as="value",
        ) as executor:
            arrays = [np.full(SIZE, i, dtype=np.uint8) for i in range(1, 4)]
            results = await asyncio.gather(
                *(executor.submit(double, a) for a in arrays)
            )
        assert [type(result) for result in results] == [np.ndarray] * 3
        assert [int(result.sum()) for result in results] == [
            2 * i * SIZE for i in (1, 2, 3)
        ]
        # Arguments evicted at task end, results by the executor's fetch.
        assert client.dbsize() == before
        assert store.metrics is not None
        assert store.metrics["set"].bytes >= 3 * SIZE  # only the arguments, here
    finally:
        client.close()
        aio.unregister_store(store_name)
        await store.aclose()


async def test_waiting_does_not_block_the_loop(file_store: FileStore) -> None:
    with SPAWN.Manager() as manager:
        started, release = manager.Event(), manager.Event()
        async with AsyncStoreExecutor(
            concurrent.futures.ProcessPoolExecutor(1, mp_context=SPAWN),
            file_store,
            should_proxy=ProxySize(10_000),
            result_as="value",
        ) as executor:
            array = np.ones(SIZE, dtype=np.uint8)
            call = asyncio.create_task(
                executor.submit(wait_then_double, started, release, array)
            )
            # The task waits for this coroutine, which runs only if the
            # loop is free while `call` awaits the task.
            assert await asyncio.to_thread(started.wait, 60)
            await asyncio.to_thread(release.set)
            result = await asyncio.wait_for(call, 60)
        assert int(result.sum()) == 2 * SIZE
    assert left_in(file_store) == []


@pytest.mark.parametrize("result_as", ["proxy", "value"])
async def test_cancelled_while_running_leaves_nothing(
    file_store: FileStore, result_as: str
) -> None:
    with SPAWN.Manager() as manager:
        started, release = manager.Event(), manager.Event()
        executor = AsyncStoreExecutor(
            concurrent.futures.ProcessPoolExecutor(1, mp_context=SPAWN),
            file_store,
            should_proxy=ProxySize(10_000),
            result_as=result_as,  # type: ignore[arg-type]
        )
        array = np.ones(SIZE, dtype=np.uint8)
        call = asyncio.create_task(
            executor.submit(wait_then_double, started, release, array)
        )
        assert await asyncio.to_thread(started.wait, 60)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert len(left_in(file_store)) == 1  # the argument: the task still runs
        await asyncio.to_thread(release.set)
        await executor.shutdown()  # the pool ran its callbacks before this returns
    assert left_in(file_store) == []


async def test_errors_pass_through_and_arguments_go(file_store: FileStore) -> None:
    async with AsyncStoreExecutor(
        concurrent.futures.ProcessPoolExecutor(1, mp_context=SPAWN),
        file_store,
        should_proxy=ProxySize(10_000),
    ) as executor:
        with pytest.raises(ValueError, match="no thanks"):
            await executor.submit(fail, np.ones(SIZE, dtype=np.uint8))
    assert left_in(file_store) == []


async def test_thread_pool_and_never_policy(file_store: FileStore) -> None:
    async with AsyncStoreExecutor(
        concurrent.futures.ThreadPoolExecutor(1), file_store, should_proxy=ProxyNever()
    ) as executor:
        result = await executor.submit(double, np.ones(SIZE, dtype=np.uint8))
    assert type(result) is np.ndarray
    assert file_store.metrics is not None
    assert file_store.metrics["set"].calls == 0


def test_bad_configuration(store_name: str, tmp_path: Path) -> None:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    sync_store = LocalStore(store_name)
    with pytest.raises(ConfigurationError, match="async"):
        AsyncStoreExecutor(pool, sync_store)
    store = FileStore(store_name, tmp_path)
    with pytest.raises(ConfigurationError, match="Executor"):
        AsyncStoreExecutor(object(), store)
    with pytest.raises(ConfigurationError, match="result_as"):
        AsyncStoreExecutor(pool, store, result_as="both")  # type: ignore[arg-type]
    pool.shutdown()
    sync_store.close()
