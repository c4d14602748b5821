"""Small-object cells and start-up against ProxyStore 1.1, in the same run.

Run: ``python benchmarks/bench_ps11_small.py [--rounds N]`` (set
``PROXYSTORE11_VENV`` to reuse a built ProxyStore 1.1 environment, see
`benchmarks/ps11.py`).

One script runs under both: this checkout's interpreter and ProxyStore 1.1's
own virtual environment (`ps11.run`), alternately (ABAB), each in a fresh
process pinned to one CPU with bytecode cached. It times, in CPU time of the
measuring thread, a LocalStore ``set`` + ``get`` of 100 bytes (1.1: a `Store`
over a `LocalConnector`, ``put`` + ``get``), ``get`` of 10,000 stored 1 KB
objects, and unpickling + first use of 1,000 proxies of distinct keys; and,
in wall time, the imports plus the store's first set + get.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ps11

SCRIPT = r"""
import json, os, pickle, statistics, time
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
start = time.perf_counter()
try:
    from proxystore.store.local import LocalStore
    store = LocalStore("bench-ps11")
    put = store.set
except ImportError:  # ProxyStore 1.1
    from proxystore.connectors.local import LocalConnector
    from proxystore.store import Store
    store = Store("bench-ps11", LocalConnector(), register=True)
    put = store.put
store.get(put(b"x"))
first_ms = (time.perf_counter() - start) * 1e3
small = os.urandom(100)


def set_get(n=20000):
    start = time.thread_time()
    for _ in range(n):
        store.get(put(small))
    return (time.thread_time() - start) / n


keys = [put(os.urandom(1000)) for _ in range(10000)]


def get_many():
    start = time.thread_time()
    for key in keys:
        store.get(key)
    return (time.thread_time() - start) / len(keys)


blobs = [pickle.dumps(store.proxy(os.urandom(100))) for _ in range(1000)]


def resolve():
    start = time.thread_time()
    for blob in blobs:
        len(pickle.loads(blob))
    return (time.thread_time() - start) / len(blobs)


out = {"import + first set/get, ms": first_ms}
for name, cell in (
    ("set+get 100 B, us", set_get),
    ("get 10,000 x 1 KB, us", get_many),
    ("resolve 100 B, us", resolve),
):
    cell()
    out[name] = statistics.median(cell() for _ in range(7)) * 1e6
print(json.dumps(out))
"""


def run_ours(cache_dir: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=cache_dir,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # 1.1's children too
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["PYTHONPYCACHEPREFIX"] = cache_dir
        run_ours(cache_dir), ps11.run(SCRIPT)  # write bytecode, warm caches
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(run_ours(cache_dir))
            theirs.append(ps11.run(SCRIPT))
    print(f"median of {args.rounds} rounds ABAB (min-max)")
    print(f"{'cell':<30}{'ours':>18}{'ProxyStore 1.1':>20}{'ratio':>8}")
    for cell in ours[0]:
        a = [run[cell] for run in ours]
        b = [run[cell] for run in theirs]
        print(
            f"{cell:<30}{statistics.median(a):>8.2f} ({min(a):.1f}-{max(a):.1f})"
            f"{statistics.median(b):>10.2f} ({min(b):.1f}-{max(b):.1f})"
            f"{statistics.median(a) / statistics.median(b):>7.2f}x"
        )


if __name__ == "__main__":
    main()
