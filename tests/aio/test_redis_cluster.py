"""The async RedisStore on a real Redis Cluster (3 masters, 3 replicas)."""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as RawCluster

from proxystore.aio.redis import RedisStore
from proxystore.exceptions import StoreConnectionError
from proxystore.lifetimes import LeaseLifetime
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import unused_address

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
async def store(
    redis_cluster: RedisClusterNodes, store_name: str
) -> AsyncIterator[RedisStore]:
    host, port = redis_cluster.seeds[2].split(":")
    # `cluster=True`: hostname:port is the one seed.
    store = RedisStore(store_name, host, int(port), cluster=True, chunk_size=4096)
    yield store
    await store.aclose()


async def test_round_trips(store: RedisStore) -> None:
    array = np.arange(50_000, dtype=np.float64)  # chunked
    for obj in [b"", "text", [1, 2, 3], array]:
        key = await store.aset(obj)
        assert await store.aexists(key)
        np.testing.assert_equal(await store.aget(key), obj)
        await store.aevict(key)
        assert not await store.aexists(key)
        assert await store.aget(key) is None


async def test_batches_and_many_concurrent_tasks(store: RedisStore) -> None:
    objects = [np.full(600 + i, i) for i in range(40)]
    keys = await store.aset_batch(objects)
    for got, want in zip(await store.aget_batch(keys), objects, strict=True):
        np.testing.assert_array_equal(got, want)
    keys = await asyncio.gather(*(store.aset(i) for i in range(200)))
    assert await asyncio.gather(*(store.aget(key) for key in keys)) == list(range(200))


async def test_user_key_overwrite(store: RedisStore) -> None:
    key = f"async-user-{os.getpid()}"
    await store.aset(np.arange(5000), key=key)
    await store.aset("small", key=key)
    assert await store.aget(key, strict=True) == "small"
    await store.aevict(key)
    assert not await store.aexists(key)


def test_one_store_in_successive_event_loops(
    redis_cluster: RedisClusterNodes, store_name: str
) -> None:
    store = RedisStore(store_name, cluster_nodes=redis_cluster.seeds)

    async def round_trip(value: int) -> int:
        result: int = await store.aget(await store.aset(value))
        return result

    assert asyncio.run(round_trip(1)) == 1
    assert asyncio.run(round_trip(2)) == 2
    asyncio.run(store.aclose())


async def test_no_cluster_at_the_seed(store_name: str) -> None:
    host, port = unused_address()
    store = RedisStore(store_name, cluster_nodes=[f"{host}:{port}"])
    try:
        with pytest.raises(StoreConnectionError, match=f"{host}:{port}"):
            await store.aset("x")
    finally:
        await store.aclose()


async def test_moved_slot_is_followed(
    store: RedisStore, redis_cluster: RedisClusterNodes
) -> None:
    from tests.store.test_redis_cluster import _assign, _move_slot

    key = f"async-moving-{os.getpid()}"
    await store.aset(np.arange(3000), key=key)  # chunked
    _assign(redis_cluster, *_move_slot(redis_cluster, key))
    await store.aset("replaced", key=key)  # a MULTI on a stale slot map
    _assign(redis_cluster, *_move_slot(redis_cluster, key))
    assert await store.aget(key, strict=True) == "replaced"
    await store.aevict(key)
    assert not await store.aexists(key)


_PRODUCER = """
import asyncio, pickle, sys
import numpy as np
future = pickle.loads(sys.stdin.buffer.read())
asyncio.run(future.set_result(np.arange(3000)))
"""


async def test_future_waiters_woken_by_another_process(
    store: RedisStore, redis_cluster: RedisClusterNodes
) -> None:
    future = await store.afuture(timeout=60)
    waiters = [asyncio.ensure_future(future.result()) for _ in range(3)]
    await asyncio.sleep(0)  # let every waiter block on {K}:w
    assert not any(waiter.done() for waiter in waiters)
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PRODUCER,
        stdin=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    await asyncio.wait_for(producer.communicate(pickle.dumps(future)), 60)
    assert producer.returncode == 0
    for value in await asyncio.wait_for(asyncio.gather(*waiters), 30):
        np.testing.assert_array_equal(value, np.arange(3000))
    await store.aevict(future.key)
    host, port = redis_cluster.seeds[0].split(":")
    raw = RawCluster(startup_nodes=[ClusterNode(host, int(port))])
    try:
        assert raw.exists(future.key, f"{{{future.key}}}:w") == 0
    finally:
        raw.close()


async def test_lease_expires_every_part(
    store: RedisStore, redis_cluster: RedisClusterNodes
) -> None:
    host, port = redis_cluster.seeds[0].split(":")
    raw = RawCluster(startup_nodes=[ClusterNode(host, int(port))])
    lease = LeaseLifetime(2.0)
    try:
        key = await store.aset(np.arange(3000, dtype=np.int64), lifetime=lease)
        names = [key, f"{{{key}}}:v", *(f"{{{key}}}:c:{i}" for i in range(6))]
        assert raw.exists(*names) == len(names)
        assert all(0 < raw.pttl(name) <= 2000 for name in names)
        await lease.aextend(1.0)
        assert all(1000 < raw.pttl(name) <= 3000 for name in names)
        deadline = time.monotonic() + 10
        while raw.exists(*names) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # polling the servers, with a deadline
        assert raw.exists(*names) == 0
    finally:
        lease.close()
        raw.close()
