"""StoreExecutor over a real ProcessPoolExecutor, with bytes counted."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxystore.exceptions import ConfigurationError
from proxystore.executor import (
    ProxyAlways,
    ProxyNever,
    ProxySize,
    ProxyTypes,
    StoreExecutor,
)
from proxystore.proxy import Proxy, is_resolved
from proxystore.store import register_store, unregister_store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore

SIZE = 1_000_000


class CountingPool(concurrent.futures.ProcessPoolExecutor):
    """A process pool that counts the pickled bytes of what is submitted."""

    def __init__(self) -> None:
        super().__init__(1, mp_context=multiprocessing.get_context("spawn"))
        self.sent = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.sent += len(pickle.dumps((fn, args, kwargs)))
        return super().submit(fn, *args, **kwargs)


def double(array: np.ndarray, *, offset: int = 0) -> np.ndarray:
    return array * 2 + offset


def kind_of(value: Any) -> str:
    return type(value).__name__


def describe(value: Any) -> tuple[bool, str]:
    return type(value) is Proxy, value.__class__.__name__


def wait_then_double(started: Any, release: Any, array: np.ndarray) -> np.ndarray:
    """Say the task started, wait (bounded) to be released, then double."""
    started.set()
    if not release.wait(60):
        raise TimeoutError("never released")
    return array * 2


@pytest.fixture
def file_store(store_name: str, tmp_path: Path) -> Any:
    store = FileStore(store_name, tmp_path / "store", metrics=True)
    register_store(store)
    yield store
    unregister_store(store_name)
    store.close()


def test_large_arguments_and_results_travel_as_proxies(file_store: FileStore) -> None:
    pool = CountingPool()
    array = np.ones(SIZE, dtype=np.uint8)
    with StoreExecutor(pool, file_store, should_proxy=ProxySize(10_000)) as executor:
        future = executor.submit(double, array, offset=1)
        result = future.result(60)
        assert pool.sent < 5_000  # the 1 MB array did not go through the pool
        assert type(result) is Proxy
        assert not is_resolved(result)
        assert len(pickle.dumps(result)) < 2_000
        assert int(result.sum()) == 3 * SIZE
        # The argument was evicted when the task ended, the result on use.
        assert list(Path(file_store.store_dir).iterdir()) == []
        assert file_store.metrics is not None
        assert file_store.metrics["set"].calls == 1
        assert file_store.metrics["set"].bytes >= SIZE

        small = executor.submit(kind_of, b"x").result(60)
        assert small == "bytes"


def test_results_as_values(file_store: FileStore) -> None:
    pool = CountingPool()
    array = np.ones(SIZE, dtype=np.uint8)
    with StoreExecutor(
        pool, file_store, should_proxy=ProxySize(10_000), result_as="value"
    ) as executor:
        result = executor.submit(double, array, offset=1).result(60)
        # The object itself, fetched (and evicted) before the future completed;
        # its bytes came through the store, not the pool.
        assert type(result) is np.ndarray
        assert int(result.sum()) == 3 * SIZE
        assert pool.sent < 5_000
        assert list(Path(file_store.store_dir).iterdir()) == []
        assert file_store.metrics is not None
        assert file_store.metrics["get"].bytes >= SIZE
        # Results the policy leaves alone are values either way.
        assert executor.submit(kind_of, b"x").result(60) == "bytes"


def test_results_as_proxies_by_default(file_store: FileStore) -> None:
    executor = StoreExecutor(concurrent.futures.ThreadPoolExecutor(1), file_store)
    assert executor.result_as == "proxy"
    with executor:
        result = executor.submit(double, np.ones(SIZE, dtype=np.uint8)).result(60)
        assert type(result) is Proxy
        assert not is_resolved(result)
        assert len(list(Path(file_store.store_dir).iterdir())) == 1
        assert int(result.sum()) == 2 * SIZE  # the first use evicts
        assert list(Path(file_store.store_dir).iterdir()) == []


def test_result_proxy_passed_on_resolves_in_the_next_worker(
    file_store: FileStore,
) -> None:
    pool = CountingPool()
    with StoreExecutor(pool, file_store, should_proxy=ProxySize(10_000)) as executor:
        first = executor.submit(double, np.ones(SIZE, dtype=np.uint8)).result(60)
        sent = pool.sent
        second = executor.submit(double, first).result(60)
        assert pool.sent - sent < 5_000  # the proxy went, not the array
        assert not is_resolved(first)  # never fetched here
        assert int(second.sum()) == 4 * SIZE
    # The first result was evicted by its use in the second task's worker.
    assert list(Path(file_store.store_dir).iterdir()) == []


@pytest.mark.parametrize("result_as", ["proxy", "value"])
def test_cancelled_while_running_leaves_nothing(
    file_store: FileStore, result_as: str
) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        started, release = manager.Event(), manager.Event()
        executor = StoreExecutor(
            concurrent.futures.ProcessPoolExecutor(1, mp_context=context),
            file_store,
            should_proxy=ProxySize(10_000),
            result_as=result_as,  # type: ignore[arg-type]
        )
        future = executor.submit(
            wait_then_double, started, release, np.ones(SIZE, dtype=np.uint8)
        )
        assert started.wait(60)
        assert future.cancel()  # the caller's future; the task still runs
        release.set()
        executor.shutdown(wait=True)  # the pool's callbacks ran before this returns
    # The argument was evicted when the task ended, the unused result too.
    assert list(Path(file_store.store_dir).iterdir()) == []


def test_never_policy_sends_values(file_store: FileStore) -> None:
    pool = CountingPool()
    with StoreExecutor(pool, file_store, should_proxy=ProxyNever()) as executor:
        result = executor.submit(double, np.ones(SIZE, dtype=np.uint8)).result(60)
    assert pool.sent > SIZE
    assert type(result) is np.ndarray


def test_map_and_type_policy(file_store: FileStore) -> None:
    with StoreExecutor(
        concurrent.futures.ThreadPoolExecutor(2),
        file_store,
        should_proxy=ProxyTypes(list),
        should_proxy_result=ProxyAlways(),
    ) as executor:
        seen = list(executor.map(describe, [[1], "s"]))
    # Workers saw proxies of lists and plain strings; results came as proxies.
    assert all(type(result) is Proxy for result in seen)
    assert seen == [(True, "list"), (False, "str")]


def test_bad_configuration(store_name: str) -> None:
    store = LocalStore(store_name)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    with pytest.raises(ConfigurationError, match="Executor"):
        StoreExecutor(object(), store)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="callable"):
        StoreExecutor(pool, store, should_proxy=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="result_as"):
        StoreExecutor(pool, store, result_as="values")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="min_bytes"):
        ProxySize(-1)
    with pytest.raises(ConfigurationError, match="ProxyTypes"):
        ProxyTypes()
    pool.shutdown()
    store.close()


def test_dask_client_executor(file_store: FileStore) -> None:
    from distributed import Client

    with Client(processes=False, n_workers=1, dashboard_address=None) as client:
        executor = StoreExecutor(
            client.get_executor(), file_store, should_proxy=ProxySize(1_000)
        )
        result = executor.submit(double, np.ones(10_000, dtype=np.uint8)).result(60)
        assert type(result) is Proxy
        assert int(result.sum()) == 20_000
    assert list(Path(file_store.store_dir).iterdir()) == []


def _parsl_run(
    executor: Any, label: str, run_dir: Path, file_store: FileStore
) -> dict[str, Any]:
    """Load `executor` in a DataFlowKernel; run one proxied and one plain task."""
    import parsl
    from parsl.config import Config

    dfk = parsl.load(
        Config(
            executors=[executor],
            run_dir=str(run_dir),
            strategy="none",
            usage_tracking=0,
        )
    )
    try:
        array = np.ones(SIZE, dtype=np.uint8)
        loaded = dfk.executors[label]
        proxying = StoreExecutor(loaded, file_store, should_proxy=ProxySize(10_000))
        result = proxying.submit(double, array, offset=1).result(120)
        proxied_bytes = loaded.sent
        outcome = {
            "proxied_bytes": proxied_bytes,
            "result_was_proxy": type(result) is Proxy,
            "sum": int(result.sum()),
            "left_in_store": list(Path(file_store.store_dir).iterdir()),
        }
        plain = StoreExecutor(loaded, file_store, should_proxy=ProxyNever())
        plain_result = plain.submit(double, array).result(120)
        outcome["plain_bytes"] = loaded.sent - proxied_bytes
        outcome["plain_sum"] = int(plain_result.sum())
        proxying.shutdown()  # Parsl's executor is the kernel's to shut down
        assert loaded.submit(kind_of, {}, b"x").result(60) == "bytes"
        return outcome
    finally:
        dfk.cleanup()
        parsl.clear()


@pytest.mark.parsl
def test_parsl_thread_pool_executor(file_store: FileStore, tmp_path: Path) -> None:
    from parsl.executors import ThreadPoolExecutor

    class CountingThreads(ThreadPoolExecutor):  # type: ignore[misc]
        """Counts the pickled bytes of what is submitted."""

        sent = 0

        def submit(self, func: Any, spec: Any, *args: Any, **kwargs: Any) -> Any:
            self.sent += len(pickle.dumps((func, args, kwargs)))
            return super().submit(func, spec, *args, **kwargs)

    outcome = _parsl_run(
        CountingThreads(label="threads", max_threads=2),
        "threads",
        tmp_path / "runinfo",
        file_store,
    )
    assert outcome["proxied_bytes"] < 5_000
    assert outcome["plain_bytes"] > SIZE
    assert outcome["result_was_proxy"]
    assert outcome["sum"] == 3 * SIZE
    assert outcome["plain_sum"] == 2 * SIZE
    assert outcome["left_in_store"] == []


@pytest.mark.heavy
@pytest.mark.parsl
@pytest.mark.timeout(180)
def test_parsl_high_throughput_executor(
    file_store: FileStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import sys

    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    class CountingHTEX(HighThroughputExecutor):  # type: ignore[misc]
        """Counts the bytes of every task sent to the interchange."""

        sent = 0

        def submit_payload(self, context: Any, buffer: bytes) -> Any:
            self.sent += len(buffer)
            return super().submit_payload(context, buffer)

    root = Path(__file__).resolve().parent.parent
    # Workers start from PATH and import this module (and proxystore).
    monkeypatch.setenv(
        "PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    )
    monkeypatch.setenv("PYTHONPATH", str(root))
    htex = CountingHTEX(
        label="htex",
        address="127.0.0.1",
        max_workers_per_node=1,
        cores_per_worker=1,
        heartbeat_period=2,
        heartbeat_threshold=10,
        poll_period=100,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
    )
    outcome = _parsl_run(htex, "htex", tmp_path / "runinfo", file_store)
    # Only the proxy crossed to the workers' processes, not the 1 MB array.
    assert outcome["proxied_bytes"] < 5_000
    assert outcome["plain_bytes"] > SIZE
    assert outcome["result_was_proxy"]
    assert outcome["sum"] == 3 * SIZE
    assert outcome["plain_sum"] == 2 * SIZE
    assert outcome["left_in_store"] == []
