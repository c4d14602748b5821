"""The sync RedisStore (generated from proxystore/aio/redis.py) on a real server."""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import redis

import proxystore as ps
from proxystore import registry
from proxystore.exceptions import (
    BatchWriteError,
    MissingKeyError,
    ProxyStoreError,
    SerializationError,
    StoreClosedError,
    StoreConnectionError,
)
from proxystore.store.redis import RedisStore
from proxystore.store.utils import get_key, prefetch
from tests.redis_server import RedisServer, unused_address

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


@pytest.fixture
def store(redis_server: RedisServer, store_name: str) -> Iterator[RedisStore]:
    store = ps.store.init_store(
        "redis", name=store_name, hostname=redis_server.host, port=redis_server.port
    )
    assert isinstance(store, RedisStore)
    yield store
    store.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def test_is_the_generated_twin() -> None:
    import proxystore.store.redis as module

    with open(module.__file__) as file:
        assert file.readline().startswith("# Generated from proxystore/aio/redis.py")
    assert module._IS_SYNC is True
    assert module.redis.__name__ == "redis"


@pytest.mark.parametrize(
    "obj", [b"bytes", "str", 42, [1, 2], np.arange(300_000), b"x" * (2 * MiB)]
)
def test_set_get_exists_evict(store: RedisStore, obj: Any) -> None:
    key = store.set(obj)
    assert store.exists(key)
    store._cache.clear()
    got = store.get(key)
    if isinstance(obj, np.ndarray):
        np.testing.assert_array_equal(got, obj)
    else:
        assert got == obj
    store.evict(key)
    assert not store.exists(key)
    assert store.get(key) is None


def test_batches(store: RedisStore) -> None:
    objs = [1, "two", b"three"]
    keys = store.set_batch(objs)
    store._cache.clear()
    assert store.get_batch(keys) == objs
    proxies = store.proxy_batch(objs)
    assert [p + p for p in proxies] == [2, "twotwo", b"threethree"]


def test_proxy_and_missing_key(store: RedisStore) -> None:
    proxy = store.proxy({"a": [1, 2]})
    assert proxy["a"] == [1, 2]
    assert isinstance(proxy, dict)
    gone = store.proxy([3])
    store.evict(get_key(gone))
    with pytest.raises(MissingKeyError) as info:
        len(gone)
    assert get_key(gone) in str(info.value)
    assert store.name in str(info.value)


def test_prefetched_proxies_resolve(store: RedisStore) -> None:
    proxies = [store.proxy((i, b"x" * i)) for i in range(50)]
    store._cache.clear()
    prefetch(*proxies)
    assert [p[0] for p in proxies] == list(range(50))
    marked = pickle.loads(pickle.dumps(store.proxy([7], prefetch=True)))
    assert marked == [7]


def test_chunked_round_trip(
    redis_server: RedisServer, raw: redis.Redis, store_name: str
) -> None:
    old = str(raw.config_get("proto-max-bulk-len")["proto-max-bulk-len"])
    raw.config_set("proto-max-bulk-len", "1mb")
    store = RedisStore(store_name, redis_server.host, redis_server.port, chunk_size=MiB)
    try:
        keys_before = raw.dbsize()
        array = np.arange(600_000, dtype=np.int64)  # 4.8 MB: 5 chunks
        key = store.set(array)
        assert raw.dbsize() == keys_before + 7  # manifest, version, 5 chunks
        store._cache.clear()
        np.testing.assert_array_equal(store.get(key), array)
        store.evict(key)
        assert raw.dbsize() == keys_before
    finally:
        raw.config_set("proto-max-bulk-len", old)
        store.close()


def test_garbage_value(store: RedisStore, raw: redis.Redis) -> None:
    raw.set("sync-not-ours", b"\xffgarbage")
    with pytest.raises(SerializationError):
        store.get("sync-not-ours")
    raw.delete("sync-not-ours")


def test_eight_threads_on_one_store(store: RedisStore) -> None:
    def work(thread: int) -> list[Any]:
        results = []
        for i in range(100):
            obj = (thread, i, b"p" * i)
            key = store.set(obj)
            store._cache.pop(key)
            results.append(store.get(key) == obj and store.exists(key))
            store.evict(key)
        return results

    with ThreadPoolExecutor(8) as pool:
        outcomes = [ok for result in pool.map(work, range(8)) for ok in result]
    assert outcomes == [True] * 800


def test_no_server_fails_fast_naming_the_address(store_name: str) -> None:
    host, port = unused_address()
    store = RedisStore(store_name, host, port, socket_connect_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(StoreConnectionError, match=f"{host}:{port}"):
        store.set(1)
    assert time.monotonic() - start < 2.0
    store.close()


def test_server_outage_then_recovery(store_name: str) -> None:
    with RedisServer() as server:
        store = RedisStore(store_name, server.host, server.port)
        assert store.get(store.set("before")) == "before"
        server.kill()
        with pytest.raises(StoreConnectionError, match=f"{server.port}"):
            store.set("during")
        server.restart()
        assert store.get(store.set("after")) == "after"
        store.close()
        with pytest.raises(StoreClosedError):
            store.set("closed")


# -- other processes ---------------------------------------------------------


def _checksum(blob: bytes) -> float:
    proxy = pickle.loads(blob)
    return float(np.asarray(proxy).sum())


def _set_in_child(config: dict[str, Any]) -> bytes:
    store = RedisStore(**config)
    return pickle.dumps(store.proxy(np.arange(10)))


def _run(context: str, function: Any, *args: Any) -> Any:
    ctx = multiprocessing.get_context(context)
    with ctx.Pool(1) as pool:
        return pool.apply_async(function, args).get(timeout=60)


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_proxy_resolves_in_child_process(context: str, store: RedisStore) -> None:
    array = np.arange(500_000, dtype=np.float64)
    # Use the store first so a forked child inherits live connections.
    blob = pickle.dumps(store.proxy(array))
    assert store.get(store.set(1)) == 1
    assert _run(context, _checksum, blob) == float(array.sum())
    # The parent's connections still work after the child used its own.
    assert store.get(store.set(2)) == 2


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_proxy_made_in_child_resolves_in_parent(
    context: str, store: RedisStore
) -> None:
    blob = _run(context, _set_in_child, store.config())
    registry.unregister(store.name)
    proxy = pickle.loads(blob)
    np.testing.assert_array_equal(proxy, np.arange(10))
    ps.store.get_store(store.name).close()


def test_failed_batch_leaves_nothing(store: RedisStore, raw: redis.Redis) -> None:
    before = raw.dbsize()
    used = int(raw.info("memory")["used_memory"])
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", used + 200_000)
    try:
        with pytest.raises(BatchWriteError) as info:
            store.set_batch([np.ones(100_000) for _ in range(4)])
    finally:
        raw.config_set("maxmemory", 0)
    message = str(info.value)
    assert "set_batch of 4 objects" in message
    assert repr(store.name) in message
    assert info.value.remaining == []
    assert isinstance(info.value.__cause__, ProxyStoreError)
    assert raw.dbsize() == before
    assert store.get(store.set([1])) == [1]  # the store still works
