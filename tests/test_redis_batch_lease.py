"""Leased batches on Redis: the leases are in the batch's own MULTI (one EXEC).

Counted with the server's ``INFO commandstats``: a lease set in a second
round trip would show as a second ``EXEC`` (and a ``GETRANGE`` of each
object's head, which finds its chunks), so a producer killed between the
two could leave objects without a lease.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.cluster

from proxystore.aio.redis import RedisStore as AsyncRedisStore
from proxystore.lifetimes import LeaseLifetime
from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(redis_server.host, redis_server.port)
    yield client
    client.close()


def calls(raw: redis.Redis) -> dict[str, int]:
    stats = raw.info("commandstats")
    return {
        name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in ("exec", "getrange", "pexpireat")
    }


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


def test_batch_and_leases_are_one_transaction(
    store_name: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    store = RedisStore(store_name, redis_server.host, redis_server.port, chunk_size=64)
    lease = LeaseLifetime(30)
    before = calls(raw)
    small, chunked = store.set_batch([b"x", b"y" * 100], lifetime=lease)
    # K, {K}:v, {K}:w per object, and the chunked object's two chunks.
    assert delta(before, calls(raw)) == {"exec": 1, "getrange": 0, "pexpireat": 8}
    for name in (small, f"{{{small}}}:v", chunked, f"{{{chunked}}}:c:1"):
        assert 0 < raw.pttl(name) <= 30_000, name
    lease.close()
    assert raw.exists(small, chunked, f"{{{chunked}}}:c:0") == 0
    store.close()


def test_user_keys_and_leases_are_one_transaction(
    store_name: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    store = RedisStore(store_name, redis_server.host, redis_server.port)
    lease = LeaseLifetime(30)
    before = calls(raw)
    store.set_batch([1, 2], keys=["one", None], lifetime=lease)
    store.set(3, key="three", lifetime=lease)
    # One EXEC each; the GETRANGE of a user key's old head is in that MULTI.
    assert delta(before, calls(raw)) == {"exec": 2, "getrange": 2, "pexpireat": 9}
    assert 0 < raw.pttl("one") <= 30_000
    assert 0 < raw.pttl("three") <= 30_000
    # An extended lease is set again on every key.
    lease.extend(30)
    assert 30_000 < raw.pttl("one") <= 60_000
    lease.close()
    assert raw.exists("one", "three") == 0
    store.close()


async def test_async_face_batch_lease_is_one_transaction(
    store_name: str, redis_server: RedisServer, raw: redis.Redis
) -> None:
    store = AsyncRedisStore(store_name, redis_server.host, redis_server.port)
    lease = LeaseLifetime(30)
    before = calls(raw)
    keys = await store.aset_batch([1, 2, 3], lifetime=lease)
    assert delta(before, calls(raw)) == {"exec": 1, "getrange": 0, "pexpireat": 9}
    assert all(0 < raw.pttl(key) <= 30_000 for key in keys)
    await lease.aclose()
    assert raw.exists(*keys) == 0
    await store.aclose()


def test_cluster_leased_batch_expires_every_part_on_every_master(
    store_name: str, redis_cluster: Any
) -> None:
    store = RedisStore(store_name, cluster_nodes=redis_cluster.seeds, chunk_size=64)
    raw = redis.cluster.RedisCluster(
        startup_nodes=[
            redis.cluster.ClusterNode(server.host, server.port)
            for server in redis_cluster.servers
        ]
    )
    lease = LeaseLifetime(30)
    keys = store.set_batch([b"x" * 100, *range(11)], lifetime=lease)
    masters = {raw.get_node_from_key(key).name for key in keys}
    assert len(masters) > 1  # the batch spans masters: one MULTI per object
    parts = [f"{{{keys[0]}}}:c:0", f"{{{keys[0]}}}:c:1"]
    for name in [*keys, *(f"{{{key}}}:v" for key in keys), *parts]:
        assert 0 < raw.pttl(name) <= 30_000, name
    lease.close()
    assert all(raw.exists(name) == 0 for name in [*keys, *parts])
    raw.close()
    store.close()
