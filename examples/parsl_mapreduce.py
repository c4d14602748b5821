"""Map-reduce on Parsl with `StoreExecutor`: map tasks get proxies of numpy arrays.

Runs a `HighThroughputExecutor` whose workers are real processes on this
machine (`LocalProvider`, one block of 2 workers), loaded by a
``DataFlowKernel``. ``StoreExecutor(dfk.executors["htex-local"], store)``
wraps it: each array given to a map task (64 kB or more) is put in a
`FileStore` (a temporary directory) and sent as a proxy, which the task
resolves on its worker (the first use fetches the array from the store);
the map tasks return small partial sums, which a reduce task adds up. Every
array the executor stored is evicted when its task finishes.

For comparison it runs the same map-reduce with ``should_proxy=ProxyNever()``
(the arrays go through Parsl's interchange), and prints the bytes of the
task buffers the executor sent to the interchange in both runs.

Tasks submitted through `StoreExecutor` go straight to the executor, past
the kernel's dependency handling: they are plain functions (no
``@python_app``), and the reduce is submitted with the map results, not
their futures.

Run it:

    python examples/parsl_mapreduce.py --arrays 8 --size 1000000 --chunk 2

The last line printed is a JSON summary (the tests read it).
"""

# parsl's executors are not fully annotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

import numpy as np
import parsl
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

import proxystore as ps
from proxystore.executor import Policy, ProxyNever, ProxySize, StoreExecutor

STORE_NAME = "parsl-example"
LABEL = "htex-local"
WORKERS = 2


class CountingHTEX(HighThroughputExecutor):  # type: ignore[misc]
    """A `HighThroughputExecutor` that counts the task bytes sent to its interchange."""

    sent = 0

    def submit_payload(self, context: Any, buffer: bytes) -> Any:
        """Count the serialized task (function, arguments), then send it."""
        self.sent += len(buffer)
        return super().submit_payload(context, buffer)


def map_sum(*arrays: Any) -> tuple[float, int, int]:
    """Sum a chunk of arrays on a worker.

    Returns:
        The sum, how many of the arrays arrived as proxies, the worker's pid.
    """
    # Parsl ships the function's code without this module's globals.
    import os

    from proxystore.proxy import Proxy

    proxies = sum(type(array) is Proxy for array in arrays)
    return float(sum(array.sum() for array in arrays)), proxies, os.getpid()


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
            CountingHTEX(
                label=LABEL,
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


def map_reduce(
    htex: CountingHTEX, store: Any, policy: Policy, chunks: list[list[np.ndarray]]
) -> dict[str, Any]:
    """One map task per chunk, then a reduce, through a `StoreExecutor`."""
    executor = StoreExecutor(htex, store, should_proxy=policy)
    sent_before = htex.sent
    partials = [executor.submit(map_sum, *chunk) for chunk in chunks]
    outcomes = [future.result(timeout=120) for future in partials]
    total = executor.submit(reduce_sum, *outcomes).result(timeout=120)
    return {
        "total": total,
        "arrived_as_proxy": sum(proxies for _, proxies, _ in outcomes),
        "worker_pids": sorted({pid for _, _, pid in outcomes}),
        "executor_bytes": htex.sent - sent_before,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the map-reduce both ways and return the summary printed last."""
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
    chunks = [
        arrays[start : start + args.chunk]
        for start in range(0, len(arrays), args.chunk)
    ]

    with tempfile.TemporaryDirectory() as work_dir:
        store_dir = os.path.join(work_dir, "store")
        store = ps.store.init_store(
            "file", name=STORE_NAME, store_dir=store_dir, metrics=True
        )
        dfk = parsl.load(htex_config(os.path.join(work_dir, "runinfo")))
        try:
            htex = dfk.executors[LABEL]
            result = map_reduce(htex, store, ProxySize(64_000), chunks)
            result["left_in_store"] = len(os.listdir(store_dir))
            plain = map_reduce(htex, store, ProxyNever(), chunks)
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
        f"{len(chunks)} map tasks in {len(result['worker_pids'])} worker process(es); "
        f"{result['arrived_as_proxy']} arrays arrived as proxies"
    )
    print(
        "bytes sent to Parsl's interchange: "
        f"{result['executor_bytes']:,} with StoreExecutor, "
        f"{plain['executor_bytes']:,} without (ProxyNever)"
    )
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
