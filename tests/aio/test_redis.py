"""The async RedisStore against a real, private redis-server."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
import redis

from proxystore import aio
from proxystore.aio.redis import RedisStore
from proxystore.exceptions import (
    BatchWriteError,
    ConfigurationError,
    InvalidKeyError,
    MissingKeyError,
    SerializationError,
    StoreConnectionError,
    StoreOperationError,
    StoreTimeoutError,
)
from proxystore.store.utils import get_key
from tests.redis_server import RedisServer, unused_address

pytestmark = pytest.mark.timeout(30)

MiB = 1 << 20


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
async def store(
    redis_server: RedisServer, store_name: str
) -> AsyncIterator[RedisStore]:
    store = RedisStore(store_name, redis_server.host, redis_server.port)
    # Registered, so proxies resolve through this instance (closed below).
    aio.register_store(store)
    yield store
    await store.aclose()


@pytest.fixture
def small_bulk_limit(raw: redis.Redis) -> Iterator[int]:
    """Lower the server's proto-max-bulk-len to 1 MiB for one test."""
    old = str(raw.config_get("proto-max-bulk-len")["proto-max-bulk-len"])
    raw.config_set("proto-max-bulk-len", "1mb")
    yield MiB
    raw.config_set("proto-max-bulk-len", old)


def commands_processed(raw: redis.Redis) -> int:
    """Commands the server ran so far, not counting this INFO call."""
    return int(raw.info("stats")["total_commands_processed"])


def same(a: Any, b: Any) -> bool:
    if isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


@pytest.mark.parametrize(
    "obj",
    [
        b"bytes",
        b"",
        "str \u2603",
        42,
        None,
        [1, {"a": (2, 3)}],
        np.arange(10),
        np.arange(400_000, dtype=np.float64),  # out-of-band, sent without a join
        b"x" * (3 * MiB),
    ],
)
async def test_set_get_exists_evict(store: RedisStore, obj: Any) -> None:
    key = await store.aset(obj)
    assert await store.aexists(key)
    store._cache.clear()
    assert same(await store.aget(key), obj)
    await store.aevict(key)
    assert not await store.aexists(key)
    assert await store.aget(key, default="gone") == "gone"


async def test_one_round_trip_and_no_side_keys(
    store: RedisStore, raw: redis.Redis
) -> None:
    await store.aset("warm the pool")
    keys_before = raw.dbsize()
    before = commands_processed(raw)
    key = await store.aset([1, 2, 3])
    store._cache.clear()
    assert await store.aget(key) == [1, 2, 3]
    # One command each: MSET of value and version (atomic), MGET of both;
    # and the first INFO.
    assert commands_processed(raw) - before == 3
    assert raw.dbsize() == keys_before + 2


async def test_batches_are_one_round_trip(store: RedisStore, raw: redis.Redis) -> None:
    objs = [1, "two", b"three", np.arange(5)]
    await store.aexists("warm-the-pool")
    before = commands_processed(raw)
    keys = await store.aset_batch(objs)
    # MULTI, an MSET of value and version per object, EXEC, and the first INFO.
    assert commands_processed(raw) - before == 7
    store._cache.clear()
    missing = "0" * 24
    before = commands_processed(raw)
    got = await store.aget_batch([*keys, missing], default="missing")
    assert commands_processed(raw) - before == 2  # MGET and INFO
    assert got[:3] == objs[:3]
    np.testing.assert_array_equal(got[3], objs[3])
    assert got[4] == "missing"


@pytest.mark.parametrize("count", [0, 1, 2, 2**32 - 1])
async def test_raw_bytes_shaped_like_a_manifest_read_back_as_themselves(
    store: RedisStore, count: int
) -> None:
    raw = b"\x00PXC" + count.to_bytes(4, "little")
    key = await store.aset(raw, serialize=False)
    assert await store.aget(key, deserialize=False) == raw
    assert await store.aexists(key)
    await store.aevict(key)
    assert not await store.aexists(key)


async def test_proxy_resolves_and_evict_flag(store: RedisStore) -> None:
    proxy = await store.aproxy({"a": 1}, evict=True)
    assert len(pickle.dumps(proxy)) < 1000
    assert await aio.resolve(proxy) == {"a": 1}
    assert not await store.aexists(get_key(proxy))


async def test_proxy_after_evict_names_key_and_store(store: RedisStore) -> None:
    proxy = await store.aproxy([1, 2])
    key = get_key(proxy)
    await store.aevict(key)
    with pytest.raises(MissingKeyError) as info:
        await aio.resolve(proxy)
    assert key in str(info.value)
    assert store.name in str(info.value)


async def test_chunked_value_round_trip_and_evict(
    redis_server: RedisServer,
    raw: redis.Redis,
    store_name: str,
    small_bulk_limit: int,
) -> None:
    store = RedisStore(
        store_name, redis_server.host, redis_server.port, chunk_size=small_bulk_limit
    )
    keys_before = raw.dbsize()
    array = np.random.default_rng(0).random(500_000)  # 4 MB: 4 chunks
    data = bytes(range(256)) * (10 * 4096)  # 10 MiB + tag: 11 chunks
    key_array = await store.aset(array)
    key_data = await store.aset(data)
    # Per object: the manifest, the version and the chunks.
    assert raw.dbsize() == keys_before + 2 * 2 + 4 + 11
    assert len(raw.keys(f"{{{key_data}}}:c:*")) == 11
    store._cache.clear()
    np.testing.assert_array_equal(await store.aget(key_array), array)
    assert await store.aget(key_data) == data
    store._cache.clear()
    got = await store.aget_batch([key_data, key_array])
    assert got[0] == data
    np.testing.assert_array_equal(got[1], array)
    assert await store.aexists(key_data)
    await store.aevict(key_data)
    await store.aevict(key_array)
    assert raw.dbsize() == keys_before
    await store.aclose()


async def test_chunked_value_with_lost_chunk_is_missing(
    redis_server: RedisServer,
    raw: redis.Redis,
    store_name: str,
    small_bulk_limit: int,
) -> None:
    store = RedisStore(
        store_name, redis_server.host, redis_server.port, chunk_size=small_bulk_limit
    )
    aio.register_store(store)
    proxy = await store.aproxy(b"y" * (3 * MiB))
    key = get_key(proxy)
    raw.delete(f"{{{key}}}:c:1")
    assert not await store.aexists(key)
    with pytest.raises(MissingKeyError):
        await aio.resolve(proxy)
    await store.aevict(key)
    assert raw.keys(f"{key}*") == []
    assert raw.keys(f"{{{key}}}*") == []
    await store.aclose()


async def test_value_over_server_limit_leaves_nothing_readable(
    redis_server: RedisServer,
    raw: redis.Redis,
    store_name: str,
    small_bulk_limit: int,
) -> None:
    # chunk_size above the server's limit: a misconfiguration the store can
    # only learn about from the server.
    store = RedisStore(
        store_name, redis_server.host, redis_server.port, chunk_size=8 * MiB
    )
    keys_before = raw.dbsize()
    # One part over the limit: the server drops the connection mid-MULTI.
    with pytest.raises(StoreOperationError, match="proto-max-bulk-len"):
        await store.aset(b"z" * (3 * MiB))
    assert raw.dbsize() == keys_before
    # Parts under the limit whose sum is over it (sent as one value).
    arrays = [np.ones(100_000), np.ones(100_000)]  # 0.8 MB each
    with pytest.raises(StoreOperationError, match="proto-max-bulk-len"):
        await store.aset(arrays)
    assert raw.dbsize() == keys_before
    # The store still works for values that fit.
    assert await store.aget(await store.aset([1])) == [1]
    await store.aclose()


async def test_no_server_is_a_connection_error_naming_the_address(
    store_name: str,
) -> None:
    host, port = unused_address()
    store = RedisStore(store_name, host, port, socket_connect_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(StoreConnectionError, match=f"{host}:{port}"):
        await store.aset(1)
    with pytest.raises(StoreConnectionError, match=f"{host}:{port}"):
        await store.aget("somekey")
    assert time.monotonic() - start < 2.0
    await store.aclose()


async def test_unroutable_host_fails_within_connect_timeout(store_name: str) -> None:
    # A TEST-NET-1 address (RFC 5737): connecting hangs until the timeout.
    store = RedisStore(store_name, "192.0.2.1", 6379, socket_connect_timeout=0.3)
    start = time.monotonic()
    with pytest.raises(
        (StoreConnectionError, StoreTimeoutError), match=r"192\.0\.2\.1"
    ):
        await store.aexists("somekey")
    assert time.monotonic() - start < 2.0
    await store.aclose()


async def test_server_outage_then_recovery_with_same_store(store_name: str) -> None:
    with RedisServer() as server:
        store = RedisStore(
            store_name, server.host, server.port, socket_connect_timeout=1.0
        )
        key = await store.aset("before")
        store._cache.clear()
        server.kill()
        target = f"{server.host}:{server.port}"
        with pytest.raises(StoreConnectionError, match=target):
            await store.aget(key)
        with pytest.raises(StoreConnectionError, match=target):
            await store.aset("during")
        server.restart()
        # No persistence: the old key is gone, the store works again.
        assert await store.aget(key) is None
        assert await store.aget(await store.aset("after")) == "after"
        await store.aclose()


async def test_read_timeout_is_a_timeout_error(
    store: RedisStore, raw: redis.Redis, redis_server: RedisServer, store_name: str
) -> None:
    slow = RedisStore(
        f"{store_name}-slow",
        redis_server.host,
        redis_server.port,
        socket_timeout=0.2,
    )
    await slow.aexists("warm")
    raw.client_pause(1000)
    try:
        start = time.monotonic()
        with pytest.raises(StoreTimeoutError, match=r"did not finish within 0\.2s"):
            await slow.aexists("somekey")
        assert time.monotonic() - start < 1.0
    finally:
        raw.client_unpause()
    assert not await slow.aexists("somekey")
    await slow.aclose()


async def test_tls_to_a_plain_server_times_out_with_a_hint(
    redis_server: RedisServer, store_name: str
) -> None:
    store = RedisStore(
        store_name,
        redis_server.host,
        redis_server.port,
        ssl=True,
        ssl_cert_reqs="none",
        socket_connect_timeout=0.3,
    )
    start = time.monotonic()
    with pytest.raises(StoreTimeoutError, match="does the server serve TLS"):
        await store.aexists("somekey")
    assert time.monotonic() - start < 2.0
    await store.aclose()


async def test_wrong_password_is_an_authentication_error(store_name: str) -> None:
    with RedisServer(password="right") as server:
        for password in ("wrong", None):
            store = RedisStore(store_name, server.host, server.port, password=password)
            with pytest.raises(StoreConnectionError, match="authentication failed"):
                await store.aset(1)
            await store.aclose()
        store = RedisStore(store_name, server.host, server.port, password="right")
        assert await store.aget(await store.aset(1)) == 1
        assert "right" not in repr(store)
        await store.aclose()


async def test_wrong_db_index_is_a_configuration_error(
    redis_server: RedisServer, store_name: str
) -> None:
    store = RedisStore(store_name, redis_server.host, redis_server.port, db=999)
    with pytest.raises(ConfigurationError, match="db 999"):
        await store.aset(1)
    await store.aclose()


async def test_garbage_value_is_a_serialization_error(
    store: RedisStore, raw: redis.Redis
) -> None:
    raw.set("not-ours", b"\x80garbage that is no payload")
    with pytest.raises(SerializationError):
        await store.aget("not-ours")
    raw.set("not-ours", b"P\x80\x05truncated pickle")
    with pytest.raises(SerializationError):
        await store.aget("not-ours")
    raw.delete("not-ours")


@pytest.mark.parametrize("key", ["", 42, None, "k" * 2000, "k:chunked:9999999999"])
async def test_invalid_keys(store: RedisStore, key: Any) -> None:
    with pytest.raises(InvalidKeyError):
        await store.aget(key)


async def test_thousand_concurrent_tasks(store: RedisStore) -> None:
    objs = [(i, b"v" * (i % 50)) for i in range(1000)]
    keys = await asyncio.gather(*(store.aset(obj) for obj in objs))
    store._cache.clear()
    got = await asyncio.gather(*(store.aget(key) for key in keys))
    assert got == objs


async def test_used_from_two_event_loops(store: RedisStore) -> None:
    key = await store.aset("shared")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        store._cache.clear()
        other = asyncio.run_coroutine_threadsafe(store.aget(key), loop)
        assert await asyncio.wrap_future(other) == "shared"
        assert len(store._clients) == 2
        closed = asyncio.run_coroutine_threadsafe(store.aclose(), loop)
        await asyncio.wait_for(asyncio.wrap_future(closed), timeout=5)
        assert store._clients == {}
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


async def test_construction_does_no_io(store_name: str) -> None:
    host, port = unused_address()
    store = RedisStore(store_name, host, port)
    assert store._clients == {}
    await store.aclose()


def test_config_rebuilds_an_equal_store(store_name: str) -> None:
    store = RedisStore(
        store_name,
        url="rediss://alice:s3cret@example.org:6380/3",
        chunk_size=4 * MiB,
        socket_timeout=5,
    )
    assert (store.hostname, store.port, store.db) == ("example.org", 6380, 3)
    assert (store.username, store.password, store.ssl) == ("alice", "s3cret", True)
    assert RedisStore(**store.config()).config() == store.config()
    assert "s3cret" not in repr(store)
    assert "example.org:6380" in repr(store)


@pytest.mark.parametrize(
    "options",
    [
        {"port": 0},
        {"port": 70000},
        {"db": -1},
        {"chunk_size": 0},
        {"socket_timeout": 0},
        {"max_connections": 0},
        {"url": "http://host"},
        {"url": "redis://host/notanumber"},
        {"ssl_cert_reqs": "maybe"},
    ],
)
def test_bad_configuration(store_name: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore(store_name, **options)


async def test_registered_by_type_name(
    redis_server: RedisServer, store_name: str
) -> None:
    store = aio.init_store(
        "redis", name=store_name, hostname=redis_server.host, port=redis_server.port
    )
    assert isinstance(store, RedisStore)
    assert aio.get_store(store_name) is store
    assert await store.aget(await store.aset(b"x")) == b"x"
    await store.aclose()


async def test_gets_waiting_for_a_connection_share_one_mget(
    redis_server: RedisServer, raw: redis.Redis, store_name: str
) -> None:
    store = RedisStore(
        store_name, redis_server.host, redis_server.port, max_connections=1
    )
    keys = await store.aset_batch(list(range(200)))
    store._cache.clear()
    before = commands_processed(raw)
    got = await asyncio.gather(*(store.aget(key) for key in keys))
    assert got == list(range(200))
    # One GET holds the only connection; the other 199 share a few MGETs.
    assert commands_processed(raw) - before < 20
    await store.aclose()


async def test_cancelled_waiter_leaves_the_others_their_values(
    redis_server: RedisServer, store_name: str
) -> None:
    store = RedisStore(
        store_name, redis_server.host, redis_server.port, max_connections=1
    )
    keys = await store.aset_batch(list(range(20)))
    store._cache.clear()
    tasks = [asyncio.ensure_future(store.aget(key)) for key in keys]
    # One pass of the loop (not a timed wait) runs each task to its first
    # await: the first holds the connection, the others are queued.
    await asyncio.sleep(0)
    assert len(store._clients[asyncio.get_running_loop()].queue.queued) == 19
    tasks[5].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[5], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 5] == [
        i for i in range(20) if i != 5
    ]
    await store.aclose()


async def test_queued_gets_all_fail_clearly_when_the_server_dies(
    store_name: str,
) -> None:
    with RedisServer() as server:
        store = RedisStore(store_name, server.host, server.port, max_connections=1)
        keys = await store.aset_batch(list(range(20)))
        store._cache.clear()
        server.kill()
        results = await asyncio.gather(
            *(store.aget(key) for key in keys), return_exceptions=True
        )
        assert all(isinstance(r, StoreConnectionError) for r in results)
        assert all(f"{server.port}" in str(r) for r in results)
        server.restart()
        assert await store.aget(await store.aset("again")) == "again"
        await store.aclose()


async def test_wait_replicas_without_replicas_times_out(
    redis_server: RedisServer, store_name: str
) -> None:
    where = {"hostname": redis_server.host, "port": redis_server.port}
    store = RedisStore(store_name, wait_replicas=1, wait_timeout=0.05, **where)
    try:
        with pytest.raises(StoreTimeoutError, match="0 of 1 replicas confirmed"):
            await store.aset(np.arange(100_000))  # large: parts by reference
        with pytest.raises(BatchWriteError):
            await store.aset_batch([1, 2])
    finally:
        await store.aclose()
