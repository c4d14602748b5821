"""ProxyStore 0.4's Store API, as its docstrings describe it, on local, file, redis."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.aio.local import LocalStore as AsyncLocalStore
from proxystore.exceptions import (
    ConfigurationError,
    InvalidKeyError,
    MissingKeyError,
    SerializationError,
)
from proxystore.proxy import extract, get_key, is_resolved
from proxystore.store.base import Store

pytestmark = pytest.mark.timeout(30)


def test_set_with_key_get_and_overwrite(keyed_store: Store[str]) -> None:
    assert keyed_store.set([1, 2], key="my-key") == "my-key"
    assert keyed_store.get("my-key") == [1, 2]
    keyed_store.set("second", key="my-key")
    # This store dropped its own cached copy when it overwrote the key.
    assert keyed_store.get("my-key") == "second"
    assert keyed_store.exists("my-key")
    keyed_store.evict("my-key")
    assert not keyed_store.exists("my-key")
    assert keyed_store.get("my-key", default="gone") == "gone"


def test_strict_never_returns_a_stale_cached_value(keyed_store: Store[str]) -> None:
    writer = type(keyed_store)(**keyed_store.config())  # another instance, same data
    keyed_store.set("old", key="k")
    assert keyed_store.get("k") == "old"
    assert keyed_store.is_cached("k")
    before = keyed_store.get_timestamp("k")
    writer.set("new", key="k")
    after = keyed_store.get_timestamp("k")
    assert after > before
    # The cache is not told about a write elsewhere...
    assert keyed_store.get("k") == "old"
    assert keyed_store.is_cached("k")
    assert not keyed_store.is_cached("k", strict=True)
    # ...but strict reads check the version and refetch.
    assert keyed_store.get("k", strict=True) == "new"
    assert keyed_store.is_cached("k", strict=True)
    assert keyed_store.get("k") == "new"
    writer.close()


def test_get_timestamp_is_the_write_time(keyed_store: Store[str]) -> None:
    import time

    start = time.time()
    key = keyed_store.set("value")
    stamp = keyed_store.get_timestamp(key)
    assert isinstance(stamp, float)
    assert start - 1 <= stamp <= time.time() + 1
    with pytest.raises(KeyError):
        keyed_store.get_timestamp("missing-key")
    with pytest.raises(MissingKeyError, match="missing-key"):
        keyed_store.get_timestamp("missing-key")


def test_two_quick_overwrites_have_distinct_versions(keyed_store: Store[str]) -> None:
    stamps = []
    for value in range(5):
        keyed_store.set(value, key="fast")
        stamps.append(keyed_store.get_timestamp("fast"))
    assert stamps == sorted(set(stamps))


def test_serialize_false_stores_bytes_as_given(keyed_store: Store[str]) -> None:
    key = keyed_store.set(b"ABC", serialize=False)
    assert keyed_store.get(key, deserialize=False) == b"ABC"
    assert not keyed_store.is_cached(key)
    with pytest.raises(SerializationError, match="ndarray"):
        keyed_store.set(np.array([1, 2, 3]), key=key, serialize=False)
    with pytest.raises(TypeError, match="bytes"):  # what 0.4 raised
        keyed_store.set(np.array([1, 2, 3]), key=key, serialize=False)
    # deserialize=False returns whatever is stored, never a cached object.
    key = keyed_store.set([1, 2, 3])
    assert keyed_store.get(key) == [1, 2, 3]
    raw = keyed_store.get(key, deserialize=False)
    assert isinstance(raw, bytes)
    assert raw != [1, 2, 3]


def test_set_batch_with_keys(keyed_store: Store[str]) -> None:
    keys = keyed_store.set_batch(["a", "b", "c"], keys=["k1", None, "k3"])
    assert keys[0] == "k1"
    assert keys[2] == "k3"
    assert [keyed_store.get(key) for key in keys] == ["a", "b", "c"]
    raw = keyed_store.set_batch([b"x", b"y"], serialize=False)
    assert [keyed_store.get(key, deserialize=False) for key in raw] == [b"x", b"y"]
    with pytest.raises(ConfigurationError, match="3 objects but 1 keys"):
        keyed_store.set_batch(["a", "b", "c"], keys=["k1"])


@pytest.mark.parametrize(
    "key", ["", ".hidden", "a/b", "a:b", "{a}", "k" * 201, 42, "sp ace"]
)
def test_user_keys_are_validated(keyed_store: Store[str], key: Any) -> None:
    with pytest.raises(InvalidKeyError) as info:
        keyed_store.set("x", key=key)
    assert type(keyed_store).__name__ in str(info.value)


def test_proxy_with_key_and_from_key(keyed_store: Store[str]) -> None:
    p = keyed_store.proxy([1, 2, 3], key="proxied")
    assert get_key(p) == "proxied"
    assert p == [1, 2, 3]
    again = keyed_store.proxy(key="proxied")
    assert again == [1, 2, 3]
    assert keyed_store.proxy(None, key="proxied") == [1, 2, 3]
    with pytest.raises(ConfigurationError, match="needs an object or the key"):
        keyed_store.proxy()


def test_proxy_serialize_false_resolves_to_the_bytes(keyed_store: Store[str]) -> None:
    p = keyed_store.proxy(b"raw bytes", serialize=False)
    copy = pickle.loads(pickle.dumps(p))
    assert extract(copy) == b"raw bytes"
    with pytest.raises(SerializationError):
        keyed_store.proxy("mystring", serialize=False)


def test_strict_proxy_resolves_to_the_current_version(keyed_store: Store[str]) -> None:
    keyed_store.set("old", key="versioned")
    assert keyed_store.get("versioned") == "old"  # cached
    writer = type(keyed_store)(**keyed_store.config())
    lax = keyed_store.proxy(key="versioned")
    strict = keyed_store.proxy(key="versioned", strict=True)
    writer.set("new", key="versioned")
    assert pickle.loads(pickle.dumps(lax)) == "old"
    assert pickle.loads(pickle.dumps(strict)) == "new"
    writer.close()


def test_proxy_batch_from_objects_and_keys(keyed_store: Store[str]) -> None:
    proxies = keyed_store.proxy_batch(["a", "b"], keys=["pa", "pb"])
    assert [get_key(p) for p in proxies] == ["pa", "pb"]
    assert proxies == ["a", "b"]
    again = keyed_store.proxy_batch(keys=["pa", "pb"])
    assert [extract(p) for p in again] == ["a", "b"]
    raw = keyed_store.proxy_batch([b"1", b"2"], serialize=False)
    assert [extract(p) for p in raw] == [b"1", b"2"]
    with pytest.raises(ConfigurationError):
        keyed_store.proxy_batch(None, keys=None)


def test_evict_proxy_with_user_key(keyed_store: Store[str]) -> None:
    p = keyed_store.proxy("bye", key="evicted", evict=True)
    assert not is_resolved(p)
    assert p == "bye"
    assert not keyed_store.exists("evicted")


def test_stats_per_key_and_per_proxy(keyed_store: Store[str]) -> None:
    with pytest.raises(ConfigurationError, match="stats=True"):
        keyed_store.stats("key")
    config = {**keyed_store.config(), "name": keyed_store.name + "-s", "stats": True}
    store = type(keyed_store)(**config)
    ps.store.register_store(store)
    assert store.stats("missing") == {}
    p = store.proxy([1, 2, 3], key="counted")
    ps.proxy.resolve(p)
    stats = store.stats("counted")
    assert stats["set"].calls == 1
    assert stats["get"].calls == 1
    assert stats["get"].avg_time_ms > 0
    assert stats["get"].min_time_ms <= stats["get"].max_time_ms
    assert store.stats(p)["resolve"].calls == 1
    store.get("counted")
    assert stats["get"].calls == 1  # a copy, not the live counters
    assert store.stats("counted")["cache_hit"].calls == 1
    ps.store.unregister_store(store.name)
    store.close()


def test_stats_survive_a_rebuild_from_a_proxy(keyed_store: Store[str]) -> None:
    config = {**keyed_store.config(), "name": keyed_store.name + "-s", "stats": True}
    store = type(keyed_store)(**config)
    p = store.proxy([1, 2, 3])
    # Nothing is registered under the name: resolving rebuilds the store from
    # the configuration the proxy carries, stats included.
    assert ps.store.get_store(store.name) is None
    assert p == [1, 2, 3]
    rebuilt = ps.store.get_store(store.name)
    assert rebuilt is not None
    assert rebuilt is not store
    assert rebuilt.stats(get_key(p))["get"].calls == 1
    ps.store.unregister_store(store.name)
    rebuilt.close()
    store.close()


def test_stats_memory_is_bounded() -> None:
    from proxystore.metrics import StoreMetrics

    metrics = StoreMetrics(max_keys=3)
    for index in range(10):
        metrics.record("get", 0.001, 1, key=f"k{index}")
    assert [metrics.for_key(f"k{index}") != {} for index in range(10)] == [
        False
    ] * 7 + [True] * 3
    assert metrics["get"].count == 10


def test_0_4_names_that_changed_warn_and_still_work(keyed_store: Store[str]) -> None:
    with pytest.warns(DeprecationWarning, match=r"config\(\)"):
        assert keyed_store.kwargs == keyed_store.config()
    with pytest.warns(DeprecationWarning, match="the store makes the key"):
        key = keyed_store.create_key("obj")
    with pytest.warns(DeprecationWarning, match="serialize=False"):
        keyed_store.set_bytes(key, b"raw")
    with pytest.warns(DeprecationWarning, match="deserialize=False"):
        assert keyed_store.get_bytes(key) == b"raw"
    with pytest.warns(DeprecationWarning, match="get_bytes"):
        assert keyed_store.get_bytes("absent") is None


class MintingOnlyStore(AsyncLocalStore):
    """A user's driver written before user keys: its writes take no key."""

    _USER_KEY_REFUSAL = "it is a test driver"

    async def _aset_bytes(self, payload: Any) -> str:  # type: ignore[override]
        return await super()._aset_bytes(payload)

    async def _aset_bytes_batch(self, payloads: Any) -> list[str]:  # type: ignore[override]
        return [await self._aset_bytes(payload) for payload in payloads]


async def test_a_driver_without_user_keys_keeps_working(store_name: str) -> None:
    store = MintingOnlyStore(store_name)
    key = await store.aset("a")
    keys = await store.aset_batch(["b", "c"], keys=[None, None])
    assert [await store.aget(k) for k in [key, *keys]] == ["a", "b", "c"]
    assert await store.aget_timestamp(key) > 0
    with pytest.raises(InvalidKeyError, match="it is a test driver"):
        await store.aset("d", key="chosen")


def test_0_4_store_factory_form_warns_and_resolves(keyed_store: Store[str]) -> None:
    from proxystore.store.base import StoreFactory

    key = keyed_store.set([1, 2, 3])
    kwargs = {k: v for k, v in keyed_store.config().items() if k != "name"}
    with pytest.warns(DeprecationWarning, match=r"store.proxy\(key=...\)"):
        factory: Any = StoreFactory(  # type: ignore[call-arg]
            key, type(keyed_store), keyed_store.name, store_kwargs=kwargs
        )
    assert factory() == [1, 2, 3]
    assert pickle.loads(pickle.dumps(factory))() == [1, 2, 3]
    with pytest.warns(DeprecationWarning, match="get_store"):
        assert factory.get_store() is keyed_store
    with pytest.warns(DeprecationWarning, match="0.4"):
        evicting: Any = StoreFactory(  # type: ignore[call-arg]
            key, type(keyed_store), keyed_store.name, kwargs, evict=True
        )
    assert evicting() == [1, 2, 3]
    assert not keyed_store.exists(key)
    raw_key = keyed_store.set(b"raw", serialize=False)
    with pytest.warns(DeprecationWarning, match="0.4"):
        raw: Any = StoreFactory(  # type: ignore[call-arg]
            raw_key, type(keyed_store), keyed_store.name, kwargs, serialize=False
        )
    assert raw() == b"raw"
    with pytest.raises(TypeError, match="unexpected arguments: 'store_kwargs'"):
        StoreFactory(keyed_store.store_config, key, store_kwargs={})  # type: ignore[call-arg]


def test_local_store_dict_stays_in_the_process(store_name: str) -> None:
    from proxystore import aio
    from proxystore.store.local import LocalStore

    data: dict[str, bytes] = {}
    store = LocalStore(store_name, store_dict=data)
    ps.store.register_store(store)
    key = store.set([1, 2], key="mine")
    assert set(data) == {key}
    assert "store_dict" not in store.config()
    p = store.proxy([3])
    assert b"store_dict" not in pickle.dumps(p)
    async_face = aio.get_store(store_name)
    assert async_face is not None
    assert async_face._objects is data  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(p)) == [3]
