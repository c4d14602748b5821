"""Future wake latency: `set_result` to the consumer's first use of the value.

A consumer thread blocks on ``future.result()`` (or on first use of the
future's proxy); the producer waits a moment so the consumer is blocked,
then takes the time and calls ``set_result``; the consumer takes the time
when the value is in its hands. Baselines, measured in the same run:

- redis: raw redis-py ``RPUSH`` of the same payload to a list a consumer is
  blocked on with ``BLPOP`` (the floor for a wake through the server);
- local: a `threading.Event` set by the producer, then a dict lookup.

ProxyStore 1.1's ``Store.future()`` (a polling future: its factory sleeps
``polling_interval`` between ``exists`` calls) is measured on the same Redis
server in the same run, in its own virtual environment (`ps11`), with the
same harness: once with its defaults (1 s interval, no backoff) and once
tuned to a 1 ms interval (its best case, at one ``EXISTS`` per millisecond
per waiter). Redis cases run in ``--blocks`` interleaved blocks (ABAB), so
noise from other processes on the machine hits every case alike.

EndpointStore futures long-poll the endpoint (a process started here):
against a raw HTTP client doing the same (wait, PUT, GET: the protocol's
floor) and against the polling they replaced (a tenth of the rounds), also
with the value set 0.1 s after the consumer started waiting (where polling's
backoff has grown).

FileStore futures poll with backoff (2 ms doubling to 0.5 s) and are shown
for comparison over fewer rounds.

Usage:
    python benchmarks/bench_futures.py [--rounds N] [--blocks B] [--cases ...]

Set ``PROXYSTORE11_VENV=/work/main/.bench/ps11`` to reuse a built 1.1
environment.
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

from benchmarks import ps11
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
    settle: float = SETTLE,
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
        time.sleep(settle)
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


def future_runs(
    store: Any, rounds: int, settle: float = SETTLE
) -> tuple[list[float], list[float]]:
    def by_result(future: Any) -> Any:
        return future.result(timeout=30)

    def by_proxy(pair: Any) -> Any:
        return len(pair[1])  # first use of the proxy

    results = measure(
        rounds,
        lambda _: store.future(timeout=30),
        by_result,
        lambda future, _: future.set_result(PAYLOAD),
        settle,
    )

    def prepare_proxy(_: int) -> Any:
        future = store.future(timeout=30)
        return future, future.proxy()

    proxies = measure(
        rounds,
        prepare_proxy,
        by_proxy,
        lambda pair, _: pair[0].set_result(PAYLOAD),
        settle,
    )
    return results, proxies


# Runs under ProxyStore 1.1 (benchmarks/ps11.py): the same harness as
# `measure`, on the Redis server at argv[1]:argv[2]; prints the latencies.
PS11_SCRIPT = """
import json, queue, sys, threading, time
from proxystore.connectors.redis import RedisConnector
from proxystore.store import Store, register_store

host, port = sys.argv[1], int(sys.argv[2])
rounds, interval = int(sys.argv[3]), float(sys.argv[4])
store = Store("bench-futures-ps11", RedisConnector(host, port), cache_size=0)
register_store(store)
payload = b"x" * 100
handles, woke = queue.Queue(), queue.Queue()

def consumer():
    for _ in range(rounds):
        future = handles.get(timeout=30)
        future.result()
        woke.put(time.perf_counter())

thread = threading.Thread(target=consumer, daemon=True)
thread.start()
latencies = []
for _ in range(rounds):
    future = store.future(polling_interval=interval, polling_timeout=30)
    handles.put(future)
    time.sleep(SETTLE)
    start = time.perf_counter()
    future.set_result(payload)
    latencies.append(woke.get(timeout=30) - start)
thread.join(30)
store.close()
print(json.dumps(latencies))
""".replace("SETTLE", repr(SETTLE))


def ps11_block(server: Any, rounds: int, interval: float) -> list[float]:
    """`rounds` wake latencies of ProxyStore 1.1's polling future."""
    latencies: list[float] = ps11.run(
        PS11_SCRIPT, server.host, str(server.port), str(rounds), str(interval)
    )
    return latencies


def redis_cases(rounds: int, blocks: int, with_ps11: bool) -> None:
    """Every Redis case in `blocks` interleaved blocks, on one server."""
    per_block = max(rounds // blocks, 1)
    names = [
        "redis: RPUSH/BLPOP (baseline)",
        "redis: future.result()",
        "redis: future proxy first use",
    ]
    if with_ps11:
        print(f"# ProxyStore {ps11.version()} in {ps11.venv_path()}")
        names += [
            "ps1.1: future.result() 1 s poll",
            "ps1.1: future.result() 1 ms poll",
        ]
    found: dict[str, list[float]] = {name: [] for name in names}
    with RedisServer() as server:
        raw = redis.Redis(server.host, server.port)
        waiter = redis.Redis(server.host, server.port)
        store = RedisStore(
            "bench-futures-redis", server.host, server.port, cache_size=0
        )
        register_store(store)

        def raw_wait(key: str) -> Any:
            return waiter.blpop([key], timeout=30)

        try:
            for block in range(blocks):
                found[names[0]] += measure(
                    per_block,
                    lambda index, b=block: f"raw-{b}-{index}",
                    raw_wait,
                    lambda key, _: raw.rpush(key, PAYLOAD),
                )
                results, proxies = future_runs(store, per_block)
                found[names[1]] += results
                found[names[2]] += proxies
                if with_ps11:
                    found[names[3]] += ps11_block(server, per_block, 1.0)
                    found[names[4]] += ps11_block(server, per_block, 0.001)
        finally:
            unregister_store("bench-futures-redis")
            store.close()
            raw.close()
            waiter.close()
    base = found[names[0]]
    print(row(names[0], base, None))
    for name in names[1:]:
        print(row(name, found[name], base))


def endpoint_cases(rounds: int, blocks: int) -> None:
    """EndpointStore futures (long-poll) against polling and raw HTTP, interleaved."""
    import httpx

    from proxystore.endpoint.testing import configure_endpoint
    from proxystore.store.base import Store as SyncStore
    from proxystore.store.endpoint import EndpointStore

    class PollingEndpointStore(EndpointStore):
        """The pre-long-poll behaviour: poll `exists` with backoff."""

        def _exists_within(self, key: Any, timeout: float | None) -> bool:
            return SyncStore._exists_within(self, key, timeout)

    per_block = max(rounds // blocks, 1)
    names = [
        "endpoint: raw HTTP wait+PUT+GET (base)",
        "endpoint: future.result() long-poll",
        "endpoint: future proxy first use",
        "endpoint: future.result() polling",
        "endpoint: long-poll, set after 0.1 s",
        "endpoint: polling, set after 0.1 s",
    ]
    found: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as home:
        site = configure_endpoint(Path(home), "bench-futures-ep")
        site.start()
        options = {"url": site.url, "token_file": str(site.token_file)}
        store = EndpointStore("bench-futures-ep", cache_size=0, **options)
        polling = PollingEndpointStore("bench-futures-ep-poll", cache_size=0, **options)
        register_store(store)
        owner = {"endpoint": site.uuid}
        producer = httpx.Client(base_url=site.url, headers=site.auth_headers)
        consumer = httpx.Client(base_url=site.url, headers=site.auth_headers)

        def raw_wait(key: str) -> Any:
            found = consumer.get(
                f"/objects/{key}/wait", params={**owner, "wait": "30"}, timeout=60
            )
            assert found.json()["exists"]
            return consumer.get(f"/objects/{key}", params=owner).content

        def raw_release(key: str, _: int) -> None:
            producer.put(f"/objects/{key}", params=owner, content=PAYLOAD)

        try:
            for block in range(blocks):
                found[names[0]] += measure(
                    per_block,
                    lambda index, b=block: f"raw-{b}-{index}",
                    raw_wait,
                    raw_release,
                )
                results, proxies = future_runs(store, per_block)
                found[names[1]] += results
                found[names[2]] += proxies
                few = max(per_block // 10, 5)
                found[names[3]] += future_runs(polling, few)[0]
                found[names[4]] += future_runs(store, few, 0.1)[0]
                found[names[5]] += future_runs(polling, few, 0.1)[0]
        finally:
            unregister_store("bench-futures-ep")
            store.close()
            polling.close()
            producer.close()
            consumer.close()
            site.stop()
    base = found[names[0]]
    print(row(names[0], base, None))
    for name in names[1:]:
        print(row(name, found[name], base))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument(
        "--cases",
        default="local,redis,ps11,endpoint,file",
        help="comma-separated: local, redis, ps11 (with redis), endpoint, file",
    )
    args = parser.parse_args()
    rounds = args.rounds
    cases = set(args.cases.split(","))
    header = f"{'case':<34} {'rounds':>6} {'median':>13} {'p99':>13} {'vs base':>9}"

    print(header)
    if "local" in cases:
        local_cases(rounds)
    if "redis" in cases or "ps11" in cases:
        redis_cases(rounds, args.blocks, "ps11" in cases)
    if "endpoint" in cases:
        endpoint_cases(rounds, args.blocks)
    if "file" in cases:
        with tempfile.TemporaryDirectory() as directory:
            files = FileStore("bench-futures-file", directory, cache_size=0)
            register_store(files)
            few = max(rounds // 10, 10)
            results, _ = future_runs(files, few)
            print(row("file: future.result() (polls)", results, None))
            unregister_store("bench-futures-file")
            files.close()


def local_cases(rounds: int) -> None:
    """LocalStore futures against a `threading.Event`."""
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


if __name__ == "__main__":
    main()
