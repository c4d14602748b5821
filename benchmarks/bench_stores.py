"""LocalStore and FileStore against the raw equivalent, measured in the same run.

For each store, object kind and size, it times one set + get + evict through
the sync store and the raw equivalent:

- local: ``pickle.dumps`` (protocol 5) into a dict, ``pickle.loads`` back, ``del``;
- file: ``pickle.dumps``, write a temp file, rename it into place, read it,
  ``pickle.loads``, remove the file.

Runs alternate between the two so drift hits both, and the median of the
runs is reported with the ratio store / raw and the pickled proxy's size.

Before that table, the small-object cells (``--cells small``), each against
its raw floor in the same run, interleaved, with the median ratio and the
spread (min-max) of the per-round ratios, in CPU time of the measuring
thread (so waiting for a shared CPU counts for neither side):

- local set+get, 100 B: ``store.set`` + ``store.get`` against
  ``pickle.dumps`` into a dict + ``pickle.loads``;
- async local set+get, 100 B: ``await aset`` + ``await aget`` against two
  awaited coroutines doing the same dict + pickle work;
- local get, 10,000 x 1 KB: ``store.get`` of 10,000 stored objects (more
  than the cache holds) against ``pickle.loads`` of a dict's values;
- resolve, 100 B: ``pickle.loads`` of a pickled LocalStore proxy and its
  first use, over 1,000 proxies of distinct keys (the cache misses), against
  unpickling the key and ``pickle.loads`` of the dict's value;
- async file set+get, 100 B and 1 MB numpy: ``aset`` + ``aget`` + ``aevict``
  on an async FileStore against one ``asyncio.to_thread`` hop per file
  operation (write a temp file and rename it, read, remove) with pickle;
  these two in CPU time of the whole process, whose worker threads do the
  file work.

The process pins itself to one CPU (``--cpu``, default the last one).

Usage: python benchmarks/bench_stores.py [--quick] [--max-mb 100]
       [--cells small|sizes|floor|all] [--cpu C] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import itertools
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from proxystore import aio
from proxystore.store.base import Store
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def interleaved(
    ours: Callable[[], float], raw: Callable[[], float], rounds: int
) -> tuple[float, float, float, float]:
    """Run both `rounds` times, ABAB; return medians, and min-max of the ratios."""
    ours(), raw()
    ours_times, raw_times = [], []
    for _ in range(rounds):
        ours_times.append(ours())
        raw_times.append(raw())
    ratios = [a / b for a, b in zip(ours_times, raw_times, strict=True)]
    return (
        statistics.median(ours_times),
        statistics.median(raw_times),
        min(ratios),
        max(ratios),
    )


# The small cells time this thread's CPU time, not wall time: on a shared
# machine a pinned process is preempted often, and what it waits then is
# no cost of the code measured.
_cpu_clock = time.thread_time


def small_cells(
    quick: bool,
) -> list[tuple[str, Callable[[], float], Callable[[], float]]]:
    """The small-object cells: (label, ours, raw), each returning s per op."""
    calls = 2_000 if quick else 20_000
    small = os.urandom(100)
    store = LocalStore("bench-small")
    astore = aio.LocalStore("bench-small-async")
    raw_data: dict[str, bytes] = {}
    counter = itertools.count()

    def set_get() -> float:
        start = _cpu_clock()
        for _ in range(calls):
            store.get(store.set(small))
        elapsed = _cpu_clock() - start
        for key in list(store._objects):
            store.evict(key)
        return elapsed / calls

    def raw_set_get() -> float:
        start = _cpu_clock()
        for _ in range(calls):
            key = f"k{next(counter)}"
            raw_data[key] = pickle.dumps(small, protocol=5)
            pickle.loads(raw_data[key])
        elapsed = _cpu_clock() - start
        raw_data.clear()
        return elapsed / calls

    async def aset_aget() -> float:
        start = _cpu_clock()
        for _ in range(calls):
            await astore.aget(await astore.aset(small))
        elapsed = _cpu_clock() - start
        for key in list(astore._objects):
            await astore.aevict(key)
        return elapsed / calls

    async def raw_aset(obj: Any) -> str:
        key = f"k{next(counter)}"
        raw_data[key] = pickle.dumps(obj, protocol=5)
        return key

    async def raw_aget(key: str) -> Any:
        return pickle.loads(raw_data[key])

    async def raw_aset_aget() -> float:
        start = _cpu_clock()
        for _ in range(calls):
            await raw_aget(await raw_aset(small))
        elapsed = _cpu_clock() - start
        raw_data.clear()
        return elapsed / calls

    many = [os.urandom(1000) for _ in range(10_000)]
    many_store = LocalStore("bench-many")
    many_keys = [many_store.set(obj) for obj in many]
    many_raw = {f"k{i}": pickle.dumps(obj, protocol=5) for i, obj in enumerate(many)}

    def get_many() -> float:
        get = many_store.get
        start = _cpu_clock()
        for key in many_keys:
            get(key)
        return (_cpu_clock() - start) / len(many_keys)

    def raw_get_many() -> float:
        loads = pickle.loads
        start = _cpu_clock()
        for key in many_raw:
            loads(many_raw[key])
        return (_cpu_clock() - start) / len(many_raw)

    resolve_store = LocalStore("bench-resolve")
    blobs = [pickle.dumps(resolve_store.proxy(os.urandom(100))) for _ in range(1000)]
    resolve_raw = {f"k{i}": pickle.dumps(os.urandom(100), 5) for i in range(1000)}
    key_blobs = [pickle.dumps(key) for key in resolve_raw]

    def resolve() -> float:
        loads = pickle.loads
        start = _cpu_clock()
        for blob in blobs:
            len(loads(blob))
        return (_cpu_clock() - start) / len(blobs)

    def raw_resolve() -> float:
        loads = pickle.loads
        start = _cpu_clock()
        for blob in key_blobs:
            len(loads(resolve_raw[loads(blob)]))
        return (_cpu_clock() - start) / len(key_blobs)

    file_cells = [
        (f"async file set+get, {label}", *_async_file_pair(obj, quick))
        for label, obj in (
            ("100 B", small),
            ("1 MB numpy", make("numpy", 1_000_000)),
        )
    ]
    return [
        ("local set+get, 100 B", set_get, raw_set_get),
        (
            "async local set+get, 100 B",
            lambda: asyncio.run(aset_aget()),
            lambda: asyncio.run(raw_aset_aget()),
        ),
        ("local get, 10,000 x 1 KB", get_many, raw_get_many),
        ("resolve (unpickle + len), 100 B", resolve, raw_resolve),
        *file_cells,
    ]


def _async_file_pair(
    obj: Any, quick: bool
) -> tuple[Callable[[], float], Callable[[], float]]:
    """Async FileStore set+get+evict against one to_thread hop per file operation.

    The raw side pickles, writes a temp file and renames it (one hop), reads
    the file (one hop), unpickles, removes the file (one hop). Timed in CPU
    time of the whole process (the worker threads do the file work).
    """
    calls = 200 if quick else 1000
    store_dir = tempfile.mkdtemp()
    raw_dir = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, store_dir, True)
    atexit.register(shutil.rmtree, raw_dir, True)
    store = aio.FileStore("bench-async-file", store_dir)
    counter = itertools.count()

    def write(path: str, data: bytes) -> None:
        temp = f"{path}.tmp"
        with open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, path)

    def read(path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read()

    async def ours() -> float:
        start = time.process_time()
        for _ in range(calls):
            key = await store.aset(obj)
            await store.aget(key)
            await store.aevict(key)
        return (time.process_time() - start) / calls

    async def raw() -> float:
        start = time.process_time()
        for _ in range(calls):
            path = os.path.join(raw_dir, f"k{next(counter)}")
            await asyncio.to_thread(write, path, pickle.dumps(obj, protocol=5))
            pickle.loads(await asyncio.to_thread(read, path))
            await asyncio.to_thread(os.remove, path)
        return (time.process_time() - start) / calls

    return (lambda: asyncio.run(ours())), (lambda: asyncio.run(raw()))


def run_small(quick: bool) -> None:
    rounds = 7 if quick else 21
    print(f"small objects, us per operation, {rounds} rounds ABAB")
    print(f"{'cell':<34}{'ours':>9}{'raw':>9}{'ratio':>8}{'spread':>14}")
    for label, ours, raw in small_cells(quick):
        ours_s, raw_s, low, high = interleaved(ours, raw, rounds)
        print(
            f"{label:<34}{ours_s * 1e6:>9.3f}{raw_s * 1e6:>9.3f}"
            f"{ours_s / raw_s:>7.2f}x{low:>7.2f}-{high:<5.2f}",
            flush=True,
        )


# The physical floor of a large object: what moving its bytes costs at
# least, measured in a fresh process per sample so its peak RSS is its own.
FLOOR_CHILD = r"""
import json, os, pickle, statistics, sys, tempfile, time
import numpy as np

store_kind, obj_kind, mode, size, reps, where = sys.argv[1:]
size, reps = int(size), int(reps)

if obj_kind == "bytes":
    obj = os.urandom(size)
else:
    obj = np.empty(size, dtype=np.uint8)
    for start in range(0, size, 1 << 20):  # no temporary the size of obj
        chunk = obj[start : start + (1 << 20)]
        chunk[:] = np.frombuffer(os.urandom(chunk.nbytes), dtype=np.uint8)
raw = memoryview(obj).cast("B")


def vm(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


if mode == "ours":
    if store_kind == "local":
        from proxystore.store.local import LocalStore
        store = LocalStore("floor")
    elif store_kind == "file":
        from proxystore.store.file import FileStore
        store = FileStore("floor", where)
    else:
        from proxystore.store.redis import RedisStore
        store = RedisStore("floor", "127.0.0.1", int(where))

    def once():
        key = store.set(obj)
        out = store.get(key)
        assert len(out) == size
        store.evict(key)
else:
    if store_kind == "redis":
        import redis
        client = redis.Redis("127.0.0.1", int(where))
    path = os.path.join(where, "floor") if store_kind == "file" else None

    def once():
        if store_kind == "local":
            out = bytearray(raw)  # one copy
        elif store_kind == "file":
            with open(path, "wb", buffering=0) as file:
                file.write(raw)
            out = bytearray(size)
            with open(path, "rb", buffering=0) as file:
                file.readinto(out)
            os.remove(path)
        else:
            client.set("floor", raw)
            out = client.get("floor")
            client.delete("floor")
        assert len(out) == size

once()  # warm up (imports, connections, page cache)
times = []
rss = vm("VmRSS:")
try:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak (VmHWM) to the current RSS
except OSError:
    pass
for _ in range(reps):
    start = time.perf_counter()
    once()
    times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "extra_peak": vm("VmHWM:") - rss}))
"""


def run_floor(size: int, rounds: int, reps: int, baseline: str | None = None) -> None:
    """Print ours / floor and the extra peak RSS for large objects.

    With `baseline` (a source tree, e.g. an older commit's ``git archive``),
    a third mode runs the same child against it, interleaved with the other
    two: ``before``.
    """
    from tests.redis_server import RedisServer

    print(
        f"physical floor, {size / 1e6:.0f} MB, set+get+evict, {rounds} rounds "
        f"x {reps} reps ABAB, each round a fresh process; extra peak RSS "
        "over the process before the operations, in object sizes"
    )
    print(
        f"{'store':6} {'kind':6} {'ours':>9} {'floor':>9} {'ratio':>6} "
        f"{'spread':>11} {'peak ours':>10} {'peak floor':>11}"
        + (f" {'before':>6} {'spread':>11} {'peak before':>12}" if baseline else "")
    )
    with RedisServer() as server, tempfile.TemporaryDirectory() as directory:
        for store_kind, obj_kind in itertools.product(
            ["local", "file", "redis"], ["bytes", "numpy"]
        ):
            where = str(server.port) if store_kind == "redis" else directory
            samples: dict[str, list[dict[str, Any]]] = {"ours": [], "floor": []}
            if baseline:
                samples["before"] = []
            for _ in range(rounds):
                for mode in samples:
                    tree = baseline if mode == "before" else str(ROOT)
                    out = subprocess.run(
                        [
                            sys.executable,
                            "-c",
                            FLOOR_CHILD,
                            store_kind,
                            obj_kind,
                            "ours" if mode == "before" else mode,
                            str(size),
                            str(reps),
                            where,
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                        cwd=tree,
                        env={**os.environ, "PYTHONPATH": tree},
                    ).stdout
                    samples[mode].append(json.loads(out))
            medians = {
                mode: [statistics.median(s["times"]) for s in runs]
                for mode, runs in samples.items()
            }
            ratios = [
                a / b for a, b in zip(medians["ours"], medians["floor"], strict=True)
            ]
            peaks = {
                mode: max(s["extra_peak"] for s in runs) / size
                for mode, runs in samples.items()
            }
            ours_s = statistics.median(medians["ours"])
            floor_s = statistics.median(medians["floor"])
            extra = ""
            if baseline:
                before = [
                    a / b
                    for a, b in zip(medians["before"], medians["floor"], strict=True)
                ]
                before_s = statistics.median(medians["before"])
                extra = (
                    f" {before_s / floor_s:6.2f} "
                    f"{min(before):5.2f}-{max(before):<5.2f} "
                    f"{peaks['before']:11.2f}x"
                )
            print(
                f"{store_kind:6} {obj_kind:6} {format_time(ours_s)} "
                f"{format_time(floor_s)} {ours_s / floor_s:6.2f} "
                f"{min(ratios):5.2f}-{max(ratios):<5.2f} "
                f"{peaks['ours']:9.2f}x {peaks['floor']:10.2f}x" + extra,
                flush=True,
            )


def format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.2f} us"
    return f"{seconds * 1e3:8.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--max-mb", type=float, default=100, help="largest size to run")
    parser.add_argument(
        "--cells", choices=["small", "sizes", "floor", "all"], default="all"
    )
    parser.add_argument("--floor-mb", type=float, default=100)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument(
        "--baseline-tree",
        default=None,
        help="floor cells: also run this source tree (interleaved), as 'before'",
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpu = max(os.sched_getaffinity(0)) if args.cpu is None else args.cpu
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    if args.cells in ("small", "all"):
        run_small(args.quick)
    if args.cells in ("floor", "all"):
        rounds = 3 if args.quick else 5
        run_floor(int(args.floor_mb * 1e6), rounds, 3, args.baseline_tree)
    if args.cells in ("small", "floor"):
        return 0
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
