"""The async RedisStore while a master of the Redis Cluster is SIGKILLed.

Many tasks set and get at once; the store (never restarted) fails with our
errors while the dead master's slots are unserved and works again once its
replica has taken over. A value read back is never another one.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from proxystore.aio.redis import RedisStore
from proxystore.exceptions import StoreConnectionError, StoreTimeoutError
from tests.redis_cluster import RedisClusterNodes

# Cluster failover runs once per CI run, not once per Python version.
pytestmark = [pytest.mark.timeout(180), pytest.mark.heavy]

_TASKS = 8
_DEADLINE = 60.0


async def test_master_killed_under_concurrent_tasks(store_name: str) -> None:
    with RedisClusterNodes() as cluster:
        store = RedisStore(
            store_name,
            cluster_nodes=cluster.seeds,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
        )
        victim = cluster.master_of_key("victim-probe")
        counts = {"ok": 0, "failed": 0, "wrong": 0, "missing": 0}
        recovered = asyncio.Event()
        reached = asyncio.Event()
        target = 200
        last_failure = 0.0
        acknowledged: dict[str, tuple[int, int]] = {}

        async def worker(worker: int) -> None:
            nonlocal last_failure
            step = 0
            while not recovered.is_set():
                step += 1
                key = f"afo-{worker}-{step}"
                try:
                    await store.aset((worker, step), key=key)
                    acknowledged[key] = (worker, step)
                    got = await store.aget(key)
                except (StoreConnectionError, StoreTimeoutError):
                    counts["failed"] += 1
                    last_failure = time.monotonic()
                    continue
                counts["ok"] += 1
                if counts["ok"] >= target:
                    reached.set()
                if got is None:
                    counts["missing"] += 1
                elif got != (worker, step):
                    counts["wrong"] += 1

        tasks = [asyncio.create_task(worker(index)) for index in range(_TASKS)]
        try:
            await asyncio.wait_for(reached.wait(), _DEADLINE)
            victim.kill()
            killed = time.monotonic()
            deadline = killed + _DEADLINE
            # Probe the dead master's slot until its replica serves it (each
            # failed probe takes the store's retries, 10-100 ms apart).
            while time.monotonic() < deadline:
                try:
                    await store.aset("probe", key="victim-probe")
                    if await store.aget("victim-probe", strict=True) == "probe":
                        break
                except (StoreConnectionError, StoreTimeoutError):
                    continue
            else:
                raise AssertionError(f"no recovery within {_DEADLINE}s: {counts}")
            # Then the workers go on succeeding.
            reached.clear()
            target = counts["ok"] + 200
            await asyncio.wait_for(reached.wait(), _DEADLINE)
        finally:
            recovered.set()
            await asyncio.gather(*tasks)
        try:
            # Acknowledged writes the promoted replica never received.
            lost = 0
            for key, value in acknowledged.items():
                lost += await store.aget(key, strict=True) != value
        finally:
            await store.aclose()
    window = last_failure - killed
    print(
        f"\nasync failover: {counts}, {lost} of {len(acknowledged)} acknowledged "
        f"writes lost, last failure {window:.2f}s after the kill"
    )
    assert counts["failed"] > 0
    assert counts["wrong"] == 0
    assert counts["missing"] == 0
