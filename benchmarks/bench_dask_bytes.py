"""Bytes through the Dask scheduler: `StoreExecutor` against plain ``client.submit``.

A Dask ``LocalCluster`` with worker processes (the scheduler runs in this
process, so its connections can be counted here). Each round submits the same
NumPy arrays twice, ABAB: once with ``client.submit(fn, array)`` and once
through ``StoreExecutor(client.get_executor(), RedisStore(...))`` (arrays of
at least 100 kB go to a loopback Redis server as proxies, results likewise),
and counts the bytes the scheduler's connections read and wrote meanwhile
(wrapping ``distributed.comm.tcp``: every frame read or written on a
connection whose local address is the scheduler's). Two tasks per array:

- ``total``: returns ``array.sum()`` (the argument travels, the result is small);
- ``echo``: returns ``array * 2`` (the result travels too; the caller takes
  ``result.sum()``).

Also shown: wall time per round (submit to all results used), median and
spread over rounds, and the argument bytes that went to Redis instead (results
are put there by the workers).

Usage:
    python benchmarks/bench_dask_bytes.py [--arrays 8] [--mb 8] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxystore.executor import ProxySize, StoreExecutor
from proxystore.store import register_store, unregister_store
from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer


class SchedulerBytes:
    """Counts frame bytes on the connections of one address (the scheduler's)."""

    def __init__(self) -> None:
        from distributed.comm import tcp

        self.address = ""
        self.read = 0
        self.written = 0
        self._local: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        comm_init = tcp.TCP.__init__
        comm_write = tcp.TCP.write
        read_bytes = tcp.read_bytes_rw
        counter = self

        def init(comm: Any, stream: Any, local: str, *args: Any, **kwargs: Any) -> None:
            comm_init(comm, stream, local, *args, **kwargs)
            counter._local[stream] = local

        async def write(comm: Any, *args: Any, **kwargs: Any) -> Any:
            sent = await comm_write(comm, *args, **kwargs)
            if comm.local_address == counter.address:
                counter.written += sent
            return sent

        async def read(stream: Any, n: int) -> Any:
            data = await read_bytes(stream, n)
            if counter._local.get(stream) == counter.address:
                counter.read += n
            return data

        tcp.TCP.__init__ = init
        tcp.TCP.write = write
        tcp.read_bytes_rw = read

    def total(self) -> int:
        """Bytes read and written by the scheduler so far."""
        return self.read + self.written


def total(array: Any) -> float:
    """Task: the sum of an array (small result)."""
    return float(array.sum())


def echo(array: Any) -> Any:
    """Task: a new array as large as the argument."""
    return array * 2


def run_round(
    submit: Callable[..., Any], arrays: list[np.ndarray], task: Callable[..., Any]
) -> float:
    """Submit `task` on every array, use every result; return the elapsed seconds."""
    start = time.perf_counter()
    futures = [submit(task, array) for array in arrays]
    for future in futures:
        result = future.result(300)
        if task is echo:
            result = result.sum()
        assert float(result) > 0
    return time.perf_counter() - start


def main() -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", type=int, default=8)
    parser.add_argument("--mb", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    counter = SchedulerBytes()
    size = int(args.mb * 1e6)
    arrays = [np.full(size, index + 1, dtype=np.uint8) for index in range(args.arrays)]
    payload = sum(array.nbytes for array in arrays)
    with (
        RedisServer() as server,
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_port=0,
        ) as cluster,
        Client(cluster) as client,
    ):
        counter.address = cluster.scheduler_address
        store = RedisStore(
            "bench-dask-bytes", server.host, server.port, metrics=True, cache_size=0
        )
        register_store(store)
        executor = StoreExecutor(
            client.get_executor(), store, should_proxy=ProxySize(100_000)
        )
        cases = {"plain client.submit": client.submit, "StoreExecutor": executor.submit}
        found: dict[tuple[str, str], list[tuple[int, float]]] = {}
        # One warm-up round of each, not counted (imports, connections).
        for submit in cases.values():
            run_round(submit, arrays[:1], total)
        for _ in range(args.rounds):
            for task in (total, echo):
                for name, submit in cases.items():
                    before = counter.total()
                    seconds = run_round(submit, arrays, task)
                    found.setdefault((task.__name__, name), []).append(
                        (counter.total() - before, seconds)
                    )
        assert store.metrics is not None
        to_redis = store.metrics["set"].bytes
        unregister_store("bench-dask-bytes")
        store.close()

    print(
        f"{args.arrays} arrays of {args.mb:g} MB per round ({payload / 1e6:.0f} MB), "
        f"{args.rounds} rounds, LocalCluster 2 worker processes"
    )
    print(
        f"{'task':<6} {'case':<20} {'scheduler MB/round':>19} {'x payload':>9} "
        f"{'round s (median)':>17} {'min-max s':>13}"
    )
    for (task_name, name), samples in found.items():
        moved = statistics.median(nbytes for nbytes, _ in samples)
        times = [seconds for _, seconds in samples]
        print(
            f"{task_name:<6} {name:<20} {moved / 1e6:19.3f} {moved / payload:9.4f} "
            f"{statistics.median(times):17.3f} "
            f"{min(times):6.3f}-{max(times):6.3f}"
        )
    print(f"arguments StoreExecutor put in Redis from here: {to_redis / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
