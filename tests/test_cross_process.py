"""Proxies resolved in other processes, started by spawn and by fork."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxystore import registry
from proxystore.exceptions import MissingKeyError
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from proxystore.store.utils import get_key

CONTEXTS = ["spawn", "fork"]


def _checksum(blob: bytes) -> float:
    proxy = pickle.loads(blob)
    return float(np.asarray(proxy).sum())


def _resolve_error(blob: bytes) -> str:
    proxy = pickle.loads(blob)
    try:
        len(proxy)
    except MissingKeyError as err:
        return f"{type(err).__name__}: {err}"
    return "resolved"


def _write_and_proxy(store_dir: str, name: str) -> bytes:
    store = FileStore(name, store_dir)
    return pickle.dumps(store.proxy({"from": "child", "array": np.arange(10)}))


def _run(context: str, function: Any, *args: Any) -> Any:
    ctx = multiprocessing.get_context(context)
    with ctx.Pool(1) as pool:
        return pool.apply_async(function, args).get(timeout=60)


@pytest.mark.parametrize("context", CONTEXTS)
def test_file_store_proxy_resolves_in_child(
    context: str, store_name: str, tmp_path: Path
) -> None:
    store = FileStore(store_name, tmp_path)
    array = np.arange(1_000_000, dtype=np.float64)
    blob = pickle.dumps(store.proxy(array))
    assert len(blob) < 400
    assert _run(context, _checksum, blob) == float(array.sum())


@pytest.mark.parametrize("context", CONTEXTS)
def test_child_reports_missing_key_clearly(
    context: str, store_name: str, tmp_path: Path
) -> None:
    store = FileStore(store_name, tmp_path)
    proxy = store.proxy([1, 2])
    blob = pickle.dumps(proxy)
    store.evict(get_key(proxy))
    message = _run(context, _resolve_error, blob)
    assert message.startswith("MissingKeyError")
    assert store_name in message


@pytest.mark.parametrize("context", CONTEXTS)
def test_proxy_made_in_child_resolves_in_parent(
    context: str, store_name: str, tmp_path: Path
) -> None:
    blob = _run(context, _write_and_proxy, str(tmp_path), store_name)
    registry.unregister(store_name)
    proxy = pickle.loads(blob)
    assert proxy["from"] == "child"
    np.testing.assert_array_equal(proxy["array"], np.arange(10))


def test_local_store_proxy_resolves_in_forked_child(store_name: str) -> None:
    store = LocalStore(store_name)
    blob = pickle.dumps(store.proxy(np.ones(100)))
    assert _run("fork", _checksum, blob) == 100.0


def test_local_store_proxy_in_spawned_child_is_missing(store_name: str) -> None:
    store = LocalStore(store_name)
    blob = pickle.dumps(store.proxy([1]))
    assert _run("spawn", _resolve_error, blob).startswith("MissingKeyError")


def _write_many(store_dir: str, name: str, count: int) -> list[str]:
    store = FileStore(name, store_dir)
    return [store.set(("child", i)) for i in range(count)]


def test_file_store_shared_by_two_processes(store_name: str, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = [
            pool.apply_async(_write_many, (str(tmp_path), store_name, 50))
            for _ in range(2)
        ]
        keys = [key for result in results for key in result.get(timeout=60)]
    assert len(set(keys)) == 100
    store = FileStore(store_name, tmp_path)
    assert sorted(store.get(key)[1] for key in keys) == sorted(list(range(50)) * 2)
