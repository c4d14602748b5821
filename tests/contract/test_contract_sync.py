# Generated from tests/contract/test_contract_aio.py by scripts/generate_sync.py: DO NOT EDIT.
"""The store contract: what every store does, on both faces.

Written once, for the face in `proxystore.store`; scripts/generate_sync.py
generates test_contract_sync.py from it for `proxystore.store` (never edit
that file). Each test runs on every store of `tests/contract/conftest.py`.
What only one face has (threads against tasks, two event loops) is tested
by hand in tests/aio/ and tests/store/.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from proxystore import registry
from proxystore.store import init_store
from proxystore.store.base import Store
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
from tests.contract._compat import resolve
from tests.contract.conftest import StoreSpec

pytestmark = pytest.mark.timeout(60)

OBJECTS = [b"bytes", "str", 42, None, [1, 2], {"a": 1, "b": (2.5, "c")}]


@pytest.fixture
def store(spec: StoreSpec, store_name: str) -> Iterator[Store[Any]]:
    store: Store[Any] = init_store(spec.kind, name=store_name, **spec.kwargs)
    with store:
        yield store


@pytest.mark.parametrize("obj", OBJECTS, ids=[type(o).__name__ for o in OBJECTS])
def test_set_get_exists_evict(store: Store[Any], obj: Any) -> None:
    key = store.set(obj)
    assert store.exists(key)
    assert store.get(key) == obj
    store.evict(key)
    assert not store.exists(key)
    assert store.get(key, default="gone") == "gone"


def test_a_missing_key_answers_the_default(store: Store[Any]) -> None:
    key = store.set(1)
    store.evict(key)
    assert store.get(key) is None
    store.evict(key)  # evicting a missing key is no error


def test_a_stored_none_is_not_a_missing_key(store: Store[Any]) -> None:
    key = store.set(None)
    assert store.exists(key)
    assert store.get(key, default="missing") is None
    assert resolve(store.proxy(None)) is None


def test_an_array_round_trips_and_comes_back_read_only(
    store: Store[Any],
) -> None:
    array = np.arange(1_000_000, dtype=np.int64)
    key = store.set(array)
    got = store.get(key)
    np.testing.assert_array_equal(got, array)
    assert not got.flags.writeable


def test_a_proxy_resolves_to_its_object(store: Store[Any]) -> None:
    p = store.proxy([1, 2, 3])
    assert not is_resolved(p)
    assert resolve(p) == [1, 2, 3]
    assert is_resolved(p)
    assert isinstance(p, list)


def test_a_pickled_proxy_is_small_and_resolves(store: Store[Any]) -> None:
    p = store.proxy(np.zeros(1_000_000, dtype=np.uint8))
    data = pickle.dumps(p)
    assert len(data) <= 1024
    restored = pickle.loads(data)
    assert not is_resolved(restored)
    assert (resolve(restored)).shape == (1_000_000,)


def test_a_proxy_resolves_after_its_store_is_forgotten(
    store: Store[Any],
) -> None:
    # A consumer that never initialised the store rebuilds it from the proxy.
    data = pickle.dumps(store.proxy({"x": 1}))
    registry.unregister(store.name)
    assert resolve(pickle.loads(data)) == {"x": 1}


def test_a_proxy_of_an_evicted_key_names_key_and_store(
    store: Store[Any],
) -> None:
    p = store.proxy("value")
    key = get_key(p)
    store.evict(key)
    with pytest.raises(MissingKeyError) as info:
        resolve(p)
    assert info.value.key == key
    assert info.value.store == store.name


def test_a_proxy_with_evict_removes_its_object_once_resolved(
    store: Store[Any],
) -> None:
    p = store.proxy({"x": 1}, evict=True)
    key = get_key(p)
    assert (resolve(p))["x"] == 1
    assert not store.exists(key)


def test_proxy_from_key(store: Store[Any]) -> None:
    key = store.set({"k": "v"})
    assert resolve(store.proxy_from_key(key)) == {"k": "v"}


def test_batches(store: Store[Any]) -> None:
    keys = store.set_batch([1, "two", b"three"])
    assert store.get_batch(keys) == [1, "two", b"three"]
    proxies = store.proxy_batch([[1], [2]])
    assert [resolve(p) for p in proxies] == [[1], [2]]
    store.evict(keys[0])
    assert store.get_batch(keys, default="none") == ["none", "two", b"three"]


@pytest.mark.parametrize("batch", ["abc", b"abc", 5])
def test_a_batch_must_be_a_collection(store: Store[Any], batch: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="set_batch"):
        store.set_batch(batch)
    with pytest.raises(InvalidArgumentError, match="get_batch"):
        store.get_batch(batch)
    with pytest.raises(InvalidArgumentError, match="proxy_batch"):
        store.proxy_batch(batch)
    assert store.set_batch(["abc"]) != []  # in a list it is one object


def test_a_custom_serializer(store: Store[Any]) -> None:
    p = store.proxy(
        "abc",
        serializer=lambda s: s.encode()[::-1],
        deserializer=lambda b: bytes(b)[::-1].decode(),
    )
    assert resolve(p) == "abc"


def test_a_corrupt_payload_raises_serialization_error(
    store: Store[Any],
) -> None:
    key = store.set(b"x", serializer=lambda obj: b"\x80garbage")
    with pytest.raises(SerializationError):
        store.get(key)


@pytest.mark.parametrize("key", ["", 5, None, ("a",)])
def test_a_malformed_key_raises_invalid_key_error(
    store: Store[Any], key: Any
) -> None:
    with pytest.raises(InvalidKeyError):
        store.get(key)
    with pytest.raises(InvalidKeyError):
        store.exists(key)


def test_the_cache_keeps_what_was_read_until_evicted(store: Store[Any]) -> None:
    key = store.set([1])
    assert not store.is_cached(key)
    store.get(key)
    assert store.is_cached(key)
    assert store.is_cached(key, strict=True)
    store.evict(key)
    assert not store.is_cached(key)


def test_timestamps(store: Store[Any]) -> None:
    key = store.set("x")
    assert store.get_timestamp(key) >= 0.0
    store.evict(key)
    with pytest.raises(MissingKeyError):
        store.get_timestamp(key)


def test_metrics_are_off_by_default(store: Store[Any]) -> None:
    store.set(1)
    assert store.metrics is None


def test_a_closed_store_refuses_operations(store: Store[Any]) -> None:
    key = store.set(1)
    store.close()
    with pytest.raises(StoreClosedError, match=store.name):
        store.set(1)
    with pytest.raises(StoreClosedError):
        store.get(key)


def test_config_rebuilds_the_same_store(store: Store[Any]) -> None:
    key = store.set("shared")
    config = store.config()
    assert config["name"] == store.name
    twin = type(store)(**config)
    with twin:
        assert twin.get(key) == "shared"


def test_a_future_delivers_its_value(spec: StoreSpec, store: Store[Any]) -> None:
    if not spec.futures:
        with pytest.raises(ConfigurationError, match="future"):
            store.future(timeout=10)
        return
    future = store.future(timeout=10)
    assert not future.done()
    future.set_result({"answer": 42})
    assert future.done()
    assert future.result() == {"answer": 42}
