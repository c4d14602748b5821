"""Futures on the sync face, set by other threads and processes."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

from proxystore.exceptions import FutureError, StoreTimeoutError
from proxystore.proxy import is_resolved
from proxystore.store import register_store, unregister_store
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.future import Future
from proxystore.store.local import LocalStore
from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer


def _produce(blob: bytes, value: Any, fail: bool) -> None:
    future: Future[Any] = pickle.loads(blob)
    if fail:
        future.set_exception(RuntimeError(f"no value: {value}"))
    else:
        future.set_result(value)


def _consume(blob: bytes) -> Any:
    proxy = pickle.loads(blob)
    return list(proxy)


@pytest.fixture(params=["redis", "file"])
def shared_store(
    request: pytest.FixtureRequest, store_name: str, tmp_path: Path
) -> Any:
    store: Store[str]
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(store_name, server.host, server.port)
    else:
        store = FileStore(store_name, tmp_path / "store")
    register_store(store)
    yield store
    unregister_store(store_name)
    store.close()


def test_value_set_in_another_process(shared_store: Store[str]) -> None:
    future = shared_store.future(timeout=30)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        done = pool.apply_async(_produce, (pickle.dumps(future), [1, 2], False))
        assert future.result() == [1, 2]
        done.get(30)


def test_error_set_in_another_process(shared_store: Store[str]) -> None:
    future = shared_store.future(timeout=30)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        pool.apply_async(_produce, (pickle.dumps(future), "x", True)).get(30)
    with pytest.raises(FutureError, match=r"builtins\.RuntimeError: no value: x"):
        future.result()


def test_proxy_sent_before_the_value_exists(shared_store: Store[str]) -> None:
    future = shared_store.future(timeout=30)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        consumed = pool.apply_async(
            _consume, (pickle.dumps(future.proxy(prefetch=True)),)
        )
        future.set_result((3, 4))
        assert consumed.get(30) == [3, 4]


def test_local_threads(store_name: str) -> None:
    store = LocalStore(store_name)
    future = store.future(timeout=10)
    proxy = future.proxy()
    thread = threading.Thread(target=future.set_result, args=("hello",))
    results: list[Any] = []
    waiter = threading.Thread(target=lambda: results.append(future.result()))
    waiter.start()
    thread.start()
    thread.join(10)
    waiter.join(10)
    assert results == ["hello"]
    assert not is_resolved(proxy)
    assert proxy.upper() == "HELLO"
    with pytest.raises(StoreTimeoutError):
        store.future().result(timeout=0.05)
    store.close()


def test_prefetching_proxy_waits_at_unpickle(store_name: str) -> None:
    store = LocalStore(store_name)
    future = store.future(timeout=10)
    proxy = pickle.loads(pickle.dumps(future.proxy(prefetch=True)))
    future.set_result(list(range(3)))
    assert proxy == [0, 1, 2]
    store.close()
