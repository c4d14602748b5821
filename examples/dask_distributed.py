"""Dask distributed with proxies: large arrays skip the scheduler.

Starts a small `distributed.LocalCluster` (2 worker processes, 1 thread each)
and sums the same numpy arrays three times:

- raw: the arrays themselves are the task inputs;
- proxied: proxies of them (a `FileStore` in a temporary directory), bound
  into the task so dask never looks inside them;
- proxied, plain: proxies passed the obvious way, ``client.submit(total, p)``.

For each round it prints the bytes the client sent to the scheduler and the
bytes the scheduler sent to the workers (distributed's own per-connection
byte counters), and how often the proxies were fetched from the store in
the client/scheduler process versus on the workers. Both proxied rounds
fetch only on the workers: store proxies answer dask's isinstance() checks
and attribute probes from the class they recorded, and dask hashes them by
store and key.

Run it:

    python examples/dask_distributed.py --tasks 4 --size 1000000

The last line printed is a JSON summary (the tests read it).
"""

# distributed's Client and LocalCluster are not annotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from distributed import Client, LocalCluster

import proxystore as ps
from proxystore.proxy import is_resolved
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
    """The task: a function defined in this script, as user code usually is."""
    return float(array.sum())


def submit_bound(client: Client, value: Any) -> Any:
    """Submit `np.sum(value)` so dask never inspects `value` outside a worker.

    Needed only for proxies whose class is not known before they resolve
    (made by ``proxy_from_key`` or with a custom deserializer): dask checks
    plain task arguments with isinstance(), which such a proxy can only
    answer by resolving.
    """
    return client.submit(functools.partial(np.sum, value), pure=False)


def submit_plain(client: Client, value: Any) -> Any:
    """Submit `total(value)` the obvious way."""
    return client.submit(total, value, pure=False)


def run_round(
    client: Client, inputs: list[Any], submit: Callable[[Client, Any], Any]
) -> dict[str, Any]:
    """Sum every input on the cluster; return the sums and the bytes moved."""
    before = _traffic(client)
    futures = [submit(client, value) for value in inputs]
    sums = [float(result) for result in client.gather(futures)]
    after = _traffic(client)
    return {
        "sums": sums,
        "client_to_scheduler_bytes": after[0] - before[0],
        "scheduler_to_workers_bytes": after[1] - before[1],
    }


def run_proxied_round(
    client: Client,
    store: Store[Any],
    arrays: list[np.ndarray],
    submit: Callable[[Client, Any], Any],
) -> dict[str, Any]:
    """Like `run_round` with proxies, counting where the proxies resolved."""
    proxies = [store.proxy(array) for array in arrays]
    # The client and the LocalCluster scheduler share this process and this
    # store, so its metrics count fetches made by either.
    local_before = _fetches(store)
    workers_before = sum(client.run(_worker_fetches).values())
    result = run_round(client, proxies, submit)
    result["resolved_on_client"] = sum(is_resolved(p) for p in proxies)
    result["fetches_outside_workers"] = _fetches(store) - local_before
    workers_after = sum(client.run(_worker_fetches).values())
    result["fetches_on_workers"] = workers_after - workers_before
    return result


def _fetches(store: Store[Any]) -> int:
    metrics = store.metrics
    if metrics is None:
        raise RuntimeError(f"store {store.name!r} was built without metrics=True")
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
        try:
            with warnings.catch_warnings():
                # The raw round is *meant* to put large objects in the graph.
                warnings.filterwarnings("ignore", message=".*Large object.*")
                raw = run_round(client, arrays, submit_bound)
            proxied = run_proxied_round(client, store, arrays, submit_bound)
            plain = run_proxied_round(client, store, arrays, submit_plain)
        finally:
            store.close()
            ps.store.unregister_store(STORE_NAME)

    for other in (proxied, plain):
        if other["sums"] != raw["sums"]:
            raise RuntimeError(f"results differ: {raw['sums']} != {other['sums']}")

    print(f"{args.tasks} arrays, {payload:,} bytes in total")
    header = ("client->scheduler", "scheduler->workers", "fetches here", "on workers")
    print(f"{'':>16} {header[0]:>18} {header[1]:>19} {header[2]:>13} {header[3]:>11}")
    rows = (("raw", raw), ("proxied", proxied), ("proxied, plain", plain))
    for label, result in rows:
        print(
            f"{label:>16} {result['client_to_scheduler_bytes']:>18,}"
            f" {result['scheduler_to_workers_bytes']:>19,}"
            f" {result.get('fetches_outside_workers', '-'):>13}"
            f" {result.get('fetches_on_workers', '-'):>11}"
        )
    summary = {"payload_bytes": payload, "raw": raw, "proxied": proxied, "plain": plain}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
