"""Dask distributed with `StoreExecutor`: large arrays skip the scheduler.

Starts a small `distributed.LocalCluster` (2 worker processes, 1 thread each)
and runs the same tasks on the same numpy arrays three ways:

- raw: ``client.submit(total, array)``, the arrays themselves in the graph;
- executor: ``StoreExecutor(client.get_executor(), store).submit(total,
  array)``: arrays of 100 kB or more go to a `FileStore` (a temporary
  directory) and travel as proxies, resolved on the workers; each is
  evicted when its task finishes;
- executor, array results: ``submit(double, array)`` with
  ``result_as="value"``: the workers put their large results in the store
  too, and the executor fetches them (and evicts them) for the caller.

For each round it prints the bytes the client sent to the scheduler and the
bytes the scheduler sent to the workers (distributed's own per-connection
byte counters), how often the store was read in this process (client and
scheduler) and on the workers, and the bytes read from the store here.

Run it:

    python examples/dask_distributed.py --tasks 4 --size 1000000

The last line printed is a JSON summary (the tests read it).
"""

# distributed's Client and LocalCluster are not annotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from distributed import Client, LocalCluster

import proxystore as ps
from proxystore.executor import ProxySize, StoreExecutor
from proxystore.store.base import Store

STORE_NAME = "dask-example"


def _scheduler_bytes_to_workers(dask_scheduler: Any) -> int:
    return sum(comm.byte_count for comm in dask_scheduler.stream_comms.values())


def _worker_fetches() -> int:
    # Runs on each worker: the store there was rebuilt from the proxies'
    # configuration the first time a proxy resolved.
    store = ps.store.get_store(STORE_NAME)
    return 0 if store is None else _fetches(store)


def _traffic(client: Client) -> tuple[int, int]:
    """Return (client -> scheduler, scheduler -> workers) bytes sent so far."""
    if client.scheduler_comm is None:
        raise RuntimeError("the client is not connected to a scheduler")
    to_scheduler: int = client.scheduler_comm.byte_count
    to_workers: int = client.run_on_scheduler(_scheduler_bytes_to_workers)
    return to_scheduler, to_workers


def total(array: np.ndarray) -> float:
    """Task: the sum of an array (a small result)."""
    return float(array.sum())


def double(array: np.ndarray) -> np.ndarray:
    """Task: a new array as large as its argument."""
    return array * 2


def run_round(
    client: Client,
    store: Store[Any],
    submit: Callable[..., Any],
    task: Callable[..., Any],
    arrays: list[np.ndarray],
) -> dict[str, Any]:
    """Run `task` on every array; return the sums, bytes moved and store reads."""
    metrics = store.metrics
    if metrics is None:
        raise RuntimeError(f"store {store.name!r} was built without metrics=True")
    before = _traffic(client)
    # The client and the LocalCluster scheduler share this process and this
    # store, so its metrics count reads made by either.
    here_before, bytes_before = _fetches(store), metrics["get"].bytes
    workers_before = sum(client.run(_worker_fetches).values())
    futures = [submit(task, array) for array in arrays]
    sums = [float(np.sum(future.result(120))) for future in futures]
    after = _traffic(client)
    return {
        "sums": sums,
        "client_to_scheduler_bytes": after[0] - before[0],
        "scheduler_to_workers_bytes": after[1] - before[1],
        "fetches_here": _fetches(store) - here_before,
        "fetched_bytes_here": metrics["get"].bytes - bytes_before,
        "fetches_on_workers": sum(client.run(_worker_fetches).values())
        - workers_before,
    }


def _fetches(store: Store[Any]) -> int:
    metrics = store.metrics
    assert metrics is not None
    return metrics["get"].count + metrics["cache_hit"].count


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the three rounds and return the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4, help="number of arrays")
    parser.add_argument(
        "--size", type=int, default=1_000_000, help="float64 elements per array"
    )
    args = parser.parse_args(argv)

    arrays = [np.full(args.size, float(i)) for i in range(args.tasks)]
    payload = sum(array.nbytes for array in arrays)

    with (
        tempfile.TemporaryDirectory() as store_dir,
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        store = ps.store.init_store(
            "file", name=STORE_NAME, store_dir=store_dir, metrics=True
        )
        # Arguments and results of 100 kB or more travel by proxy.
        policy = ProxySize(100_000)
        executor = StoreExecutor(
            client.get_executor(pure=False), store, should_proxy=policy
        )
        values = StoreExecutor(
            client.get_executor(pure=False),
            store,
            should_proxy=policy,
            result_as="value",
        )
        try:
            with warnings.catch_warnings():
                # The raw round is *meant* to put large objects in the graph.
                warnings.filterwarnings("ignore", message=".*Large object.*")
                raw = run_round(client, store, _plain_submit(client), total, arrays)
            proxied = run_round(client, store, executor.submit, total, arrays)
            results = run_round(client, store, values.submit, double, arrays)
            left = os.listdir(store_dir)
        finally:
            store.close()
            ps.store.unregister_store(STORE_NAME)

    if proxied["sums"] != raw["sums"]:
        raise RuntimeError(f"results differ: {raw['sums']} != {proxied['sums']}")
    if results["sums"] != [2 * value for value in raw["sums"]]:
        raise RuntimeError(f"doubled results differ: {results['sums']}")

    print(f"{args.tasks} arrays, {payload:,} bytes in total")
    header = ("client->scheduler", "scheduler->workers", "reads here", "on workers")
    print(f"{'':>28} {header[0]:>18} {header[1]:>19} {header[2]:>11} {header[3]:>11}")
    rows = (
        ("raw client.submit", raw),
        ("StoreExecutor", proxied),
        ("StoreExecutor, array results", results),
    )
    for label, result in rows:
        print(
            f"{label:>28} {result['client_to_scheduler_bytes']:>18,}"
            f" {result['scheduler_to_workers_bytes']:>19,}"
            f" {result['fetches_here']:>11} {result['fetches_on_workers']:>11}"
        )
    print(
        f"array results fetched from the store here: "
        f"{results['fetched_bytes_here']:,} bytes; objects left in the store: "
        f"{len(left)}"
    )
    summary = {
        "payload_bytes": payload,
        "raw": raw,
        "proxied": proxied,
        "results": results,
        "left_in_store": len(left),
    }
    print(json.dumps(summary))
    return summary


def _plain_submit(client: Client) -> Callable[..., Any]:
    def submit(task: Callable[..., Any], array: np.ndarray) -> Any:
        return client.submit(task, array, pure=False)

    return submit


if __name__ == "__main__":
    main()
