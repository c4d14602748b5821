"""What `FileStore(durable=True)` costs per `set`, against `durable=False`.

Both stores write to the same directory (``--dir``, default a fresh temporary
directory; point it at the file system you care about). For each size, the
runs alternate between the two stores so drift hits both; the report gives
the median set time of each, their ratio, and the spread (the interquartile
range of the per-run ratios, as a percent of the median ratio).

Usage: python benchmarks/bench_file_durable.py [--runs 30] [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from proxystore.store.file import FileStore

SIZES = {"16 KiB": 16 << 10, "1 MiB": 1 << 20, "16 MiB": 16 << 20}


def time_set(store: FileStore, data: bytes) -> float:
    start = time.perf_counter()
    key = store.set(data)
    elapsed = time.perf_counter() - start
    store.evict(key)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        plain = FileStore("plain", directory)
        durable = FileStore("durable", directory, durable=True)
        print(f"directory: {directory}; {args.runs} runs; median ms per set")
        print(f"{'size':>8} {'plain':>9} {'durable':>9} {'ratio':>7} {'spread':>7}")
        for label, size in SIZES.items():
            data = os.urandom(size)
            time_set(plain, data)  # warm up
            time_set(durable, data)
            plain_s, durable_s, ratios = [], [], []
            for _ in range(args.runs):
                a = time_set(plain, data)
                b = time_set(durable, data)
                plain_s.append(a)
                durable_s.append(b)
                ratios.append(b / a)
            ratio = statistics.median(ratios)
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            print(
                f"{label:>8} {statistics.median(plain_s) * 1e3:9.3f} "
                f"{statistics.median(durable_s) * 1e3:9.3f} {ratio:6.1f}x "
                f"{(q3 - q1) / ratio * 100:6.0f}%"
            )


if __name__ == "__main__":
    main()
