"""The store contract: what every store does, on both faces.

Written once, for the face in `proxystore.aio`; scripts/generate_sync.py
generates test_contract_sync.py from it for `proxystore.store` (never edit
that file). Each test runs on every store of `tests/contract/conftest.py`.
What only one face has (threads against tasks, two event loops) is tested
by hand in tests/aio/ and tests/store/.
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from proxystore import registry
from proxystore.aio import init_store
from proxystore.aio.base import Store
from proxystore.exceptions import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidKeyError,
    MissingKeyError,
    SerializationError,
    StoreClosedError,
)
from proxystore.proxy import is_resolved
from proxystore.store.utils import get_key
from tests.contract._compat import aresolve
from tests.contract.conftest import StoreSpec

pytestmark = pytest.mark.timeout(60)

OBJECTS = [b"bytes", "str", 42, None, [1, 2], {"a": 1, "b": (2.5, "c")}]


@pytest.fixture
async def store(spec: StoreSpec, store_name: str) -> AsyncIterator[Store[Any]]:
    store: Store[Any] = init_store(spec.kind, name=store_name, **spec.kwargs)
    async with store:
        yield store


@pytest.mark.parametrize("obj", OBJECTS, ids=[type(o).__name__ for o in OBJECTS])
async def test_set_get_exists_evict(store: Store[Any], obj: Any) -> None:
    key = await store.aset(obj)
    assert await store.aexists(key)
    assert await store.aget(key) == obj
    await store.aevict(key)
    assert not await store.aexists(key)
    assert await store.aget(key, default="gone") == "gone"


async def test_a_missing_key_answers_the_default(store: Store[Any]) -> None:
    key = await store.aset(1)
    await store.aevict(key)
    assert await store.aget(key) is None
    await store.aevict(key)  # evicting a missing key is no error


async def test_a_stored_none_is_not_a_missing_key(store: Store[Any]) -> None:
    key = await store.aset(None)
    assert await store.aexists(key)
    assert await store.aget(key, default="missing") is None
    assert await aresolve(await store.aproxy(None)) is None


async def test_an_array_round_trips_and_comes_back_read_only(
    store: Store[Any],
) -> None:
    array = np.arange(1_000_000, dtype=np.int64)
    key = await store.aset(array)
    got = await store.aget(key)
    np.testing.assert_array_equal(got, array)
    assert not got.flags.writeable


async def test_a_proxy_resolves_to_its_object(store: Store[Any]) -> None:
    p = await store.aproxy([1, 2, 3])
    assert not is_resolved(p)
    assert await aresolve(p) == [1, 2, 3]
    assert is_resolved(p)
    assert isinstance(p, list)


async def test_a_pickled_proxy_is_small_and_resolves(store: Store[Any]) -> None:
    p = await store.aproxy(np.zeros(1_000_000, dtype=np.uint8))
    data = pickle.dumps(p)
    assert len(data) <= 1024
    restored = pickle.loads(data)
    assert not is_resolved(restored)
    assert (await aresolve(restored)).shape == (1_000_000,)


async def test_a_proxy_resolves_after_its_store_is_forgotten(
    store: Store[Any],
) -> None:
    # A consumer that never initialised the store rebuilds it from the proxy.
    data = pickle.dumps(await store.aproxy({"x": 1}))
    registry.unregister(store.name)
    assert await aresolve(pickle.loads(data)) == {"x": 1}


async def test_a_proxy_of_an_evicted_key_names_key_and_store(
    store: Store[Any],
) -> None:
    p = await store.aproxy("value")
    key = get_key(p)
    await store.aevict(key)
    with pytest.raises(MissingKeyError) as info:
        await aresolve(p)
    assert info.value.key == key
    assert info.value.store == store.name


async def test_a_proxy_with_evict_removes_its_object_once_resolved(
    store: Store[Any],
) -> None:
    p = await store.aproxy({"x": 1}, evict=True)
    key = get_key(p)
    assert (await aresolve(p))["x"] == 1
    assert not await store.aexists(key)


async def test_proxy_from_key(store: Store[Any]) -> None:
    key = await store.aset({"k": "v"})
    assert await aresolve(await store.aproxy_from_key(key)) == {"k": "v"}


async def test_batches(store: Store[Any]) -> None:
    keys = await store.aset_batch([1, "two", b"three"])
    assert await store.aget_batch(keys) == [1, "two", b"three"]
    proxies = await store.aproxy_batch([[1], [2]])
    assert [await aresolve(p) for p in proxies] == [[1], [2]]
    await store.aevict(keys[0])
    assert await store.aget_batch(keys, default="none") == ["none", "two", b"three"]


@pytest.mark.parametrize("batch", ["abc", b"abc", 5])
async def test_a_batch_must_be_a_collection(store: Store[Any], batch: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="set_batch"):
        await store.aset_batch(batch)
    with pytest.raises(InvalidArgumentError, match="get_batch"):
        await store.aget_batch(batch)
    with pytest.raises(InvalidArgumentError, match="proxy_batch"):
        await store.aproxy_batch(batch)
    assert await store.aset_batch(["abc"]) != []  # in a list it is one object


async def test_a_custom_serializer(store: Store[Any]) -> None:
    p = await store.aproxy(
        "abc",
        serializer=lambda s: s.encode()[::-1],
        deserializer=lambda b: bytes(b)[::-1].decode(),
    )
    assert await aresolve(p) == "abc"


async def test_a_corrupt_payload_raises_serialization_error(
    store: Store[Any],
) -> None:
    key = await store.aset(b"x", serializer=lambda obj: b"\x80garbage")
    with pytest.raises(SerializationError):
        await store.aget(key)


@pytest.mark.parametrize("key", ["", 5, None, ("a",)])
async def test_a_malformed_key_raises_invalid_key_error(
    store: Store[Any], key: Any
) -> None:
    with pytest.raises(InvalidKeyError):
        await store.aget(key)
    with pytest.raises(InvalidKeyError):
        await store.aexists(key)


async def test_the_cache_keeps_what_was_read_until_evicted(store: Store[Any]) -> None:
    key = await store.aset([1])
    assert not await store.ais_cached(key)
    await store.aget(key)
    assert await store.ais_cached(key)
    assert await store.ais_cached(key, strict=True)
    await store.aevict(key)
    assert not await store.ais_cached(key)


async def test_timestamps(store: Store[Any]) -> None:
    key = await store.aset("x")
    assert await store.aget_timestamp(key) >= 0.0
    await store.aevict(key)
    with pytest.raises(MissingKeyError):
        await store.aget_timestamp(key)


async def test_metrics_are_off_by_default(store: Store[Any]) -> None:
    await store.aset(1)
    assert store.metrics is None


async def test_a_closed_store_refuses_operations(store: Store[Any]) -> None:
    key = await store.aset(1)
    await store.aclose()
    with pytest.raises(StoreClosedError, match=store.name):
        await store.aset(1)
    with pytest.raises(StoreClosedError):
        await store.aget(key)


async def test_config_rebuilds_the_same_store(store: Store[Any]) -> None:
    key = await store.aset("shared")
    config = store.config()
    assert config["name"] == store.name
    twin = type(store)(**config)
    async with twin:
        assert await twin.aget(key) == "shared"


async def test_a_future_delivers_its_value(spec: StoreSpec, store: Store[Any]) -> None:
    if not spec.futures:
        with pytest.raises(ConfigurationError, match="future"):
            await store.afuture(timeout=10)
        return
    future = await store.afuture(timeout=10)
    assert not await future.done()
    await future.set_result({"answer": 42})
    assert await future.done()
    assert await future.result() == {"answer": 42}
