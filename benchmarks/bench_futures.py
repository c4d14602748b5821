"""Future wake latency: `set_result` to the consumer's first use of the value.

A consumer thread blocks on ``future.result()`` (or on first use of the
future's proxy); the producer waits a moment so the consumer is blocked,
then takes the time and calls ``set_result``; the consumer takes the time
when the value is in its hands. Baselines, measured in the same run:

- redis: raw redis-py ``RPUSH`` of the same payload to a list a consumer is
  blocked on with ``BLPOP`` (the floor for a wake through the server);
- local: a `threading.Event` set by the producer, then a dict lookup.

FileStore futures poll with backoff (2 ms doubling to 0.5 s) and are shown
for comparison over fewer rounds.

Usage:
    python benchmarks/bench_futures.py [--rounds N]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxystore.store import register_store, unregister_store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer

PAYLOAD = b"x" * 100
SETTLE = 0.002  # seconds the producer waits so the consumer is blocked


def measure(
    rounds: int,
    prepare: Callable[[int], Any],
    wait: Callable[[Any], Any],
    release: Callable[[Any, int], None],
) -> list[float]:
    """Wake latencies (seconds): `release(handle, i)` to `wait(handle)` returning."""
    handles: queue.Queue[Any] = queue.Queue()
    woke: queue.Queue[float] = queue.Queue()

    def consumer() -> None:
        for _ in range(rounds):
            handle = handles.get(timeout=30)
            wait(handle)
            woke.put(time.perf_counter())

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    latencies = []
    for index in range(rounds):
        handle = prepare(index)
        handles.put(handle)
        time.sleep(SETTLE)
        start = time.perf_counter()
        release(handle, index)
        latencies.append(woke.get(timeout=30) - start)
    thread.join(30)
    return latencies


def row(name: str, latencies: list[float], baseline: list[float] | None) -> str:
    ordered = sorted(latencies)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    ratio = ""
    if baseline is not None:
        ratio = f"{median / statistics.median(baseline):8.2f}x"
    return (
        f"{name:<34} {len(ordered):6d} {median * 1e6:10.0f} us "
        f"{p99 * 1e6:10.0f} us {ratio}"
    )


def future_runs(store: Any, rounds: int) -> tuple[list[float], list[float]]:
    def by_result(future: Any) -> Any:
        return future.result(timeout=30)

    def by_proxy(pair: Any) -> Any:
        return len(pair[1])  # first use of the proxy

    results = measure(
        rounds,
        lambda _: store.future(timeout=30),
        by_result,
        lambda future, _: future.set_result(PAYLOAD),
    )

    def prepare_proxy(_: int) -> Any:
        future = store.future(timeout=30)
        return future, future.proxy()

    proxies = measure(
        rounds,
        prepare_proxy,
        by_proxy,
        lambda pair, _: pair[0].set_result(PAYLOAD),
    )
    return results, proxies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    rounds = args.rounds
    header = f"{'case':<34} {'rounds':>6} {'median':>13} {'p99':>13} {'vs base':>9}"

    print(header)
    events: dict[int, threading.Event] = {}
    values: dict[int, bytes] = {}

    def local_prepare(index: int) -> int:
        events[index] = threading.Event()
        return index

    def local_wait(index: int) -> bytes:
        events[index].wait(30)
        return values[index]

    def local_release(index: int, _: int) -> None:
        values[index] = PAYLOAD
        events[index].set()

    base = measure(rounds, local_prepare, local_wait, local_release)
    print(row("local: threading.Event (baseline)", base, None))
    local = LocalStore("bench-futures-local", cache_size=0)
    results, proxies = future_runs(local, rounds)
    print(row("local: future.result()", results, base))
    print(row("local: future proxy first use", proxies, base))
    local.close()

    with RedisServer() as server:
        raw = redis.Redis(server.host, server.port)
        waiter = redis.Redis(server.host, server.port)

        def raw_wait(key: str) -> Any:
            return waiter.blpop([key], timeout=30)

        base = measure(
            rounds,
            lambda index: f"raw-{index}",
            raw_wait,
            lambda key, _: raw.rpush(key, PAYLOAD),
        )
        print(row("redis: RPUSH/BLPOP (baseline)", base, None))
        store = RedisStore(
            "bench-futures-redis", server.host, server.port, cache_size=0
        )
        register_store(store)
        results, proxies = future_runs(store, rounds)
        print(row("redis: future.result()", results, base))
        print(row("redis: future proxy first use", proxies, base))
        unregister_store("bench-futures-redis")
        store.close()
        raw.close()
        waiter.close()

    with tempfile.TemporaryDirectory() as directory:
        files = FileStore("bench-futures-file", directory, cache_size=0)
        register_store(files)
        few = max(rounds // 10, 10)
        results, _ = future_runs(files, few)
        print(row("file: future.result() (polls)", results, None))
        unregister_store("bench-futures-file")
        files.close()


if __name__ == "__main__":
    main()
