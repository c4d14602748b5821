"""Lifetimes on both faces; leases enforced by Redis and FileStore after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from proxystore import aio
from proxystore.aio.local import LocalStore as AsyncLocalStore
from proxystore.exceptions import ConfigurationError, LifetimeEndedError
from proxystore.lifetimes import (
    ContextLifetime,
    LeaseLifetime,
    Lifetime,
    StaticLifetime,
)
from proxystore.store import register_store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


def _wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(condition())  # type: ignore[operator]


def test_context_lifetime_evicts_at_exit(store_name: str) -> None:
    store = LocalStore(store_name)
    kept = store.set("kept")
    with ContextLifetime() as lifetime:
        proxy = store.proxy([1, 2], lifetime=lifetime)
        key = store.set("x", lifetime=lifetime)
        keyed = store.set("y", key="user-key", lifetime=lifetime)
        assert proxy == [1, 2]
        assert len(lifetime.keys) == 3
    assert not store.exists(key)
    assert not store.exists(keyed)
    assert store.exists(kept)
    assert lifetime.done()
    with pytest.raises(LifetimeEndedError):
        store.set("late", lifetime=lifetime)
    store.close()


async def test_context_lifetime_async(store_name: str) -> None:
    store = AsyncLocalStore(store_name)
    async with ContextLifetime() as lifetime:
        key = await store.aset("x", lifetime=lifetime)
        proxy = await store.aproxy({"a": 1}, lifetime=lifetime)
        assert await aio.resolve(proxy) == {"a": 1}
    assert not await store.aexists(key)
    await store.aclose()


def test_evict_and_lifetime_refused(store_name: str) -> None:
    store = LocalStore(store_name)
    with pytest.raises(ConfigurationError, match="evict=True and lifetime"):
        store.proxy(1, evict=True, lifetime=ContextLifetime())
    with pytest.raises(ConfigurationError, match="must be a Lifetime"):
        store.proxy(1, lifetime=3.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lease seconds"):
        LeaseLifetime(0)
    store.close()


def test_lifetime_not_picklable() -> None:
    import pickle

    with pytest.raises(TypeError, match="process-local"):
        pickle.dumps(ContextLifetime())


def test_local_lease_expires_in_process(store_name: str) -> None:
    store = LocalStore(store_name)
    lease = LeaseLifetime(0.2)
    key = store.set("x", lifetime=lease)
    assert store.exists(key)
    assert _wait_until(lambda: not store.exists(key), 5)
    assert lease.done()
    store.close()


def test_lease_extend_and_close(store_name: str, redis_server: RedisServer) -> None:
    store = RedisStore(store_name, redis_server.host, redis_server.port)
    register_store(store)
    raw = redis.Redis(redis_server.host, redis_server.port)
    lease = LeaseLifetime(2)
    key = store.set(b"x", lifetime=lease)
    first = raw.pttl(key)
    assert 0 < first <= 2000
    lease.extend(30)
    assert raw.pttl(key) > 20_000
    assert raw.pttl(f"{{{key}}}:v") > 20_000
    lease.close()
    assert raw.exists(key) == 0
    with pytest.raises(LifetimeEndedError):
        lease.extend(1)
    raw.close()
    store.close()


def test_static_lifetime_is_one_per_process() -> None:
    assert StaticLifetime() is StaticLifetime()
    assert isinstance(StaticLifetime(), Lifetime)


def test_static_lifetime_evicts_at_exit(tmp_path: Path) -> None:
    code = f"""
        from proxystore.lifetimes import StaticLifetime
        from proxystore.store.file import FileStore
        store = FileStore("static", {str(tmp_path)!r})
        print(store.set("x", lifetime=StaticLifetime()), flush=True)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    key = out.stdout.strip()
    assert len(key) == 32
    assert not (tmp_path / key).exists()


def _killed_producer(code: str) -> list[str]:
    """Run `code` in a child that prints its keys, then SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    return line.split()


def test_redis_lease_outlives_killed_producer(
    redis_server: RedisServer,
) -> None:
    lease = 1.0
    code = f"""
        import time
        from proxystore.lifetimes import LeaseLifetime
        from proxystore.store.future import Future
        from proxystore.store.redis import RedisStore
        store = RedisStore("killed", "127.0.0.1", {redis_server.port}, chunk_size=64)
        lifetime = LeaseLifetime({lease})
        small = store.set(b"x", lifetime=lifetime)
        chunked = store.set(b"y" * 1000, lifetime=lifetime)
        print(small, chunked, time.time(), flush=True)
        time.sleep(600)
    """
    small, chunked, written = _killed_producer(code)
    raw = redis.Redis(redis_server.host, redis_server.port)
    names = [small, f"{{{small}}}:v", chunked, f"{{{chunked}}}:v"]
    names += [f"{{{chunked}}}:c:{index}" for index in range(16)]
    assert raw.exists(small, chunked, f"{{{chunked}}}:c:0") == 3
    deadline = float(written) + lease + 1.0
    assert _wait_until(lambda: raw.exists(*names) == 0, deadline - time.time())
    raw.close()


def test_file_lease_outlives_killed_producer(tmp_path: Path) -> None:
    lease = 0.3
    code = f"""
        import time
        from proxystore.lifetimes import LeaseLifetime
        from proxystore.store.file import FileStore
        store = FileStore("killed", {str(tmp_path)!r})
        print(store.set(b"x", lifetime=LeaseLifetime({lease})), time.time(), flush=True)
        time.sleep(600)
    """
    key, written = _killed_producer(code)
    assert (tmp_path / key).exists()
    assert (tmp_path / f".lease-{key}").exists()
    # Not expired yet: opening the store (this process's first open of the
    # directory, which sweeps it) keeps it.
    store = FileStore("early", tmp_path)
    if time.time() < float(written) + lease - 0.1:
        assert (tmp_path / key).exists()

    def swept() -> bool:
        store.sweep()  # later opens in this process do not sweep again
        return not (tmp_path / key).exists()

    assert _wait_until(swept, lease + 5)
    store.close()
    assert not (tmp_path / f".lease-{key}").exists()


def test_file_evict_removes_lease(store_name: str, tmp_path: Path) -> None:
    store = FileStore(store_name, tmp_path)
    lease = LeaseLifetime(60)
    key = store.set(1, lifetime=lease)
    assert float((tmp_path / f".lease-{key}").read_text()) == lease.expiry
    store.evict(key)
    assert list(tmp_path.iterdir()) == []
    lease.close()
    store.close()


def test_many_leases_share_one_thread(store_name: str) -> None:
    import threading

    store = LocalStore(store_name)
    before = threading.active_count()
    # Each lease is made just before its set, so however slowly a loaded
    # machine runs the 500 sets, none ends before its own set (a lease made
    # up front could); the earlier ones end while later sets still run.
    leases: list[LeaseLifetime] = []
    keys = []
    for index in range(500):
        leases.append(LeaseLifetime(1.0 + index / 10_000))
        keys.append(store.set(index, lifetime=leases[-1]))
    assert threading.active_count() <= before + 1
    assert _wait_until(lambda: not any(store.exists(key) for key in keys), 10)
    assert all(lease.done() for lease in leases)
    store.close()


def test_batches_in_a_context_lifetime(store_name: str) -> None:
    store = LocalStore(store_name)
    with ContextLifetime() as lifetime:
        keys = store.set_batch([1, 2, 3], lifetime=lifetime)
        proxies = store.proxy_batch(["a", "b"], lifetime=lifetime)
        named = store.proxy_batch(keys=[keys[0]], lifetime=lifetime)
        assert proxies == ["a", "b"]
        assert named == [1]
        assert all(store.exists(key) for key in keys)
        assert len(lifetime.keys) == 6
    assert not any(store.exists(key) for key in keys)
    with pytest.raises(LifetimeEndedError):
        store.set_batch([4], lifetime=lifetime)
    store.close()


def test_batch_evict_and_lifetime_refused(store_name: str) -> None:
    store = LocalStore(store_name)
    with ContextLifetime() as lifetime, pytest.raises(ConfigurationError):
        store.proxy_batch([1], evict=True, lifetime=lifetime)
    store.close()


def test_redis_batch_lease_is_server_side(
    store_name: str, redis_server: RedisServer
) -> None:
    store = RedisStore(store_name, redis_server.host, redis_server.port, chunk_size=64)
    raw = redis.Redis(redis_server.host, redis_server.port)
    lease = LeaseLifetime(30)
    small, chunked = store.set_batch([b"x", b"y" * 1000], lifetime=lease)
    for name in (small, f"{{{small}}}:v", chunked, f"{{{chunked}}}:c:0"):
        assert 0 < raw.pttl(name) <= 30_000, name
    lease.close()
    assert raw.exists(small, chunked, f"{{{chunked}}}:c:0") == 0
    raw.close()
    store.close()


def test_file_batch_lease_writes_lease_files(store_name: str, tmp_path: Path) -> None:
    store = FileStore(store_name, tmp_path)
    lease = LeaseLifetime(60)
    keys = store.set_batch([1, 2], lifetime=lease)
    for key in keys:
        assert float((tmp_path / f".lease-{key}").read_text()) == lease.expiry
    lease.close()
    assert list(tmp_path.iterdir()) == []
    store.close()


async def test_async_batches_in_a_lifetime(store_name: str) -> None:
    store = AsyncLocalStore(store_name)
    async with ContextLifetime() as lifetime:
        keys = await store.aset_batch([1, 2], lifetime=lifetime)
        proxies = await store.aproxy_batch([3], lifetime=lifetime)
        assert proxies == [3]
    assert not any([await store.aexists(key) for key in keys])
    await store.aclose()
