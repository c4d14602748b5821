"""What the async FileStore's small operations cost, against their floors.

Its file metadata calls (``exists``, ``get_timestamp``'s stat, the rename and
removes of ``set`` and ``evict``) run in a worker thread so that a slow file
system never stalls the event loop. The floors, measured in the same run and
interleaved with the store's operations (ABAB), are the bare call on the loop
(``os.path.exists``) and one worker-thread hop (``asyncio.to_thread`` of it).
The report gives medians in microseconds, the ratio of each operation to the
thread-hop floor, and the spread (interquartile range of the per-round
ratios, as a percent of the median ratio).

Opening a store is priced too: ``FileStore(...)`` on the directory (which
holds ``--objects`` objects), against a plain construction in the same run
(``LocalStore(...)``: the base store's own work, no directory); the ratio is
``FileStore() vs LocalStore()``. Before round 3 every construction swept
(listed) the directory; now only a process's first one does.

To compare two trees (say, before and after a change), run it under each,
alternating: ``PYTHONPATH=TREE python benchmarks/bench_file_loop.py``.

Usage: python benchmarks/bench_file_loop.py [--rounds 30] [--ops 200] [--dir PATH]
    [--objects 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import proxystore
from proxystore.aio.file import FileStore
from proxystore.aio.local import LocalStore


async def _per_op(operation: Callable[[], Awaitable[Any]], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        await operation()
    return (time.perf_counter() - start) / ops * 1e6


async def main(
    rounds: int, ops: int, directory: str, objects: int = 1000
) -> dict[str, Any]:
    store = FileStore("bench-file-loop", directory)
    key = await store.aset(b"x" * 16384)
    for _ in range(objects):
        await store.aset(b"z" * 64)
    path = os.path.join(store.store_dir, key)
    payload = b"y" * 16384

    async def inline() -> bool:
        return os.path.exists(path)

    async def hop() -> bool:
        return await asyncio.to_thread(os.path.exists, path)

    async def set_evict() -> None:
        await store.aevict(await store.aset(payload))

    async def open_file() -> None:
        FileStore("bench-file-open", directory)

    async def open_local() -> None:
        LocalStore("bench-local-open")

    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "inline exists (floor)": inline,
        "thread hop (floor)": hop,
        "aexists": lambda: store.aexists(key),
        "aget_timestamp": lambda: store.aget_timestamp(key),
        "aset+aevict 16 KiB": set_evict,
        "LocalStore() (plain construction)": open_local,
        "FileStore()": open_file,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for operation in cases.values():  # warm up
        await _per_op(operation, 10)
    for _ in range(rounds):
        for name, operation in cases.items():
            samples[name].append(await _per_op(operation, ops))
    await store.aclose()
    floor = samples["thread hop (floor)"]
    report: dict[str, Any] = {"tree": os.path.dirname(proxystore.__path__[0])}
    for name, values in samples.items():
        ratios = [value / base for value, base in zip(values, floor, strict=True)]
        q1, median_ratio, q3 = statistics.quantiles(ratios, n=4)
        report[name] = {
            "median_us": round(statistics.median(values), 2),
            "vs_thread_hop": round(statistics.median(ratios), 2),
            "spread_pct": round((q3 - q1) / median_ratio * 100, 1),
        }
    opens = [
        a / b
        for a, b in zip(
            samples["FileStore()"],
            samples["LocalStore() (plain construction)"],
            strict=True,
        )
    ]
    q1, median_ratio, q3 = statistics.quantiles(opens, n=4)
    report["FileStore() vs LocalStore()"] = {
        "median_ratio": round(median_ratio, 2),
        "spread_pct": round((q3 - q1) / median_ratio * 100, 1),
    }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as temp:
        result = asyncio.run(main(args.rounds, args.ops, temp, args.objects))
    print(json.dumps(result, indent=1))
