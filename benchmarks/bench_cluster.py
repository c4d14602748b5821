"""RedisStore on a Redis Cluster: overhead vs raw redis-py, WAIT, scaling, failover.

1. Per-operation overhead: the store's `set` + `get` (cache off) of a
   100 B and a 1 MB `bytes` against redis-py's cluster client
   ``set(key, pickle.dumps(obj, protocol=5))`` + ``pickle.loads(get(key))``
   on the same 3-master cluster, sync face against ``redis.cluster.
   RedisCluster`` and async face against ``redis.asyncio.cluster.
   RedisCluster``. Blocks of raw and store round trips alternate (ABBA),
   so other load on the machine hits both; each row is the median ratio
   of the repetitions with its spread (min-max), and the ratio of this
   process's CPU time (less disturbed by other load). The store runs at
   its defaults: xxh3 checksum on, signing off (no keys in the
   environment). Goal: <= 1.05x.
2. The cost of ``wait_replicas=1`` (a ``WAIT`` after each write, in its
   round trip): the store with it against the store without, same way.
3. Aggregate throughput of 1 MB set+get+evict with 1, 2 and 4 client
   processes against one redis-server, the 3-master cluster with its 3
   replicas (each write is copied once more) and 3 masters without
   replicas (same run), with the CPU the clients and the servers used
   (cores busy = CPU seconds / wall seconds) and, from the server CPU per
   operation, a projection of what masters on their own hosts would carry.
4. With ``--failover``: the failover run of
   tests/store/test_redis_cluster_failover.py (a master SIGKILLed mid-run),
   without and with ``wait_replicas=1``.

Usage:
    python benchmarks/bench_cluster.py [--reps N] [--seconds S] [--rounds R]
        [--failover] [--skip-scaling]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pickle
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio.cluster as aiocluster
from redis.cluster import ClusterNode, RedisCluster

from proxystore.aio.redis import RedisStore as AsyncRedisStore
from proxystore.store.redis import RedisStore
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import RedisServer

SIZES = {"100 B": 100, "1 MB": 1_000_000}
Timed = tuple[float, float]  # wall and CPU seconds


def _count(size: int) -> int:
    return 100 if size < 10_000 else 10


def _timed(run: Callable[[], None]) -> Timed:
    began, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - began, time.process_time() - cpu


async def _atimed(run: Callable[[], Awaitable[None]]) -> Timed:
    began, cpu = time.perf_counter(), time.process_time()
    await run()
    return time.perf_counter() - began, time.process_time() - cpu


def _row(label: str, pairs: list[tuple[Timed, Timed]], count: int) -> str:
    """Median ratio (min-max) of B over A, CPU ratio, A's time per op."""
    ratios = [b[0] / a[0] for a, b in pairs]
    cpu = [b[1] / a[1] for a, b in pairs if a[1] > 0]
    base = statistics.median(a[0] for a, _ in pairs) / count
    return (
        f"  {label:>6}: {statistics.median(ratios):.3f}x "
        f"({min(ratios):.3f}-{max(ratios):.3f}), cpu ratio "
        f"{statistics.median(cpu):.3f}x; base {base * 1e6:.0f} us per set+get"
    )


def _alternate(
    a: Callable[[], Timed], b: Callable[[], Timed], reps: int, flush: Callable[[], Any]
) -> list[tuple[Timed, Timed]]:
    """ABBA: `reps` pairs of timings, the cluster flushed after each pair."""
    pairs = []
    for rep in range(reps):
        if rep % 2:
            second, first = b(), a()
        else:
            first, second = a(), b()
        pairs.append((first, second))
        flush()  # every run writes new keys into an empty cluster
    return pairs


def sync_overhead(seeds: list[str], reps: int) -> None:
    host, port = seeds[0].split(":")
    raw = RedisCluster(startup_nodes=[ClusterNode(host, int(port))])
    store = RedisStore("bench", cluster_nodes=seeds, cache_size=0)
    waiting = RedisStore("bench-w", cluster_nodes=seeds, cache_size=0, wait_replicas=1)
    print("sync face: store / raw redis.cluster.RedisCluster (median, min-max)")
    rows = []
    for label, size in SIZES.items():
        obj = os.urandom(size)
        count = _count(size)

        def raw_run(obj: bytes = obj, count: int = count) -> None:
            for _ in range(count):
                key = os.urandom(16).hex()  # a new key, as the store's
                raw.set(key, pickle.dumps(obj, protocol=5))
                pickle.loads(raw.get(key))

        def store_run(
            obj: bytes = obj, count: int = count, store: RedisStore = store
        ) -> None:
            for _ in range(count):
                store.get(store.set(obj))

        def wait_run(obj: bytes = obj, count: int = count) -> None:
            store_run(obj, count, waiting)

        def flush() -> None:
            raw.flushall(target_nodes=RedisCluster.PRIMARIES)

        for run in (raw_run, store_run, wait_run):
            run()  # warm up
        flush()
        pairs = _alternate(
            lambda: _timed(raw_run), lambda: _timed(store_run), reps, flush
        )
        print(_row(label, pairs, count))
        pairs = _alternate(
            lambda: _timed(store_run), lambda: _timed(wait_run), reps, flush
        )
        rows.append(_row(label, pairs, count))
    print("sync face: wait_replicas=1 / no wait (median, min-max)")
    print("\n".join(rows))
    store.close()
    waiting.close()
    raw.close()


async def async_overhead(seeds: list[str], reps: int) -> None:
    host, port = seeds[0].split(":")
    raw = aiocluster.RedisCluster(
        startup_nodes=[aiocluster.ClusterNode(host, int(port))]
    )
    store = AsyncRedisStore("abench", cluster_nodes=seeds, cache_size=0)
    print(
        "async face: store / raw redis.asyncio.cluster.RedisCluster (median, min-max)"
    )
    for label, size in SIZES.items():
        obj = os.urandom(size)
        count = _count(size)

        async def raw_run(obj: bytes = obj, count: int = count) -> None:
            for _ in range(count):
                key = os.urandom(16).hex()  # a new key, as the store's
                await raw.set(key, pickle.dumps(obj, protocol=5))
                pickle.loads(await raw.get(key))

        async def store_run(obj: bytes = obj, count: int = count) -> None:
            for _ in range(count):
                await store.aget(await store.aset(obj))

        await raw_run()
        await store_run()
        await raw.flushall(target_nodes=aiocluster.RedisCluster.PRIMARIES)
        pairs = []
        for rep in range(reps):
            if rep % 2:
                second = await _atimed(store_run)
                first = await _atimed(raw_run)
            else:
                first = await _atimed(raw_run)
                second = await _atimed(store_run)
            pairs.append((first, second))
            await raw.flushall(target_nodes=aiocluster.RedisCluster.PRIMARIES)
        print(_row(label, pairs, count))
    await store.aclose()
    await raw.aclose()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """Seconds of CPU the whole machine spent busy so far (every core)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _worker(config: dict[str, Any], seconds: float, barrier: Any, queue: Any) -> None:
    store = RedisStore(**config)
    obj = os.urandom(1_000_000)
    store.get(store.set(obj))
    barrier.wait(timeout=60)
    done = 0
    cpu = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        key = store.set(obj)
        store.get(key)
        store.evict(key)
        done += 1
    queue.put((done, time.process_time() - cpu))
    store.close()


def throughput(
    config: dict[str, Any], servers: list[RedisServer], processes: int, seconds: float
) -> tuple[float, float, list[float], float]:
    """MB/s of 1 MB set+get (2 MB a pair), client cores busy, each server's, machine's.

    Cores busy: CPU seconds over the run's wall seconds; the machine's
    counts every process (other work on the host too).
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(config, seconds, barrier, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    running = [server for server in servers if server.pid is not None]
    try:
        barrier.wait(timeout=120)
        began = time.perf_counter()
        before = [_cpu_seconds(server.pid or 0) for server in running]
        machine = _machine_busy()
        results = [queue.get(timeout=120 + seconds) for _ in workers]
        machine = _machine_busy() - machine
        after = [_cpu_seconds(server.pid or 0) for server in running]
        wall = time.perf_counter() - began
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
    pairs = sum(done for done, _ in results)
    client_cpu = sum(cpu for _, cpu in results)
    busy = [(b - a) / wall for a, b in zip(before, after, strict=True)]
    return 2 * pairs / seconds, client_cpu / seconds, busy, machine / wall


def scaling(
    server: RedisServer,
    cluster: RedisClusterNodes,
    bare: RedisClusterNodes,
    seconds: float,
    rounds: int,
) -> None:
    setups = {
        "one server": (
            {"name": "bench-1", "hostname": server.host, "port": server.port},
            [server],
        ),
        "3+3 cluster": (
            {"name": "bench-c", "cluster_nodes": cluster.seeds},
            cluster.servers,
        ),
        "3 masters": ({"name": "bench-b", "cluster_nodes": bare.seeds}, bare.servers),
    }
    print(
        f"aggregate 1 MB set+get+evict ({os.cpu_count()} CPUs), median of "
        f"{rounds} rounds (setups in rotating order): MB/s (x one server) "
        "[client cores busy + server cores busy, busiest server; whole machine]"
    )
    bounds: dict[str, list[float]] = {name: [] for name in setups}
    names = list(setups)
    for processes in (1, 2, 4):
        runs: dict[str, list[tuple[float, float, list[float], float]]] = {
            name: [] for name in setups
        }
        for round_ in range(rounds):
            turn = round_ % len(names)
            for name in names[turn:] + names[:turn]:
                config, servers = setups[name]
                runs[name].append(
                    throughput({**config, "cache_size": 0}, servers, processes, seconds)
                )
        cells = []
        single = statistics.median(run[0] for run in runs["one server"])
        for name in names:
            rate = statistics.median(run[0] for run in runs[name])
            clients = statistics.median(run[1] for run in runs[name])
            servers_busy = statistics.median(sum(run[2]) for run in runs[name])
            busiest = statistics.median(max(run[2]) for run in runs[name])
            machine = statistics.median(run[3] for run in runs[name])
            # A redis-server runs commands on one thread: on a host of its
            # own it saturates at one core busy.
            bounds[name] += [run[0] / max(run[2]) for run in runs[name]]
            cells.append(
                f"{name} {rate:5.0f} ({rate / single:.2f}x) "
                f"[{clients:.2f}+{servers_busy:.2f}, {busiest:.2f}; {machine:.2f}]"
            )
        print(f"  {processes} process(es): " + "; ".join(cells))
    print(
        "  projected server-side bound (the busiest server at one core, each "
        "node on its own host, clients elsewhere; median of every run): "
        + ", ".join(
            f"{name} {statistics.median(values):.0f} MB/s"
            for name, values in bounds.items()
        )
    )


def failover() -> None:
    from tests.store.test_redis_cluster_failover import run_failover

    for wait in (0, 1):
        with RedisClusterNodes() as cluster:
            store = RedisStore(
                f"failover-{wait}",
                cluster_nodes=cluster.seeds,
                socket_timeout=2.0,
                socket_connect_timeout=1.0,
                wait_replicas=wait,
            )
            try:
                tally, lost = run_failover(store, cluster, restart=wait > 0)
            finally:
                store.close()
        assert tally.first_failure is not None
        print(
            f"failover, wait_replicas={wait}: {tally.attempted} attempted, "
            f"{tally.failed_clearly} failed clearly {sorted(tally.errors)}, "
            f"{lost} acknowledged writes lost, {tally.wrong_values} wrong values; "
            f"failures from {tally.first_failure:.2f}s to {tally.last_failure:.2f}s "
            f"after the kill, longest run of consecutive failures "
            f"{tally.longest_outage:.2f}s, slowest set+get {tally.slowest:.2f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--failover", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    with RedisClusterNodes() as cluster, RedisServer() as server:
        sync_overhead(cluster.seeds, args.reps)
        asyncio.run(async_overhead(cluster.seeds, args.reps))
        if not args.skip_scaling:
            with RedisClusterNodes(replicas=0) as bare:
                scaling(server, cluster, bare, args.seconds, args.rounds)
    if args.failover:
        failover()


if __name__ == "__main__":
    main()
