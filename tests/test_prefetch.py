"""Prefetching proxies: background fetches started on unpickle, taken at first use."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import multiprocessing
import os
import pickle
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxystore import _background, aio
from proxystore.aio.local import LocalStore as AsyncLocalStore
from proxystore.exceptions import MissingKeyError, SerializationError, StoreTimeoutError
from proxystore.proxy import Proxy, get_factory, is_resolved
from proxystore.serialize import Buffer
from proxystore.store import get_store, init_store
from proxystore.store.factory import StoreFactory
from proxystore.store.file import FileStore
from proxystore.store.utils import configure_prefetch, get_key, prefetch, resolve_async
from tests.background import submit

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _default_limits() -> Iterator[None]:
    yield
    _background.reset_configuration()


def _roundtrip(proxy: Proxy[Any]) -> Proxy[Any]:
    """What a consumer gets: the proxy pickled and unpickled (starts a prefetch)."""
    copy: Proxy[Any] = pickle.loads(pickle.dumps(proxy))
    return copy


def _factory(proxy: Proxy[Any]) -> StoreFactory[Any]:
    factory = get_factory(proxy)
    assert isinstance(factory, StoreFactory)
    return factory


def _gets(store_name: str) -> dict[str, int]:
    """Fetches made through each face of a store."""
    counts = {}
    for face, store in (
        ("sync", get_store(store_name)),
        ("async", aio.get_store(store_name)),
    ):
        assert store.metrics is not None
        counts[face] = store.metrics["get"].count
    return counts


def _wait_prefetch(proxy: Proxy[Any]) -> None:
    pending = _factory(proxy)._pending
    assert pending is not None
    concurrent.futures.wait([pending.future], TIMEOUT)
    assert pending.future.done()


async def _hold(gate: asyncio.Event) -> None:
    await gate.wait()


async def _open(gate: asyncio.Event) -> None:
    gate.set()


async def _noop() -> None:
    pass


class _StoreSlot:
    """Occupies the only background fetch slot of a store until released.

    Fetches from the store queue behind it, so a prefetch stays pending for
    as long as a test needs, without timing anything.
    """

    def __init__(self, store_name: str) -> None:
        configure_prefetch(max_concurrency=1, store=store_name)
        self.gate = asyncio.Event()
        self.held = submit(_hold(self.gate), store=store_name)

    def release(self) -> None:
        submit(_open(self.gate)).result(TIMEOUT)
        self.held.result(TIMEOUT)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_prefetch_then_first_use_is_one_fetch(face: str, store_name: str) -> None:
    configure_prefetch(face=face)  # type: ignore[arg-type]
    store = init_store("local", store_name, metrics=True)
    proxy = store.proxy(np.arange(1000), prefetch=True)
    consumer = _roundtrip(proxy)
    _settled(consumer)  # else first use may take the fetch over itself
    assert int(np.asarray(consumer).sum()) == 499500
    other = "async" if face == "sync" else "sync"
    assert _gets(store_name) == {face: 1, other: 0}


def test_producer_proxy_does_not_prefetch(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    proxy = store.proxy([1, 2], prefetch=True)
    assert _factory(proxy)._pending is None
    assert proxy == [1, 2]


def test_missing_key_surfaces_at_first_use(
    store_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(store_name, tmp_path)
    proxy = store.proxy([1, 2, 3], prefetch=True)
    blob = pickle.dumps(proxy)
    store.evict(get_key(proxy))
    consumer = pickle.loads(blob)
    _wait_prefetch(consumer)
    with pytest.raises(MissingKeyError) as info:
        len(consumer)
    assert info.value.key == get_key(proxy)
    assert info.value.store == store_name
    if sys.version_info >= (3, 11):
        assert any("background prefetch" in note for note in info.value.__notes__)
    # The failed fetch is reported once: the next use tries again.
    with pytest.raises(MissingKeyError):
        len(consumer)
    del consumer, info
    gc.collect()
    assert "never retrieved" not in caplog.text


def test_driver_error_keeps_its_cause(store_name: str, tmp_path: Path) -> None:
    store = FileStore(store_name, tmp_path)
    proxy = store.proxy({"a": 1}, prefetch=True)
    (tmp_path / get_key(proxy)).write_bytes(b"Pnot a pickle")
    consumer = _roundtrip(proxy)
    with pytest.raises(SerializationError) as info:
        consumer["a"]
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_failed_prefetch_never_used_is_not_logged(
    store_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = init_store("local", store_name, metrics=True)
    proxy = store.proxy([1], prefetch=True)
    blob = pickle.dumps(proxy)
    store.evict(get_key(proxy))
    consumer = pickle.loads(blob)
    _wait_prefetch(consumer)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        del consumer
        gc.collect()
        submit(_noop()).result(TIMEOUT)
    assert caplog.records == []


async def test_touched_synchronously_inside_a_coroutine(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    consumer = _roundtrip(store.proxy(np.ones(100), prefetch=True))
    # Sync use on the caller's running loop: the fetch runs on another loop.
    assert float(np.asarray(consumer).sum()) == 100.0
    assert sum(_gets(store_name).values()) == 1


def test_resolves_in_a_thread_pool_worker(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    consumers = [_roundtrip(store.proxy([i] * 10, prefetch=True)) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        sums = list(pool.map(sum, consumers, timeout=TIMEOUT))
    assert sums == [i * 10 for i in range(8)]
    assert sum(_gets(store_name).values()) == 8


def test_touched_on_the_background_thread_does_not_deadlock(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    slot = _StoreSlot(store_name)
    consumer = _roundtrip(store.proxy([4, 5], prefetch=True))

    async def touch() -> int:
        return sum(consumer)

    try:
        assert submit(touch()).result(TIMEOUT) == 9
    finally:
        slot.release()


_INNER: list[Proxy[Any]] = []


def _deserialize_touching_inner(data: bytes) -> Any:
    # Runs inside a background fetch: touching a proxy whose own prefetch is
    # queued behind this one must not wait for it.
    return pickle.loads(data), sum(_INNER[0])


def test_proxy_touched_inside_a_background_fetch_does_not_deadlock(
    store_name: str,
) -> None:
    store = init_store("local", store_name)
    outer = store.proxy(
        "outer", serializer=pickle.dumps, deserializer=_deserialize_touching_inner
    )
    inner = store.proxy([1, 2, 3], prefetch=True)
    configure_prefetch(timeout=TIMEOUT)
    slot = _StoreSlot(store_name)
    try:
        outer_consumer = pickle.loads(pickle.dumps(outer))
        factory = _factory(outer_consumer)
        factory.start_prefetch()  # queued first, behind the held slot
        _INNER[:] = [_roundtrip(inner)]  # queued behind it
    finally:
        slot.release()
    assert outer_consumer == ("outer", 6)
    _INNER.clear()


def _use_in_forked_child(consumer: Proxy[Any], blob: bytes, out: Any) -> None:
    # `consumer` came through fork with a prefetch pending in the parent's
    # background thread, which does not exist here.
    inherited = sum(consumer)
    unpickled = sum(pickle.loads(blob))
    out.send((inherited, unpickled))
    out.close()


def test_forked_child_never_waits_on_the_parents_fetch(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    proxy = store.proxy([1, 2, 3], prefetch=True)
    slot = _StoreSlot(store_name)
    try:
        consumer = _roundtrip(proxy)
        assert not _factory(consumer)._pending.future.done()  # type: ignore[union-attr]
        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=_use_in_forked_child, args=(consumer, pickle.dumps(proxy), send)
        )
        child.start()
        send.close()
        assert receive.poll(TIMEOUT), "forked child did not resolve its proxies"
        assert receive.recv() == (6, 6)
        child.join(TIMEOUT)
        assert child.exitcode == 0
    finally:
        slot.release()
    assert sum(consumer) == 6


def test_pickling_a_proxy_mid_prefetch(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    proxy = store.proxy(np.arange(100_000), prefetch=True)
    slot = _StoreSlot(store_name)
    try:
        consumer = _roundtrip(proxy)
        pending = _factory(consumer)._pending
        assert pending is not None
        assert not pending.future.done()
        blob = pickle.dumps(consumer)
        assert len(blob) < 600
        assert not is_resolved(consumer)
        onward = pickle.loads(blob)
        assert _factory(onward)._pending is not pending
    finally:
        slot.release()
    assert int(np.asarray(onward).sum()) == int(np.asarray(consumer).sum())


_FETCH_ENTERED = threading.Event()
_RELEASE_FETCH = threading.Event()


def _deserialize_when_released(data: bytes) -> Any:
    _FETCH_ENTERED.set()
    assert _RELEASE_FETCH.wait(TIMEOUT)
    return pickle.loads(data)


def test_first_use_times_out_with_a_clear_error(store_name: str) -> None:
    store = init_store("local", store_name)
    proxy = store.proxy(
        [1], serializer=pickle.dumps, deserializer=_deserialize_when_released
    )
    _FETCH_ENTERED.clear()
    _RELEASE_FETCH.clear()
    consumer = pickle.loads(pickle.dumps(proxy))
    resolve_async(consumer)
    try:
        assert _FETCH_ENTERED.wait(TIMEOUT)  # running, stuck in the deserializer
        configure_prefetch(timeout=0.05)
        with pytest.raises(StoreTimeoutError) as info:
            len(consumer)
        assert store_name in str(info.value)
        assert "prefetch" in str(info.value)
    finally:
        _RELEASE_FETCH.set()
    assert len(consumer) == 1


def test_first_use_of_a_queued_prefetch_fetches_at_once(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    slot = _StoreSlot(store_name)
    try:
        consumer = _roundtrip(store.proxy("queued", prefetch=True))
        pending = _factory(consumer)._pending
        assert consumer == "queued"  # without waiting for the held slot
    finally:
        slot.release()
    assert pending is not None
    # The queued job was cancelled when first use took it over: it never fetched.
    concurrent.futures.wait([pending.future], TIMEOUT)
    assert pending.future.cancelled()
    assert sum(_gets(store_name).values()) == 1


def _settled(proxy: Proxy[Any]) -> None:
    pending = _factory(proxy)._pending
    assert pending is not None
    assert pending.future.result(TIMEOUT) is not None


def test_fetched_objects_wait_for_use_within_the_limit(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    configure_prefetch(max_concurrency=2, store=store_name)
    consumers = [_roundtrip(store.proxy([i], prefetch=True)) for i in range(5)]
    _settled(consumers[0])
    _settled(consumers[1])
    submit(_noop()).result(TIMEOUT)
    # Two fetched and unused: the third waits for one of them to be used.
    assert sum(_gets(store_name).values()) == 2
    assert consumers[0] == [0]
    _settled(consumers[2])
    assert sum(_gets(store_name).values()) == 3
    assert [c[0] for c in consumers] == [0, 1, 2, 3, 4]
    assert sum(_gets(store_name).values()) == 5


def test_a_dropped_unused_proxy_gives_its_slot_back(store_name: str) -> None:
    store = init_store("local", store_name)
    configure_prefetch(max_concurrency=1, store=store_name)
    dropped = _roundtrip(store.proxy("dropped", prefetch=True))
    kept = _roundtrip(store.proxy("kept", prefetch=True))
    _settled(dropped)
    del dropped
    gc.collect()
    _settled(kept)


class GatedStore(AsyncLocalStore):
    """A LocalStore whose fetches wait at a gate and count how many are in flight."""

    def __init__(self, name: str, *, expected: int) -> None:
        super().__init__(name, metrics=True)
        self.expected = expected
        self.in_flight = 0
        self.max_in_flight = 0
        self.full = threading.Event()
        self.gate = asyncio.Event()

    async def _aget_bytes(self, key: str) -> Buffer | None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight >= self.expected:
            self.full.set()
        await self.gate.wait()
        self.in_flight -= 1
        return await super()._aget_bytes(key)


async def _gated_proxies(
    store: GatedStore, count: int, *, flag: bool
) -> list[Proxy[Any]]:
    aio.register_store(store)
    return await store.aproxy_batch(list(range(count)), prefetch=flag)


def _check_bounded(store: GatedStore, consumers: list[Proxy[Any]]) -> None:
    assert store.full.wait(TIMEOUT), "fewer fetches started than the limit"
    # Every queued fetch has had its turn to run before this no-op does.
    submit(_noop()).result(TIMEOUT)
    assert store.max_in_flight == store.expected
    submit(_open(store.gate)).result(TIMEOUT)
    assert [int(c) for c in consumers] == list(range(len(consumers)))
    assert store.max_in_flight == store.expected
    assert store.metrics is not None
    assert store.metrics["get"].count == len(consumers)


async def test_prefetches_are_bounded_per_store(store_name: str) -> None:
    store = GatedStore(store_name, expected=3)
    proxies = await _gated_proxies(store, 12, flag=True)
    configure_prefetch(max_concurrency=3, store=store_name)
    consumers = [_roundtrip(p) for p in proxies]
    await asyncio.to_thread(_check_bounded, store, consumers)


async def test_prefetch_call_bounds_its_own_batch(store_name: str) -> None:
    store = GatedStore(store_name, expected=2)
    proxies = await _gated_proxies(store, 10, flag=False)
    consumers = [_roundtrip(p) for p in proxies]
    assert all(_factory(c)._pending is None for c in consumers)
    prefetch(*consumers, max_concurrency=2)
    await asyncio.to_thread(_check_bounded, store, consumers)


def test_background_loop_restarts_after_shutdown(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True)
    _background.shutdown()
    assert sum(_roundtrip(store.proxy([1, 2], prefetch=True))) == 3


def test_interpreter_exit_is_not_held_up_by_a_stuck_fetch() -> None:
    script = """
import pickle, threading
from proxystore.store import init_store
entered, never = threading.Event(), threading.Event()
def stuck(data):
    entered.set()
    never.wait()
store = init_store("local", "stuck")
proxy = store.proxy("x", serializer=pickle.dumps, deserializer=stuck, prefetch=True)
consumer = pickle.loads(pickle.dumps(proxy))
assert entered.wait(10)
print("stuck")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stuck"


def test_interpreter_exits_cleanly_with_fetches_pending(tmp_path: Path) -> None:
    script = f"""
import pickle
from proxystore.store.file import FileStore
from proxystore.store.utils import configure_prefetch
store = FileStore("exit-test", {str(tmp_path)!r})
configure_prefetch(max_concurrency=1)
blobs = [pickle.dumps(store.proxy(list(range(1000)), prefetch=True)) for _ in range(50)]
consumers = [pickle.loads(blob) for blob in blobs]
print(sum(consumers[0]))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sum(range(1000)))
    assert "Traceback" not in done.stderr
    assert "never retrieved" not in done.stderr


def _exit_on_load(data: bytes) -> Any:
    raise SystemExit(3)


def _interrupt_on_load(data: bytes) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize(
    ("deserializer", "error"),
    [(_exit_on_load, SystemExit), (_interrupt_on_load, KeyboardInterrupt)],
)
def test_payload_raising_base_exception_does_not_stop_prefetching(
    face: str, deserializer: Any, error: type[BaseException], store_name: str
) -> None:
    configure_prefetch(face=face)  # type: ignore[arg-type]
    store = init_store("local", store_name, metrics=True)
    bad = _roundtrip(
        store.proxy(
            [0], serializer=pickle.dumps, deserializer=deserializer, prefetch=True
        )
    )
    pending = _factory(bad)._pending
    assert pending is not None
    concurrent.futures.wait([pending.future], TIMEOUT)
    assert isinstance(pending.future.exception(0), error)
    with pytest.raises(error):
        len(bad)  # the payload's error goes to the proxy's first use
    # The loop keeps serving: later prefetches still run in the background.
    for value in range(3):
        good = _roundtrip(store.proxy([value], prefetch=True))
        _settled(good)
        assert good == [value]
    assert submit(_noop()).result(TIMEOUT) is None


def test_dropped_proxies_queued_fetches_are_cancelled(store_name: str) -> None:
    store = init_store("local", store_name, metrics=True, cache_size=0)
    proxy = store.proxy(list(range(100)), prefetch=True)
    blob = pickle.dumps(proxy)
    slot = _StoreSlot(store_name)  # every prefetch below stays queued
    try:
        dropped = pickle.loads(blob)
        factory_ref = weakref.ref(get_factory(dropped))
        del dropped
        for _ in range(3000):
            pickle.loads(blob)  # dropped at once, its fetch still queued
        # The queue kept no strong reference to the dropped factory.
        assert factory_ref() is None
        kept = pickle.loads(blob)
    finally:
        slot.release()
    _settled(kept)
    assert kept == list(range(100))
    assert sum(_gets(store_name).values()) == 1  # only the kept proxy was fetched

    async def count_tasks() -> int:
        return len(asyncio.all_tasks())

    # Only the counting task is left on the loop: no queued job lingers.
    assert submit(count_tasks()).result(TIMEOUT) == 1


_BLOCKED_EXIT_SCRIPT = """
import os, pickle, sys, threading
from proxystore import aio, store as sync
from proxystore.store.utils import configure_prefetch
import builtins, proxystore.aio.file, proxystore.store.file

face, how, store_dir = sys.argv[1:]
configure_prefetch(face=face)
entered = threading.Event()

def block(data):
    entered.set()
    threading.Event().wait()

def reporting(open_file):
    def opened(*args, **kwargs):
        entered.set()  # the fetch's thread is about to block in open()
        return open_file(*args, **kwargs)
    return opened

store = sync.init_store("file", "blocked", store_dir=store_dir)
if how == "fifo":
    proxy = store.proxy([1], prefetch=True)
    path = os.path.join(store_dir, sync.utils.get_key(proxy))
    os.remove(path)
    os.mkfifo(path)  # a read that never returns: no writer ever comes
    # Both open in the thread that then blocks: the sync face's worker, and
    # the executor thread the async face's read runs in.
    proxystore.aio.file.open = reporting(builtins.open)
    proxystore.store.file.open = reporting(builtins.open)
else:
    proxy = store.proxy(
        [1], serializer=pickle.dumps, deserializer=block, prefetch=True
    )
consumer = pickle.loads(pickle.dumps(proxy))
assert entered.wait(10), "the prefetch never started"
print("blocked", flush=True)
"""


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize("how", ["fifo", "deserializer"])
def test_exit_is_not_held_up_by_a_blocked_fetch(
    face: str, how: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    child = subprocess.Popen(
        [sys.executable, "-c", _BLOCKED_EXIT_SCRIPT, face, how, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready, "the child never reported its blocked fetch"
        assert child.stdout.readline().strip() == "blocked"
        start = time.monotonic()
        child.wait(timeout=2.0)
        assert time.monotonic() - start < 2.0
        assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)
