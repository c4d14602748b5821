"""The sync face over LocalStore and FileStore: what the contract does not cover.

What every store does on both faces is in tests/contract/.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import proxystore as ps
from proxystore.exceptions import (
    BatchWriteError,
    InvalidKeyError,
    MissingKeyError,
    SerializationError,
    StoreClosedError,
)
from proxystore.proxy import is_resolved
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from proxystore.store.utils import get_key


@pytest.fixture(params=["local", "file"])
def store(
    request: pytest.FixtureRequest, store_name: str, tmp_path: Path
) -> Iterator[Store[Any]]:
    if request.param == "local":
        store: Store[Any] = ps.store.init_store("local", name=store_name)
    else:
        store = ps.store.init_store(
            "file", name=store_name, store_dir=tmp_path / "objects"
        )
    yield store
    store.close()


def test_stored_none_is_not_a_missing_key(store: Store[Any]) -> None:
    p = store.proxy(None)
    assert p == None  # noqa: E711 - the proxy forwards ==
    assert not bool(p)


def test_proxy_resolves_to_the_object_and_is_instance(store: Store[Any]) -> None:
    p = store.proxy([1, 2, 3])
    assert not is_resolved(p)
    assert isinstance(p, list)
    assert p == [1, 2, 3]
    assert is_resolved(p)


def test_pickled_proxy_is_small_whatever_the_target(store: Store[Any]) -> None:
    p = store.proxy(np.zeros(10_000_000, dtype=np.uint8))
    assert len(pickle.dumps(p)) <= 400
    restored = pickle.loads(pickle.dumps(p))
    assert not is_resolved(restored)
    assert restored.shape == (10_000_000,)


def test_cache_keeps_recent_objects_and_metrics_count(store_name: str) -> None:
    store = LocalStore(store_name, metrics=True)
    key = store.set([1])
    assert not store.is_cached(key)
    store.get(key)
    assert store.is_cached(key)
    store.get(key)
    assert store.metrics is not None
    assert store.metrics["get"].count == 1
    assert store.metrics["cache_hit"].count == 1
    assert store.metrics["set"].count == 1
    assert store.metrics["set"].bytes > 0
    store.evict(key)
    assert not store.is_cached(key)


def test_cache_size_zero_disables_cache(store_name: str) -> None:
    store = LocalStore(store_name, cache_size=0)
    key = store.set([1])
    store.get(key)
    assert not store.is_cached(key)


def test_corrupt_payload_raises_serialization_error(store: Store[Any]) -> None:
    key = store.set(b"x", serializer=lambda obj: b"\x80garbage")
    with pytest.raises(SerializationError):
        store.get(key)
    with pytest.raises(SerializationError):
        store.proxy_from_key(key) + 1


def test_closed_store_raises(store_name: str) -> None:
    store = LocalStore(store_name)
    with store:
        store.set(1)
    with pytest.raises(StoreClosedError, match=store_name):
        store.set(1)


def test_threads_share_one_store(store: Store[Any]) -> None:
    barrier = threading.Barrier(8)

    def work(index: int) -> list[int]:
        barrier.wait(timeout=10)
        keys = [store.set([index, i]) for i in range(50)]
        values = [store.get(key) for key in keys]
        for key in keys:
            store.evict(key)
        return [value[1] for value in values if value[0] == index]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    assert all(result == list(range(50)) for result in results)


def test_file_store_rejects_keys_that_leave_the_directory(
    store_name: str, tmp_path: Path
) -> None:
    store = FileStore(store_name, tmp_path / "d")
    (tmp_path / "secret").write_bytes(b"B" + b"secret")
    for key in ["../secret", "/etc/passwd", "a/b", "a\\b", ".hidden", "..", "x" * 201]:
        with pytest.raises(InvalidKeyError):
            store.get(key)
        with pytest.raises(InvalidKeyError):
            store.evict(key)


def test_file_store_writes_atomically(store_name: str, tmp_path: Path) -> None:
    store = FileStore(store_name, tmp_path)
    key = store.set(b"x" * 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]


def test_local_store_proxy_does_not_carry_store_contents(store_name: str) -> None:
    store = LocalStore(store_name)
    for _ in range(10):
        store.set(b"x" * 1_000_000)
    p = store.proxy(b"y")
    assert len(pickle.dumps(p)) < 400


class _Point:
    def __init__(self, x: int) -> None:
        self.x = x


def test_isinstance_on_unresolved_proxy_does_not_fetch(store: Store[Any]) -> None:
    p = pickle.loads(pickle.dumps(store.proxy(_Point(3))))
    assert isinstance(p, _Point)
    assert not isinstance(p, int)
    assert p.__class__ is _Point
    assert not is_resolved(p)
    assert p.x == 3
    assert is_resolved(p)


def test_isinstance_resolves_when_the_class_is_not_known(store: Store[Any]) -> None:
    p = store.proxy_from_key(store.set(_Point(1)))
    assert isinstance(p, _Point)
    assert is_resolved(p)
    custom = store.proxy(
        "abc", serializer=lambda s: s.encode(), deserializer=lambda b: b.decode()
    )
    assert isinstance(custom, str)
    assert is_resolved(custom)


def test_isinstance_of_evicted_proxy_answers_but_use_raises(store: Store[Any]) -> None:
    p = store.proxy([1, 2])
    store.evict(get_key(p))
    assert isinstance(p, list)
    with pytest.raises(MissingKeyError):
        len(p)


class FailingLocalStore(LocalStore):
    """A LocalStore whose writes fail from the `fail_at`-th on (a full memory, say)."""

    def __init__(self, name: str, fail_at: int) -> None:
        super().__init__(name)
        self.fail_at = fail_at
        self.writes = 0

    def _set_bytes(self, payload: Any) -> str:
        self.writes += 1
        if self.writes >= self.fail_at:
            raise MemoryError("no room for this object")
        return super()._set_bytes(payload)


def test_failed_local_batch_leaves_nothing(store_name: str) -> None:
    store = FailingLocalStore(store_name, fail_at=3)
    with pytest.raises(BatchWriteError) as info:
        store.set_batch([[i] * 100 for i in range(5)])
    assert "the 2 objects it wrote were removed" in str(info.value)
    assert repr(store_name) in str(info.value)
    assert "set_batch" in str(info.value)
    assert isinstance(info.value.__cause__, MemoryError)
    assert info.value.remaining == []
    assert store._objects == {}
    with pytest.raises(BatchWriteError):
        store.proxy_batch([1, 2, 3, 4])
    assert store._objects == {}
