"""`proxystore.store.utils`: keys, background resolution and prefetch limits."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from proxystore import _background, aio
from proxystore.exceptions import ConfigurationError, ProxyStoreError
from proxystore.factory import SimpleFactory
from proxystore.proxy import Proxy, get_factory, is_resolved
from proxystore.store import init_store
from proxystore.store.base import Store
from proxystore.store.factory import StoreFactory
from proxystore.store.utils import (
    configure_prefetch,
    get_key,
    prefetch,
    resolve_async,
)


@pytest.fixture(autouse=True)
def _default_limits() -> Iterator[None]:
    yield
    _background.reset_configuration()


def _consumer(store: Store[Any], obj: Any) -> Proxy[Any]:
    proxy: Proxy[Any] = pickle.loads(pickle.dumps(store.proxy(obj)))
    return proxy


def _gets(store: Store[Any]) -> tuple[int, int]:
    sync_metrics = store.metrics
    async_metrics = aio.get_store(store.name).metrics
    assert sync_metrics is not None
    assert async_metrics is not None
    return sync_metrics["get"].count, async_metrics["get"].count


def test_get_key_names_the_stored_object(store_name: str) -> None:
    store = init_store("local", store_name)
    key = store.set("value")
    assert get_key(store.proxy_from_key(key)) == key


def test_get_key_refuses_a_proxy_not_made_by_a_store() -> None:
    with pytest.raises(ProxyStoreError, match="SimpleFactory"):
        get_key(Proxy(SimpleFactory(1)))


def test_resolve_async_fetches_in_the_background_once(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    consumer = _consumer(store, [1, 2, 3])
    resolve_async(consumer)
    resolve_async(consumer)  # already pending: not a second fetch
    assert not is_resolved(consumer)
    assert consumer == [1, 2, 3]
    assert sum(_gets(store)) == 1


def test_resolve_async_leaves_a_resolved_proxy_alone(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    consumer = _consumer(store, "x")
    assert consumer == "x"
    resolve_async(consumer)
    factory = get_factory(consumer)
    assert isinstance(factory, StoreFactory)
    assert factory._pending is None
    assert _gets(store) == (1, 0)


def test_prefetch_starts_every_proxy(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    consumers = [_consumer(store, i) for i in range(20)]
    prefetch(*consumers, max_concurrency=3)
    assert [int(c) for c in consumers] == list(range(20))
    assert sum(_gets(store)) == 20


def test_prefetch_refuses_foreign_proxies_before_starting_any(store_name: str) -> None:
    store = init_store("local", store_name)
    consumer = _consumer(store, 1)
    with pytest.raises(ProxyStoreError, match="not made by a store"):
        prefetch(consumer, Proxy(SimpleFactory(2)))
    factory = get_factory(consumer)
    assert isinstance(factory, StoreFactory)
    assert factory._pending is None


@pytest.mark.parametrize("limit", [0, -1, 1.5, "2"])
def test_prefetch_rejects_a_bad_limit(limit: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        prefetch(max_concurrency=limit)


def test_configure_prefetch_sets_limits_per_store_and_default() -> None:
    configure_prefetch(max_concurrency=2)
    configure_prefetch(max_concurrency=5, store="special")
    assert _background.max_concurrency("special") == 5
    assert _background.max_concurrency("other") == 2
    configure_prefetch(timeout=1.5)
    assert _background.wait_timeout() == 1.5
    configure_prefetch(face="async")
    assert _background.fetch_face() == "async"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_concurrency": 0}, {"timeout": 0}, {"timeout": -2.0}, {"face": "both"}],
)
def test_configure_prefetch_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        configure_prefetch(**kwargs)
