"""`proxystore.aio.resolve` and `resolve_all`, with and without prefetch."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

import pytest

from proxystore import aio
from proxystore.exceptions import MissingKeyError
from proxystore.factory import LambdaFactory
from proxystore.proxy import Proxy, get_factory, is_resolved
from proxystore.store import init_store
from proxystore.store.base import Store
from proxystore.store.factory import StoreFactory
from proxystore.store.utils import get_key

TIMEOUT = 10.0


def _consumer(proxy: Proxy[Any]) -> Proxy[Any]:
    copy: Proxy[Any] = pickle.loads(pickle.dumps(proxy))
    return copy


def _gets(store: Store[Any]) -> tuple[int, int]:
    sync_metrics = store.metrics
    async_metrics = aio.get_store(store.name).metrics
    assert sync_metrics is not None
    assert async_metrics is not None
    return sync_metrics["get"].count, async_metrics["get"].count


async def test_resolve_awaits_a_pending_prefetch(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    consumer = _consumer(store.proxy({"a": 1}, prefetch=True))
    target = await asyncio.wait_for(aio.resolve(consumer), TIMEOUT)
    assert target == {"a": 1}
    assert is_resolved(consumer)
    assert sum(_gets(store)) == 1


async def test_resolve_without_prefetch_uses_the_async_face(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    consumer = _consumer(store.proxy([1, 2]))
    assert await aio.resolve(consumer) == [1, 2]
    assert await aio.resolve(consumer) == [1, 2]
    assert _gets(store) == (0, 1)


async def test_resolve_of_a_failed_prefetch_raises_its_error(store_name: str) -> None:
    store = init_store("local", store_name)
    proxy = store.proxy([1], prefetch=True)
    blob = pickle.dumps(proxy)
    store.evict(get_key(proxy))
    consumer = pickle.loads(blob)
    with pytest.raises(MissingKeyError) as info:
        await asyncio.wait_for(aio.resolve(consumer), TIMEOUT)
    assert info.value.store == store_name


_ENTERED = threading.Event()
_RELEASE = threading.Event()


def _deserialize_when_released(data: bytes) -> Any:
    _ENTERED.set()
    assert _RELEASE.wait(TIMEOUT)
    return pickle.loads(data)


async def test_cancelled_waiter_leaves_the_prefetch_running(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    proxy = store.proxy(
        [7],
        serializer=pickle.dumps,
        deserializer=_deserialize_when_released,
        prefetch=True,
    )
    _ENTERED.clear()
    _RELEASE.clear()
    consumer = _consumer(proxy)
    try:
        assert await asyncio.to_thread(_ENTERED.wait, TIMEOUT)
        waiter = asyncio.create_task(aio.resolve(consumer))
        await asyncio.sleep(0)  # one loop turn: the waiter reaches its await
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        factory = get_factory(consumer)
        assert isinstance(factory, StoreFactory)
        assert factory._pending is not None
        assert not factory._pending.future.cancelled()
    finally:
        _RELEASE.set()
    assert await asyncio.wait_for(aio.resolve(consumer), TIMEOUT) == [7]
    assert sum(_gets(store)) == 1


async def test_resolve_all_keeps_order_with_prefetch(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    flagged = [_consumer(store.proxy(i, prefetch=True)) for i in range(5)]
    plain = [_consumer(store.proxy(i + 5)) for i in range(5)]
    targets = await asyncio.wait_for(aio.resolve_all(*flagged, *plain), TIMEOUT)
    assert targets == list(range(10))
    assert sum(_gets(store)) == 10


async def test_resolve_all_raises_the_first_error_after_all_finish(
    store_name: str,
) -> None:
    store = init_store("local", store_name)
    good = _consumer(store.proxy("ok", prefetch=True))
    missing = store.proxy("gone", prefetch=True)
    blob = pickle.dumps(missing)
    store.evict(get_key(missing))
    with pytest.raises(MissingKeyError):
        await aio.resolve_all(pickle.loads(blob), good)
    assert is_resolved(good)


async def test_resolve_of_a_plain_callable_runs_it_off_the_loop() -> None:
    proxy: Proxy[int] = Proxy(lambda: 41 + 1)
    assert await aio.resolve(proxy) == 42
    lambda_proxy: Proxy[int] = Proxy(LambdaFactory(sum, [1, 2]))
    assert await aio.resolve(lambda_proxy) == 3
