"""Futures on the async face: local, redis and file stores."""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from proxystore import aio
from proxystore.aio.base import Store
from proxystore.aio.file import FileStore
from proxystore.aio.future import Future
from proxystore.aio.local import LocalStore
from proxystore.aio.redis import RedisStore
from proxystore.exceptions import (
    ConfigurationError,
    FutureError,
    FutureStateError,
    StoreTimeoutError,
)
from proxystore.proxy import is_resolved
from tests.redis_server import RedisServer


@pytest.fixture(params=["local", "redis", "file"])
async def store(
    request: pytest.FixtureRequest, store_name: str, tmp_path: Path
) -> AsyncIterator[Store[str]]:
    made: Store[str]
    if request.param == "local":
        made = LocalStore(store_name)
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisStore(store_name, server.host, server.port)
    else:
        made = FileStore(store_name, tmp_path / "store")
    aio.register_store(made)
    yield made
    await made.aclose()


async def test_result_after_set(store: Store[str]) -> None:
    future = await store.afuture()
    assert not await future.done()
    await future.set_result({"a": [1, 2]})
    assert await future.done()
    assert await future.result() == {"a": [1, 2]}
    assert await future == {"a": [1, 2]}


async def test_waiter_woken_by_later_set(store: Store[str]) -> None:
    future = await store.afuture(timeout=10)
    waiters = [asyncio.ensure_future(future.result()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    await future.set_result("value")
    assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == ["value"] * 3


async def test_never_set_times_out(store: Store[str]) -> None:
    future = await store.afuture()
    start = time.monotonic()
    with pytest.raises(StoreTimeoutError, match="waiting for future"):
        await future.result(timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 5
    with pytest.raises(StoreTimeoutError):
        await future.result(timeout=0)


async def test_exception_arrives_as_our_error(store: Store[str]) -> None:
    future = await store.afuture()
    await future.set_exception(KeyError("missing thing"))
    with pytest.raises(FutureError) as info:
        await future.result(timeout=5)
    assert info.value.remote_type == "builtins.KeyError"
    assert "missing thing" in info.value.remote_message
    assert info.value.key == future.key
    # The consumer never sees a KeyError (never a pickled exception).
    assert not isinstance(info.value, KeyError)
    proxy = future.proxy()
    with pytest.raises(FutureError):
        await aio.resolve(proxy)


async def test_set_twice_refused(store: Store[str]) -> None:
    future = await store.afuture()
    await future.set_result(1)
    with pytest.raises(FutureStateError, match="already set"):
        await future.set_result(2)
    with pytest.raises(FutureStateError):
        await future.set_exception(ValueError())
    with pytest.raises(ConfigurationError, match="takes an exception"):
        await (await store.afuture()).set_exception("not an error")  # type: ignore[arg-type]


async def test_proxy_made_before_value_resolves(store: Store[str]) -> None:
    future = await store.afuture(timeout=10)
    proxy = pickle.loads(pickle.dumps(future.proxy()))
    assert not is_resolved(proxy)
    resolving = asyncio.ensure_future(aio.resolve(proxy))
    await asyncio.sleep(0.01)
    assert not resolving.done()
    await future.set_result([1, 2, 3])
    await asyncio.wait_for(resolving, 10)
    assert proxy == [1, 2, 3]


async def test_proxy_times_out(store: Store[str]) -> None:
    future = await store.afuture()
    proxy = future.proxy(timeout=0.1)
    with pytest.raises(StoreTimeoutError):
        await aio.resolve(proxy)


async def test_pickled_future_sets_in_another_instance(store: Store[str]) -> None:
    future = await store.afuture()
    copy: Future[int] = pickle.loads(pickle.dumps(future))
    assert copy.key == future.key
    await copy.set_result(7)
    assert await future.result(timeout=5) == 7


async def test_bad_timeouts(store: Store[str]) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        await store.afuture(timeout=-1)
    future = await store.afuture()
    with pytest.raises(ConfigurationError, match="timeout"):
        await future.result(timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout"):
        future.proxy(timeout=True)


async def test_redis_wake_key_layout(
    redis_server: RedisServer, store_name: str
) -> None:
    store = RedisStore(store_name, redis_server.host, redis_server.port)
    raw = redis.Redis(redis_server.host, redis_server.port)
    try:
        future = await store.afuture()
        key = future.key
        await future.set_result(b"x")
        assert raw.lrange(f"{{{key}}}:w", 0, -1) == [b"1"]
        assert raw.exists(key, f"{{{key}}}:v") == 2
        # Many waiters: the token is rotated, never consumed.
        assert [await future.result() for _ in range(3)] == [b"x"] * 3
        store._cache.clear()
        assert await future.result() == b"x"
        assert raw.llen(f"{{{key}}}:w") == 1
        await store.aevict(key)
        assert raw.exists(key, f"{{{key}}}:v", f"{{{key}}}:w") == 0
    finally:
        raw.close()
        await store.aclose()


async def test_redis_wait_is_woken_not_polled(
    redis_server: RedisServer, store_name: str
) -> None:
    # socket_timeout bounds each blocking slice; the wake comes long before.
    store = RedisStore(
        store_name, redis_server.host, redis_server.port, socket_timeout=20
    )
    try:
        future = await store.afuture(timeout=15)
        waiting = asyncio.ensure_future(future.result())
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await future.set_result(1)
        assert await asyncio.wait_for(waiting, 15) == 1
        assert time.monotonic() - start < 1.0
    finally:
        await store.aclose()


async def test_stores_without_chosen_keys_refuse_futures(store_name: str) -> None:
    class MintsOnWrite(LocalStore):
        _USER_KEY_REFUSAL = "its keys depend on the write"

    store = MintsOnWrite(store_name)
    with pytest.raises(ConfigurationError, match="cannot hold futures"):
        await store.afuture()
    await store.aclose()


async def test_carried_wait_is_checked(store_name: str) -> None:
    from proxystore.exceptions import UntrustedProxyError
    from proxystore.store.factory import _rebuild

    store = LocalStore(store_name)
    aio.register_store(store)
    config = store.store_config
    for bad in ("soon", -1.0, True):
        with pytest.raises(UntrustedProxyError, match="future wait"):
            _rebuild(
                config.kind, config.kwargs, "k", (False, None, False, None, False, bad)
            )
    await store.aclose()


async def test_lease_extend_async_face(
    redis_server: RedisServer, store_name: str
) -> None:
    from proxystore.lifetimes import LeaseLifetime

    store = RedisStore(store_name, redis_server.host, redis_server.port)
    aio.register_store(store)
    raw = redis.Redis(redis_server.host, redis_server.port)
    try:
        lease = LeaseLifetime(5)
        key = await store.aset(b"v", lifetime=lease)
        assert 0 < raw.pttl(key) <= 5000
        await lease.aextend(60)
        assert raw.pttl(key) > 50_000
        await lease.aclose()
        assert raw.exists(key) == 0
    finally:
        raw.close()
        await store.aclose()


async def test_async_waiter_woken_by_sync_face_in_a_thread(store_name: str) -> None:
    import threading

    from proxystore.store.local import LocalStore as SyncLocalStore

    store = LocalStore(store_name)
    future = await store.afuture(timeout=10)
    waiting = asyncio.ensure_future(future.result())
    await asyncio.sleep(0)
    sync_store = SyncLocalStore(store_name)
    from proxystore.store.future import Future as SyncFuture

    thread = threading.Thread(
        target=SyncFuture(sync_store, future.key).set_result, args=("from a thread",)
    )
    thread.start()
    assert await asyncio.wait_for(waiting, 10) == "from a thread"
    thread.join(10)
    await store.aclose()


async def test_redis_waiters_do_not_starve_the_setter(
    redis_server: RedisServer, store_name: str
) -> None:
    store = RedisStore(
        store_name, redis_server.host, redis_server.port, max_connections=1
    )
    try:
        future = await store.afuture(timeout=10)
        waiters = [asyncio.ensure_future(future.result()) for _ in range(4)]
        await asyncio.sleep(0.05)
        await asyncio.wait_for(future.set_result("ok"), 5)
        assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == ["ok"] * 4
    finally:
        await store.aclose()
