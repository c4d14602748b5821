"""Proxies returned to the producer already resolved (``populate_target=True``)."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

from proxystore.aio.local import LocalStore as AsyncLocalStore
from proxystore.exceptions import ConfigurationError
from proxystore.proxy import extract, is_resolved
from proxystore.store import register_store, unregister_store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore


def _length(blob: bytes) -> int:
    return len(pickle.loads(blob))


def test_producer_proxy_holds_the_same_object(store_name: str) -> None:
    store = LocalStore(store_name, metrics=True)
    data = np.zeros(10)
    proxy = store.proxy(data, populate_target=True)
    assert is_resolved(proxy)
    assert extract(proxy) is data
    proxy[0] = 5  # the producer's object stays writable
    assert data[0] == 5
    assert store.metrics is not None
    assert store.metrics["get"].calls == 0
    assert store.metrics["set"].calls == 1
    store.close()


def test_pickled_proxy_carries_no_target(store_name: str, tmp_path: Path) -> None:
    store = FileStore(store_name, tmp_path)
    register_store(store)
    big = b"x" * 100_000
    proxy = store.proxy(big, populate_target=True)
    blob = pickle.dumps(proxy)
    assert len(blob) < 2_000
    copy = pickle.loads(blob)
    assert not is_resolved(copy)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_length, (blob,)).get(60) == 100_000
    unregister_store(store_name)
    store.close()


def test_default_stays_lazy_and_flag_checked(store_name: str) -> None:
    store = LocalStore(store_name)
    assert not is_resolved(store.proxy([1]))
    with pytest.raises(ConfigurationError, match="populate_target"):
        store.proxy([1], populate_target="yes")  # type: ignore[arg-type]
    store.close()


async def test_async_face(store_name: str) -> None:
    store = AsyncLocalStore(store_name)
    data = {"a": 1}
    proxy = await store.aproxy(data, populate_target=True)
    assert extract(proxy) is data
    await store.aclose()
