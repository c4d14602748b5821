"""Map-reduce on Parsl with proxies: map tasks get proxies of numpy arrays.

Runs a `HighThroughputExecutor` whose workers are real processes on this
machine (`LocalProvider`, one block of 2 workers). The producer puts each
array in a `FileStore` (a temporary directory) and hands the map tasks
proxies; each map task resolves its proxy on the worker, where the first use
fetches the array from the store, and returns a small partial result. A
reduce task sums the partials.

Map tasks take *lists* of proxies. For comparison, the script then runs the
same map-reduce with each proxy as a top-level argument, ``map_one(proxy)``,
and counts the proxies resolved in this process while submitting: Parsl
checks each top-level argument with isinstance(), which store proxies answer
from the class they recorded, without fetching.

Run it:

    python examples/parsl_mapreduce.py --arrays 8 --size 1000000 --chunk 2

The last line printed is a JSON summary (the tests read it).
"""

# parsl's decorators and executors are not fully annotated.
# mypy: disallow-untyped-calls=False, disallow-untyped-decorators=False

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
from typing import Any

import numpy as np
import parsl
from parsl.app.app import python_app
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

import proxystore as ps
from proxystore.proxy import is_resolved

STORE_NAME = "parsl-example"
WORKERS = 2


@python_app
def map_sum(arrays: list[Any]) -> tuple[float, int, int]:
    """Sum a chunk of arrays on a worker.

    Returns:
        The sum, how many of the arrays arrived as proxies, the worker's pid.
    """
    # Parsl ships the function's code without this module's globals.
    import os

    from proxystore.proxy import Proxy

    proxies = sum(type(array) is Proxy for array in arrays)
    return float(sum(array.sum() for array in arrays)), proxies, os.getpid()


@python_app
def map_one(array: Any) -> tuple[float, int, int]:
    """Sum one array passed as a top-level argument (the obvious way)."""
    import os

    from proxystore.proxy import Proxy

    return float(array.sum()), int(type(array) is Proxy), os.getpid()


@python_app
def reduce_sum(*partials: tuple[float, int, int]) -> float:
    """Add the partial sums."""
    return sum(partial[0] for partial in partials)


def htex_config(run_dir: str) -> Config:
    """A Parsl config with HTEX workers as local processes on loopback.

    The interchange and the workers are started from the shell with this
    process's environment: Parsl's scripts (``interchange.py``,
    ``process_worker_pool.py``) must be on ``PATH`` and proxystore importable.
    """
    return Config(
        executors=[
            HighThroughputExecutor(
                label="htex-local",
                address="127.0.0.1",
                max_workers_per_node=WORKERS,
                cores_per_worker=1,
                heartbeat_period=2,
                heartbeat_threshold=10,
                poll_period=100,
                provider=LocalProvider(
                    init_blocks=1,
                    min_blocks=1,
                    max_blocks=1,
                ),
            )
        ],
        run_dir=run_dir,
        strategy="none",
        usage_tracking=0,
    )


def map_reduce(chunks: list[list[Any]]) -> dict[str, Any]:
    """Run one map task per chunk and a reduce over their results."""
    partials = [map_sum(chunk) for chunk in chunks]
    total = reduce_sum(*partials).result(timeout=120)
    outcomes = [future.result() for future in partials]
    return {
        "total": total,
        "arrived_as_proxy": sum(proxies for _, proxies, _ in outcomes),
        "worker_pids": sorted({pid for _, _, pid in outcomes}),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the map-reduce and return the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", type=int, default=8, help="number of arrays")
    parser.add_argument(
        "--size", type=int, default=1_000_000, help="float64 elements per array"
    )
    parser.add_argument("--chunk", type=int, default=2, help="arrays per map task")
    args = parser.parse_args(argv)

    arrays = [np.full(args.size, float(i)) for i in range(args.arrays)]
    payload = sum(array.nbytes for array in arrays)
    expected = float(sum(array.sum() for array in arrays))

    with tempfile.TemporaryDirectory() as work_dir:
        store = ps.store.init_store(
            "file",
            name=STORE_NAME,
            store_dir=os.path.join(work_dir, "store"),
            metrics=True,
        )
        dfk = parsl.load(htex_config(os.path.join(work_dir, "runinfo")))
        try:
            proxies = [store.proxy(array) for array in arrays]
            # Map tasks take lists of proxies: Parsl looks at each top-level
            # argument with isinstance() (is it a Future? a File?), which a
            # transparent proxy can only answer by fetching its target.
            chunks = [
                proxies[start : start + args.chunk]
                for start in range(0, len(proxies), args.chunk)
            ]
            result = map_reduce(chunks)
            result["resolved_on_submit_side"] = sum(map(is_resolved, proxies))
            result["pickled_proxy_bytes"] = len(pickle.dumps(chunks))

            # The same with each proxy as a top-level argument, for comparison.
            plain_proxies = [store.proxy(array) for array in arrays]
            plain_partials = [map_one(proxy) for proxy in plain_proxies]
            plain = {
                "total": reduce_sum(*plain_partials).result(timeout=120),
                "resolved_on_submit_side": sum(map(is_resolved, plain_proxies)),
            }
        finally:
            dfk.cleanup()
            parsl.clear()
            store.close()
            ps.store.unregister_store(STORE_NAME)

    for outcome in (result, plain):
        if outcome["total"] != expected:
            raise RuntimeError(f"reduce gave {outcome['total']}, expected {expected}")

    summary = {
        "arrays": args.arrays,
        "map_tasks": len(chunks),
        "expected": expected,
        "payload_bytes": payload,
        **result,
        "plain": plain,
    }
    print(f"sum over {args.arrays} arrays ({payload:,} bytes): {result['total']}")
    print(
        f"{len(chunks)} map tasks in {len(result['worker_pids'])} worker process(es), "
        f"sent {summary['pickled_proxy_bytes']:,} bytes of pickled proxies"
    )
    print(
        "proxies resolved on the submitting side: "
        f"{result['resolved_on_submit_side']} in lists, "
        f"{plain['resolved_on_submit_side']} as top-level arguments"
    )
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
