"""The sync RedisStore on a real Redis Cluster (3 masters, 3 replicas)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as RawCluster

import proxystore as ps
from proxystore.aio.redis import RedisStore as AsyncRedisStore
from proxystore.exceptions import (
    BatchWriteError,
    ConfigurationError,
    StoreConnectionError,
    StoreExistsError,
    StoreOperationError,
    StoreTimeoutError,
)
from proxystore.store.redis import RedisStore
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import unused_address

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def store(redis_cluster: RedisClusterNodes, store_name: str) -> Iterator[RedisStore]:
    # One seed only: the store learns the rest of the cluster from it.
    store = RedisStore(
        store_name, cluster_nodes=redis_cluster.seeds[:1], chunk_size=4096
    )
    yield store
    store.close()


@pytest.fixture
def raw(redis_cluster: RedisClusterNodes) -> Iterator[RawCluster]:
    host, port = redis_cluster.seeds[0].split(":")
    client = RawCluster(startup_nodes=[ClusterNode(host, int(port))])
    yield client
    client.close()


def test_cluster_store_emits_no_deprecation_warning(
    redis_cluster: RedisClusterNodes, store_name: str
) -> None:
    """Neither face uses a redis-py argument deprecated at the floor (6.2) or since.

    (redis-py 6.2's own `RedisCluster.pipeline()`, behind a raw cluster
    client's ``exists``/``delete``, passes its deprecated
    ``cluster_error_retry_attempts``; pyproject.toml ignores that one from
    redis-py's modules. This test turns every DeprecationWarning into an
    error, so it holds for the store's own calls.)
    """
    seeds = redis_cluster.seeds[:1]

    async def use_async() -> None:
        async with AsyncRedisStore(f"{store_name}-aio", cluster_nodes=seeds) as store:
            keys = await store.aset_batch([b"a", b"b" * 10_000])
            assert await store.aget_batch(keys) == [b"a", b"b" * 10_000]
            assert await store.aexists(keys[0])
            await store.aevict(keys[0])

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        with RedisStore(store_name, cluster_nodes=seeds, chunk_size=4096) as store:
            keys = store.set_batch([b"a", b"b" * 10_000])
            assert store.get_batch(keys) == [b"a", b"b" * 10_000]
            assert store.exists(keys[0])
            future = store.future()
            future.set_result(1)
            assert future.result(timeout=30) == 1
            store.evict(keys[0])
        asyncio.run(use_async())


def _node(raw: RawCluster, name: str) -> str:
    return str(raw.get_node_from_key(name).name)


@pytest.mark.parametrize(
    "obj", [b"", "text", {"a": [1, 2]}, np.arange(100_000, dtype=np.int64)]
)
def test_set_get_exists_evict(store: RedisStore, obj: Any) -> None:
    key = store.set(obj)
    assert store.exists(key)
    np.testing.assert_equal(store.get(key), obj)
    store.evict(key)
    assert not store.exists(key)
    assert store.get(key) is None


def test_a_batch_spans_every_master(store: RedisStore, raw: RawCluster) -> None:
    objects = [np.full(1000 + i, i) for i in range(60)]  # some chunked (> 4 KiB)
    keys = store.set_batch(objects)
    assert len({_node(raw, key) for key in keys}) == 3
    for got, want in zip(store.get_batch(keys), objects, strict=True):
        np.testing.assert_array_equal(got, want)
    for key in keys:
        store.evict(key)
    assert store.get_batch(keys) == [None] * len(keys)


def test_chunks_live_in_their_object_slot(store: RedisStore, raw: RawCluster) -> None:
    array = np.arange(10_000, dtype=np.int64)  # 80 kB: 20 chunks of 4 KiB
    key = store.set(array)
    chunks = raw.keys(target_nodes=RawCluster.ALL_NODES)
    names = [
        name.decode() for name in chunks if name.decode().startswith(f"{{{key}}}:c:")
    ]
    assert len(names) == 20
    assert {raw.keyslot(name) for name in [*names, f"{{{key}}}:v"]} == {
        raw.keyslot(key)
    }
    np.testing.assert_array_equal(store.get(key), array)
    raw.delete(names[3])  # a chunk gone: no object, never a partial one
    assert not store.exists(key)
    assert store.get(key) is None
    store.evict(key)
    assert raw.exists(key, f"{{{key}}}:v", *names) == 0


def test_user_keys_versions_and_strict_get(store: RedisStore, raw: RawCluster) -> None:
    key = f"model-{os.getpid()}"
    store.set(np.arange(5000, dtype=np.int64), key=key)  # 10 chunks
    first = store.get_timestamp(key)
    assert raw.exists(*(f"{{{key}}}:c:{i}" for i in range(10))) == 10
    store.set("small", key=key)
    assert raw.exists(*(f"{{{key}}}:c:{i}" for i in range(10))) == 0
    assert store.get_timestamp(key) > first
    assert store.get(key, strict=True) == "small"
    # Another writer replaces it behind the cache: strict sees the new one.
    other = RedisStore(f"{store.name}-other", cluster_nodes=store.cluster_nodes)
    try:
        other.set("newer", key=key)
    finally:
        other.close()
    assert store.get(key, strict=True) == "newer"
    store.evict(key)
    assert not store.exists(key)


def test_proxies_resolve(store: RedisStore) -> None:
    proxy = store.proxy([1, 2, 3])
    assert list(proxy) == [1, 2, 3]


def test_config_carries_the_sorted_seeds_and_no_password(
    redis_cluster: RedisClusterNodes, store_name: str
) -> None:
    seeds = redis_cluster.seeds[:3]
    store = RedisStore(
        store_name, cluster_nodes=list(reversed(seeds)), password="hunter2"
    )
    try:
        config = store.config()
        assert config["cluster_nodes"] == sorted(seeds)
        assert f"{config['hostname']}:{config['port']}" == sorted(seeds)[0]
        assert "password" not in config
        # No I/O: the cluster has no password, and redis-py before 8 fails a
        # connection whose AUTH the server refuses.
        blob = pickle.dumps(store.proxy_from_key("x"))
        assert b"hunter2" not in blob
        assert all(seed.encode() in blob for seed in seeds)
    finally:
        store.close()


def test_identity_is_the_sorted_seeds(
    redis_cluster: RedisClusterNodes, store_name: str
) -> None:
    seeds = redis_cluster.seeds
    store = ps.store.init_store("redis", name=store_name, cluster_nodes=seeds[:2])
    try:
        same = ps.store.init_store("redis", name=store_name, cluster_nodes=seeds[1::-1])
        assert same is store  # order does not matter
        with pytest.raises(StoreExistsError):
            ps.store.init_store("redis", name=store_name, cluster_nodes=seeds[2:4])
        # The same address, not as a cluster: another store.
        host, port = seeds[0].split(":")
        with pytest.raises(StoreExistsError):
            ps.store.init_store("redis", name=store_name, hostname=host, port=int(port))
    finally:
        store.close()


_CHILD = """
import pickle, sys
import numpy as np
from proxystore.store.redis import RedisStore
store = RedisStore(sys.argv[1], cluster_nodes=sys.argv[2:], chunk_size=4096)
sys.stdout.buffer.write(pickle.dumps(store.proxy(np.arange(20_000))))
"""


def test_proxy_made_by_another_process_resolves(
    redis_cluster: RedisClusterNodes, store_name: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, store_name, *redis_cluster.seeds[4:]],
        capture_output=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    proxy = pickle.loads(done.stdout)
    np.testing.assert_array_equal(proxy, np.arange(20_000))
    store = ps.store.get_store(store_name)
    assert isinstance(store, RedisStore)
    assert store.config()["cluster_nodes"] == sorted(redis_cluster.seeds[4:])
    store.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cluster_nodes": "127.0.0.1:7000"}, "non-empty list"),
        ({"cluster_nodes": []}, "non-empty list"),
        ({"cluster_nodes": ["127.0.0.1"]}, "'host:port'"),
        ({"cluster_nodes": ["127.0.0.1:0"]}, "'host:port'"),
        ({"cluster_nodes": [("127.0.0.1", 7000)]}, "'host:port'"),
        ({"cluster": True, "db": 1}, "only db 0"),
        ({"cluster": "yes"}, "cluster must be a bool"),
    ],
)
def test_bad_cluster_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisStore("bad", **kwargs)


def test_no_cluster_at_the_seed_names_it(store_name: str) -> None:
    host, port = unused_address()
    store = RedisStore(
        store_name, cluster_nodes=[f"{host}:{port}"], socket_connect_timeout=1.0
    )
    try:
        with pytest.raises(StoreConnectionError, match=f"{host}:{port}"):
            store.set("x")
    finally:
        store.close()


def test_not_a_cluster_refused_clearly(redis_server: Any, store_name: str) -> None:
    store = RedisStore(
        store_name, cluster_nodes=[f"{redis_server.host}:{redis_server.port}"]
    )
    try:
        with pytest.raises(StoreConnectionError, match=str(redis_server.port)):
            store.set("x")
    finally:
        store.close()


def test_refused_write_leaves_nothing(store: RedisStore, raw: RawCluster) -> None:
    key = f"refused-{os.getpid()}"
    node = raw.get_node_from_key(key)
    client = redis.Redis(host=node.host, port=node.port)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 20_000)
    try:
        with pytest.raises(StoreOperationError, match="maxmemory") as info:
            store.set(np.arange(100_000), key=key)
    finally:
        client.config_set("maxmemory", 0)
        client.close()
    assert node.name in str(info.value)
    assert raw.keys(f"{{{key}}}*", target_nodes=RawCluster.ALL_NODES) == []
    assert not store.exists(key)


def _move_slot(cluster: RedisClusterNodes, key: str) -> tuple[int, str, list[str]]:
    """Migrate `key`'s slot's keys to another master, leaving the slot in migration.

    The old owner then answers ASK for the moved keys. Returns the slot,
    the new owner's id and every master's address (for `_assign`).
    """
    source = cluster.master_of_key(key)
    ids = {
        row["address"]: row["id"]
        for row in cluster.nodes()
        if "master" in row["flags"] and "fail" not in row["flags"]
    }
    source_address = f"{source.host}:{source.port}"
    target_address = next(address for address in ids if address != source_address)
    target = cluster.server_at(target_address)
    src, dst = source.client(), target.client()
    try:
        slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))
        dst.execute_command(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source_address]
        )
        src.execute_command(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target_address]
        )
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        src.execute_command(
            "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys
        )
    finally:
        src.close()
        dst.close()
    return slot, ids[target_address], list(ids)


def _assign(
    cluster: RedisClusterNodes, slot: int, owner: str, masters: list[str]
) -> None:
    """End a migration: every master learns the slot's new owner."""
    for address in masters:
        client = cluster.server_at(address).client()
        try:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner)
        finally:
            client.close()


def test_moved_slot_is_followed(
    store: RedisStore, redis_cluster: RedisClusterNodes
) -> None:
    key = f"moving-{os.getpid()}"
    array = np.arange(3000, dtype=np.int64)  # chunked: 7 keys in the slot
    store.set(array, key=key)
    before = redis_cluster.master_of_key(key)
    _assign(redis_cluster, *_move_slot(redis_cluster, key))
    assert redis_cluster.master_of_key(key) is not before
    # The store's slot map is stale: MOVED, followed, for a MULTI ...
    store.set(array + 1, key=key)
    np.testing.assert_array_equal(store.get(key, strict=True), array + 1)
    # ... and for reads.
    _assign(redis_cluster, *_move_slot(redis_cluster, key))
    np.testing.assert_array_equal(store.get(key, strict=True), array + 1)
    store.set("replaced", key=key)
    assert store.get(key, strict=True) == "replaced"
    assert store.exists(key)
    store.evict(key)
    assert not store.exists(key)


def test_slot_in_migration_is_followed(
    store: RedisStore, redis_cluster: RedisClusterNodes
) -> None:
    key = f"asked-{os.getpid()}"
    store.set([1, 2, 3], key=key)
    migration = _move_slot(redis_cluster, key)
    try:
        # Every key already moved: the old owner answers ASK.
        assert store.get(key, strict=True) == [1, 2, 3]
        assert store.exists(key)
        assert store.get_timestamp(key) > 0
        # A write of keys that moved (a MULTI: the old head, then MSET).
        store.set("replaced", key=key)
        assert store.get(key, strict=True) == "replaced"
        # New keys (chunks) in a slot half migrated: Redis says TRYAGAIN
        # until the migration ends; a clear error, never a partial object.
        with pytest.raises(StoreConnectionError, match="slot migration"):
            store.set(np.arange(3000), key=key)
        assert store.get(key, strict=True) == "replaced"
    finally:
        _assign(redis_cluster, *migration)
    store.set(np.arange(3000), key=key)  # works once the slot has moved
    np.testing.assert_array_equal(store.get(key, strict=True), np.arange(3000))
    store.evict(key)
    assert not store.exists(key)


def _produce(blob: bytes, value: Any) -> None:
    future = pickle.loads(blob)
    future.set_result(value)


def test_future_set_in_another_process_wakes(
    store: RedisStore, raw: RawCluster
) -> None:
    from proxystore.store import register_store, unregister_store

    register_store(store)
    try:
        future = store.future(timeout=60)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            value = np.arange(3000, dtype=np.int64)  # chunked: 6 chunks
            done = pool.apply_async(_produce, (pickle.dumps(future), value))
            np.testing.assert_array_equal(future.result(), value)
            done.get(60)
        key = future.key
        # The wake list shares the object's slot (BLMOVE works in one slot).
        assert raw.keyslot(f"{{{key}}}:w") == raw.keyslot(key)
        assert raw.exists(f"{{{key}}}:w") == 1
        store.evict(key)
        assert raw.exists(key, f"{{{key}}}:v", f"{{{key}}}:w", f"{{{key}}}:c:0") == 0
    finally:
        unregister_store(store.name)


def test_future_times_out_clearly(store: RedisStore) -> None:
    future = store.future(timeout=0.2)
    with pytest.raises(StoreTimeoutError):
        future.result()


def test_lease_expires_every_part(store: RedisStore, raw: RawCluster) -> None:
    from proxystore.lifetimes import LeaseLifetime
    from proxystore.store import register_store, unregister_store

    register_store(store)
    lease = LeaseLifetime(2.0)
    try:
        small = store.set(b"x", lifetime=lease)
        chunked = store.set(np.arange(3000, dtype=np.int64), lifetime=lease)
        user = f"leased-{os.getpid()}"
        store.set(np.arange(3000, dtype=np.int64), key=user, lifetime=lease)
        names = [small, f"{{{small}}}:v"]
        for key in (chunked, user):
            names += [key, f"{{{key}}}:v"]
            names += [f"{{{key}}}:c:{index}" for index in range(6)]
        assert raw.exists(*names) == len(names)
        # The servers expire every part (PEXPIREAT in the write's MULTI) ...
        assert all(0 < raw.pttl(name) <= 2000 for name in names)
        lease.extend(1.0)  # ... and extending moves every part's expiry.
        assert all(1000 < raw.pttl(name) <= 3000 for name in names)
        # Every part is gone at the expiry.
        deadline = time.monotonic() + 10
        while raw.exists(*names) and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the servers, with a deadline
        assert raw.exists(*names) == 0
    finally:
        lease.close()
        unregister_store(store.name)


def test_wait_replicas(redis_cluster: RedisClusterNodes, store_name: str) -> None:
    store = RedisStore(store_name, cluster_nodes=redis_cluster.seeds, wait_replicas=1)
    greedy = RedisStore(
        f"{store_name}-2",
        cluster_nodes=redis_cluster.seeds,
        wait_replicas=2,  # each master has one replica
        wait_timeout=0.1,
        chunk_size=4096,
    )
    try:
        keys = store.set_batch([np.full(1000, i) for i in range(30)])  # every master
        key = store.set(np.arange(3000))  # chunked: a MULTI, then WAIT
        np.testing.assert_array_equal(store.get(key), np.arange(3000))
        assert len(store.get_batch(keys)) == 30
        with pytest.raises(StoreTimeoutError, match="1 of 2 replicas confirmed"):
            greedy.set(np.arange(3000), key=f"greedy-{os.getpid()}")
        with pytest.raises(BatchWriteError):
            greedy.set_batch([1, 2, 3, 4, 5, 6])
    finally:
        store.close()
        greedy.close()
    with pytest.raises(ConfigurationError, match="wait_replicas"):
        RedisStore("bad", wait_replicas=-1)
    with pytest.raises(ConfigurationError, match="wait_timeout"):
        RedisStore("bad", wait_replicas=1, wait_timeout=0)
