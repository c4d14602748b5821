"""RedisStore against raw redis-py, measured in the same run on a private server.

Each round trip is SET + GET + DEL of one object: the store's `set`, `get`
and `evict` (cache off, so every get reaches the server) against redis-py's
``set(key, pickle.dumps(obj, protocol=5))``, ``pickle.loads(get(key))`` and
``delete(key)``. Raw and store runs alternate; each row is the median of the
repetitions (wall clock; "cpu ratio" is this process's CPU time, a check on
the client-side cost that other load on the machine disturbs less). Then
1,000 concurrent async gets of 1 KB against a sequential
sync loop.

Usage:
    python benchmarks/bench_redis.py [--reps N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxystore.aio.redis import RedisStore as AsyncRedisStore
from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer

SIZES = {"100 B": 100, "10 KB": 10_000, "1 MB": 1_000_000, "100 MB": 100_000_000}
TARGETS = {"100 B": 1.10, "10 KB": 1.10, "1 MB": 1.10, "100 MB": 1.03}


def make(kind: str, size: int) -> Any:
    if kind == "bytes":
        return np.random.default_rng(0).bytes(size)
    return np.random.default_rng(0).random(max(size // 8, 1))


def ops_for(size: int, quick: bool) -> int:
    """Round trips per repetition: short, so raw and store runs interleave finely."""
    if size >= 10_000_000:
        return 1
    budget = 20 if quick else 50
    return max(2, min(budget, 20_000_000 // max(size, 1)))


def reps_for(size: int, reps: int) -> int:
    """Repetitions per row: fewer for 100 MB objects (about a second each)."""
    return max(3, reps // 4) if size >= 10_000_000 else reps


def timed(function: Callable[[], None], ops: int) -> tuple[float, float]:
    """Return wall and client-CPU seconds per call."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(ops):
        function()
    return (time.perf_counter() - wall) / ops, (time.process_time() - cpu) / ops


async def atimed(
    function: Callable[[], Awaitable[None]], ops: int
) -> tuple[float, float]:
    """Return wall and client-CPU seconds per call."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(ops):
        await function()
    return (time.perf_counter() - wall) / ops, (time.process_time() - cpu) / ops


def bench_sync(server: RedisServer, reps: int, quick: bool) -> list[tuple[Any, ...]]:
    raw = redis.Redis(host=server.host, port=server.port)
    store = RedisStore("bench-sync", server.host, server.port, cache_size=0)
    rows = []
    for label, size in SIZES.items():
        for kind in ("bytes", "numpy"):
            obj = make(kind, size)

            def raw_round_trip(obj: Any = obj) -> None:
                raw.set("raw-key", pickle.dumps(obj, protocol=5))
                pickle.loads(raw.get("raw-key"))  # type: ignore[arg-type]
                raw.delete("raw-key")

            def store_round_trip(obj: Any = obj) -> None:
                key = store.set(obj)
                store.get(key)
                store.evict(key)

            ops = ops_for(size, quick)
            raw_round_trip()
            store_round_trip()
            raw_times, store_times = [], []
            for _ in range(reps_for(size, reps)):
                raw_times.append(timed(raw_round_trip, ops))
                store_times.append(timed(store_round_trip, ops))
            rows.append(("sync", label, kind, raw_times, store_times, TARGETS[label]))
    raw.close()
    store.close()
    return rows


async def bench_async(
    server: RedisServer, reps: int, quick: bool
) -> list[tuple[Any, ...]]:
    raw = aioredis.Redis(host=server.host, port=server.port)
    store = AsyncRedisStore("bench-async", server.host, server.port, cache_size=0)
    rows = []
    for label, size in SIZES.items():
        for kind in ("bytes", "numpy"):
            obj = make(kind, size)

            async def raw_round_trip(obj: Any = obj) -> None:
                await raw.set("raw-key", pickle.dumps(obj, protocol=5))
                pickle.loads(await raw.get("raw-key"))  # type: ignore[arg-type]
                await raw.delete("raw-key")

            async def store_round_trip(obj: Any = obj) -> None:
                key = await store.aset(obj)
                await store.aget(key)
                await store.aevict(key)

            ops = ops_for(size, quick)
            await raw_round_trip()
            await store_round_trip()
            raw_times, store_times = [], []
            for _ in range(reps_for(size, reps)):
                raw_times.append(await atimed(raw_round_trip, ops))
                store_times.append(await atimed(store_round_trip, ops))
            rows.append(("async", label, kind, raw_times, store_times, 1.10))
    await raw.aclose()
    await store.aclose()
    return rows


async def concurrent_gets(server: RedisServer, reps: int) -> dict[str, float]:
    """Ops/s of 1,000 x 1 KB gets: concurrent async (store, raw) and sequential sync."""
    count = 1000
    blob = b"k" * 1000
    sync_store = RedisStore("bench-seq", server.host, server.port, cache_size=0)
    keys = sync_store.set_batch([blob] * count)
    async_store = AsyncRedisStore("bench-conc", server.host, server.port, cache_size=0)
    # Bounded like the store (64 connections) so neither opens 1,000 sockets.
    raw = aioredis.Redis.from_pool(
        aioredis.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=64
        )
    )
    await asyncio.gather(*(async_store.aget(key) for key in keys))
    await asyncio.gather(*(raw.get(key) for key in keys))
    results: dict[str, list[float]] = {"store": [], "raw": [], "sync": []}
    for _ in range(reps):
        start = time.perf_counter()
        await asyncio.gather(*(async_store.aget(key) for key in keys))
        results["store"].append(count / (time.perf_counter() - start))
        start = time.perf_counter()
        await asyncio.gather(*(raw.get(key) for key in keys))
        results["raw"].append(count / (time.perf_counter() - start))
        start = time.perf_counter()
        for key in keys:
            sync_store.get(key)
        results["sync"].append(count / (time.perf_counter() - start))
    await raw.aclose()
    await async_store.aclose()
    sync_store.close()
    return {name: statistics.median(values) for name, values in results.items()}


def print_rows(rows: list[tuple[Any, ...]]) -> None:
    print(
        f"{'face':<6}{'size':>7} {'object':<7}{'raw us':>11}{'store us':>11}"
        f"{'ratio':>7}{'target':>7}     {'cpu ratio':>9}"
    )
    for face, label, kind, raw_times, store_times, target in rows:
        raw_wall = statistics.median(wall for wall, _ in raw_times)
        store_wall = statistics.median(wall for wall, _ in store_times)
        raw_cpu = statistics.median(cpu for _, cpu in raw_times)
        store_cpu = statistics.median(cpu for _, cpu in store_times)
        ratio = store_wall / raw_wall
        mark = "ok" if ratio <= target else "MISS"
        print(
            f"{face:<6}{label:>7} {kind:<7}{raw_wall * 1e6:>11.1f}"
            f"{store_wall * 1e6:>11.1f}{ratio:>7.3f}{target:>7.2f} {mark:<4}"
            f"{store_cpu / raw_cpu:>9.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=41, help="repetitions per row")
    parser.add_argument("--quick", action="store_true", help="fewer ops per rep")
    args = parser.parse_args()
    with RedisServer() as server:
        print(f"redis-server {server.host}:{server.port}, median of {args.reps} reps")
        print_rows(bench_sync(server, args.reps, args.quick))
        print_rows(asyncio.run(bench_async(server, args.reps, args.quick)))
        rates = asyncio.run(concurrent_gets(server, max(3, args.reps // 4)))
        print(
            f"1,000 x 1 KB gets, ops/s: concurrent store.aget {rates['store']:,.0f}, "
            f"concurrent raw redis.asyncio {rates['raw']:,.0f}, "
            f"sequential sync store.get {rates['sync']:,.0f}; "
            f"async/sync {rates['store'] / rates['sync']:.2f}, "
            f"store/raw {rates['store'] / rates['raw']:.2f}"
        )


if __name__ == "__main__":
    main()
