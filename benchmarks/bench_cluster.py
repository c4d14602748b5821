"""RedisStore on a Redis Cluster: overhead vs raw redis-py, and scaling.

1. Per-operation overhead: the store's `set` + `get` (cache off) of a
   100 B and a 1 MB `bytes` against redis-py's ``RedisCluster``
   ``set(key, pickle.dumps(obj, protocol=5))`` + ``pickle.loads(get(key))``
   on the same 3-master cluster, alternating, median ratio of the
   repetitions and its spread (min-max), and the ratio of this process's
   CPU time (less disturbed by other load). Goal: <= 1.05x.
2. Aggregate throughput of 1 MB set+get+evict with 1, 2 and 4 client
   processes against one redis-server, the 3-master cluster with its 3
   replicas (each write is copied once more) and 3 masters without replicas
   (same run).
   On a 2-core machine the CPU, shared by clients and servers, is the limit:
   the cluster cannot scale here as it would on three hosts.

Usage:
    python benchmarks/bench_cluster.py [--reps N] [--seconds S]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.cluster import ClusterNode, RedisCluster

from proxystore.store.redis import RedisStore
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import RedisServer

SIZES = {"100 B": 100, "1 MB": 1_000_000}


def raw_round_trips(raw: RedisCluster, obj: bytes, count: int) -> tuple[float, float]:
    """Wall and CPU seconds of `count` raw set+get."""
    began, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        key = f"raw-{index}"
        raw.set(key, pickle.dumps(obj, protocol=5))
        pickle.loads(raw.get(key))
    return time.perf_counter() - began, time.process_time() - cpu


def store_round_trips(store: RedisStore, obj: bytes, count: int) -> tuple[float, float]:
    """Wall and CPU seconds of `count` store set+get."""
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        store.get(store.set(obj))
    return time.perf_counter() - began, time.process_time() - cpu


def overhead(cluster: RedisClusterNodes, reps: int) -> None:
    host, port = cluster.seeds[0].split(":")
    raw = RedisCluster(startup_nodes=[ClusterNode(host, int(port))])
    store = RedisStore("bench", cluster_nodes=cluster.seeds, cache_size=0)
    print("per-operation set+get, store / raw RedisCluster (median, min-max)")
    for label, size in SIZES.items():
        obj = os.urandom(size)
        count = 200 if size < 10_000 else 20
        store_round_trips(store, obj, count)  # warm up both
        raw_round_trips(raw, obj, count)
        ratios, cpu_ratios, raw_times = [], [], []
        for _ in range(reps):
            raw_time, raw_cpu = raw_round_trips(raw, obj, count)
            store_time, store_cpu = store_round_trips(store, obj, count)
            ratios.append(store_time / raw_time)
            cpu_ratios.append(store_cpu / raw_cpu)
            raw_times.append(raw_time / count)
            raw.flushall(target_nodes=RedisCluster.PRIMARIES)
        print(
            f"  {label:>6}: {statistics.median(ratios):.3f}x "
            f"({min(ratios):.3f}-{max(ratios):.3f}), cpu ratio "
            f"{statistics.median(cpu_ratios):.3f}x; raw "
            f"{statistics.median(raw_times) * 1e6:.0f} us per set+get"
        )
    store.close()
    raw.close()


def _worker(config: dict[str, Any], seconds: float, barrier: Any, queue: Any) -> None:
    store = RedisStore(**config)
    obj = os.urandom(1_000_000)
    store.get(store.set(obj))
    barrier.wait(timeout=60)
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        key = store.set(obj)
        store.get(key)
        store.evict(key)
        done += 1
    queue.put(done)
    store.close()


def throughput(config: dict[str, Any], processes: int, seconds: float) -> float:
    """MB/s of 1 MB set+get (2 MB moved per pair) over every process."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(config, seconds, barrier, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        total = sum(queue.get(timeout=120 + seconds) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
    return 2 * total / seconds


def scaling(
    server: RedisServer,
    cluster: RedisClusterNodes,
    bare: RedisClusterNodes,
    seconds: float,
) -> None:
    single = {"name": "bench-1", "hostname": server.host, "port": server.port}
    clustered = {"name": "bench-c", "cluster_nodes": cluster.seeds}
    no_replicas = {"name": "bench-b", "cluster_nodes": bare.seeds}
    print(
        f"aggregate 1 MB set+get+evict, MB/s ({os.cpu_count()} CPUs): one server, "
        "3 masters + 3 replicas, 3 masters alone"
    )
    for processes in (1, 2, 4):
        one = throughput({**single, "cache_size": 0}, processes, seconds)
        many = throughput({**clustered, "cache_size": 0}, processes, seconds)
        masters = throughput({**no_replicas, "cache_size": 0}, processes, seconds)
        print(
            f"  {processes} process(es): {one:5.0f}, {many:5.0f} ({many / one:.2f}x), "
            f"{masters:5.0f} ({masters / one:.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with RedisClusterNodes() as cluster, RedisServer() as server:
        overhead(cluster, args.reps)
        with RedisClusterNodes(replicas=0) as bare:
            scaling(server, cluster, bare, args.seconds)


if __name__ == "__main__":
    main()
