"""LocalStore and FileStore against the raw equivalent, measured in the same run.

For each store, object kind and size, it times one set + get + evict through
the sync store and the raw equivalent:

- local: ``pickle.dumps`` (protocol 5) into a dict, ``pickle.loads`` back, ``del``;
- file: ``pickle.dumps``, write a temp file, rename it into place, read it,
  ``pickle.loads``, remove the file.

Runs alternate between the two so drift hits both, and the median of the
runs is reported with the ratio store / raw and the pickled proxy's size.

Usage: python benchmarks/bench_stores.py [--quick] [--max-mb 100]
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore

SIZES = {"100 B": 100, "10 KB": 10_000, "1 MB": 1_000_000, "100 MB": 100_000_000}


def make(kind: str, size: int) -> Any:
    if kind == "bytes":
        return os.urandom(size)
    if kind == "numpy":
        return np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    if kind == "dict":
        return {f"k{i}": i for i in range(max(1, size // 16))}
    raise ValueError(kind)


def raw_local() -> Callable[[Any], Any]:
    data: dict[str, bytes] = {}
    counter = itertools.count()

    def run(obj: Any) -> Any:
        key = f"k{next(counter)}"
        data[key] = pickle.dumps(obj, protocol=5)
        result = pickle.loads(data[key])
        del data[key]
        return result

    return run


def raw_file(directory: str) -> Callable[[Any], Any]:
    counter = itertools.count()

    def run(obj: Any) -> Any:
        name = f"k{next(counter)}"
        path = os.path.join(directory, name)
        temp = os.path.join(directory, f".tmp-{name}")
        with open(temp, "wb") as file:
            file.write(pickle.dumps(obj, protocol=5))
        os.replace(temp, path)
        with open(path, "rb") as file:
            result = pickle.loads(file.read())
        os.remove(path)
        return result

    return run


def through_store(store: Store[Any]) -> Callable[[Any], Any]:
    def run(obj: Any) -> Any:
        key = store.set(obj)
        result = store.get(key)
        store.evict(key)
        return result

    return run


def time_per_call(function: Callable[[Any], Any], obj: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function(obj)
    return (time.perf_counter() - start) / calls


def compare(
    ours: Callable[[Any], Any],
    raw: Callable[[Any], Any],
    obj: Any,
    size: int,
    quick: bool,
) -> tuple[float, float]:
    calls = max(1, min(2000, 20_000_000 // max(size, 1)))
    runs = 5 if size >= 10_000_000 else (7 if quick else 15)
    if quick:
        calls = max(1, calls // 5)
    ours(obj)
    raw(obj)
    ours_times, raw_times = [], []
    for _ in range(runs):
        ours_times.append(time_per_call(ours, obj, calls))
        raw_times.append(time_per_call(raw, obj, calls))
    return statistics.median(ours_times), statistics.median(raw_times)


def format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.2f} us"
    return f"{seconds * 1e3:8.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--max-mb", type=float, default=100, help="largest size to run")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    print(
        f"{'store':6} {'kind':6} {'size':>7} {'store':>11} {'raw':>11} "
        f"{'ratio':>6} {'proxy pickle':>13}"
    )
    with (
        tempfile.TemporaryDirectory() as store_dir,
        tempfile.TemporaryDirectory() as raw_dir,
    ):
        stores: dict[str, tuple[Store[Any], Callable[[Any], Any]]] = {
            "local": (LocalStore("bench-local"), raw_local()),
            "file": (FileStore("bench-file", store_dir), raw_file(raw_dir)),
        }
        for (label, size), kind in itertools.product(
            SIZES.items(), ["dict", "bytes", "numpy"]
        ):
            if size > args.max_mb * 1e6 or (kind == "dict" and size > 1_000_000):
                continue
            obj = make(kind, size)
            for store_label, (store, raw) in stores.items():
                ours_time, raw_time = compare(
                    through_store(store), raw, obj, size, args.quick
                )
                proxy = store.proxy(obj)
                proxy_size = len(pickle.dumps(proxy))
                print(
                    f"{store_label:6} {kind:6} {label:>7} {format_time(ours_time)} "
                    f"{format_time(raw_time)} {ours_time / raw_time:6.2f} "
                    f"{proxy_size:>10} B",
                    flush=True,
                )
            del obj
    return 0


if __name__ == "__main__":
    sys.exit(main())
