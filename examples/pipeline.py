"""A multi-stage pipeline of worker processes passing large arrays as proxies.

Run: python examples/pipeline.py [--size-mb 64] [--items 8] [--stages 3]
     [--compute 0.03] [--mode all] [--store file | --store redis --port N]

A source sends `--items` numpy arrays of `--size-mb` MB through `--stages`
worker processes linked by pipes. Each stage reads every element of its
input (it adds one to the array), computes for `--compute` seconds, and
sends the result on; a sink checks the final checksums. The compute is
simulated with `time.sleep`, so the numbers show data movement rather than
how busy this machine's cores are.

Modes:

- ``pickle``: the arrays themselves travel through the pipes.
- ``proxy``: each stage puts its output in the store and sends a proxy (a
  few hundred bytes); the next stage fetches the array when it first uses it.
- ``proxy-prefetch``: proxies made with ``prefetch=True``: a stage starts
  fetching an array the moment its proxy arrives, while it is still computing
  on the previous one.

Every stage receives in a thread of its own, so items queue up at a busy
stage exactly as they would in any pipeline framework. The default store is
a FileStore in a temporary directory (removed at the end); ``--store redis``
uses a running Redis server. The table shows each mode's end-to-end time
(worker start-up excluded) and the bytes that crossed the pipes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

MODES = ("pickle", "proxy", "proxy-prefetch")
READY_TIMEOUT = 60.0
ITEM_TIMEOUT = 120.0


@dataclass(frozen=True)
class StoreSpec:
    """How every process opens the same store (type, name, options)."""

    store_type: str
    name: str
    options: dict[str, Any]

    def open(self) -> Any:
        from proxystore.store import init_store

        return init_store(self.store_type, self.name, **self.options)


@dataclass(frozen=True)
class Item:
    """What travels between stages: the array (or a proxy of it) and its index."""

    index: int
    data: Any


@dataclass(frozen=True)
class End:
    """Marks the end of the stream and carries the bytes sent so far."""

    sent_bytes: int


class Link:
    """The sending end of a pipe that counts the pickled bytes it sends."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.sent_bytes = 0

    def send(self, message: Item | End) -> None:
        blob = pickle.dumps(message, protocol=5)
        self.sent_bytes += len(blob)
        self.connection.send_bytes(blob)


def receive_into(connection: Connection, inbox: queue.Queue[Item | End]) -> None:
    """Unpickle every message as it arrives (starting prefetches) into `inbox`."""
    while True:
        message = pickle.loads(connection.recv_bytes())
        inbox.put(message)
        if isinstance(message, End):
            return


def start_receiver(connection: Connection) -> queue.Queue[Item | End]:
    inbox: queue.Queue[Item | End] = queue.Queue()
    thread = threading.Thread(
        target=receive_into, args=(connection, inbox), daemon=True
    )
    thread.start()
    return inbox


def wrap(array: np.ndarray, mode: str, store: Any) -> Any:
    """Return what a stage sends on for `array` in this mode."""
    if mode == "pickle":
        return array
    return store.proxy(array, evict=True, prefetch=mode == "proxy-prefetch")


def stage(
    spec: StoreSpec,
    mode: str,
    compute: float,
    inbound: Connection,
    outbound: Connection,
    ready: Any,
) -> None:
    """One pipeline stage: checksum, compute, add one, send on."""
    store = spec.open()
    inbox = start_receiver(inbound)
    link = Link(outbound)
    ready.put(True)
    while True:
        message = inbox.get(timeout=ITEM_TIMEOUT)
        if isinstance(message, End):
            link.send(End(message.sent_bytes + link.sent_bytes))
            return
        array = np.asarray(message.data)  # a proxy resolves here
        time.sleep(compute)  # the stage's simulated compute
        link.send(Item(message.index, wrap(array + 1, mode, store)))


@dataclass(frozen=True)
class Result:
    mode: str
    seconds: float
    pipe_bytes: int
    checksums_ok: bool


def run_mode(ctx: Any, spec: StoreSpec, mode: str, args: argparse.Namespace) -> Result:
    store = spec.open()
    elements = args.size_mb * 1_000_000 // 8
    inputs = [np.full(elements, float(i)) for i in range(args.items)]
    pipes = [ctx.Pipe(duplex=False) for _ in range(args.stages + 1)]
    ready = ctx.Queue()
    workers = [
        ctx.Process(
            target=stage,
            args=(spec, mode, args.compute, pipes[i][0], pipes[i + 1][1], ready),
            daemon=True,
        )
        for i in range(args.stages)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=READY_TIMEOUT)
        sink = start_receiver(pipes[-1][0])
        source = Link(pipes[0][1])

        start = time.perf_counter()

        def feed() -> None:
            for index, array in enumerate(inputs):
                source.send(Item(index, wrap(array, mode, store)))
            source.send(End(0))

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        checksums: dict[int, float] = {}
        while True:
            message = sink.get(timeout=ITEM_TIMEOUT)
            if isinstance(message, End):
                break
            checksums[message.index] = float(np.asarray(message.data).sum())
        seconds = time.perf_counter() - start
        feeder.join(ITEM_TIMEOUT)
        expected = {i: float((i + args.stages) * elements) for i in range(args.items)}
        return Result(
            mode, seconds, source.sent_bytes + message.sent_bytes, checksums == expected
        )
    finally:
        for worker in workers:
            worker.join(READY_TIMEOUT)
            if worker.exitcode is None:
                worker.kill()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=64, help="array size (MB)")
    parser.add_argument("--items", type=int, default=8, help="arrays to send")
    parser.add_argument("--stages", type=int, default=3, help="worker processes")
    parser.add_argument(
        "--compute",
        type=float,
        default=0.03,
        help="simulated compute per item and stage (seconds)",
    )
    parser.add_argument("--mode", choices=(*MODES, "all"), default="all")
    parser.add_argument("--store", choices=("file", "redis"), default="file")
    parser.add_argument("--host", default="127.0.0.1", help="Redis host")
    parser.add_argument("--port", type=int, help="Redis port (with --store redis)")
    parser.add_argument(
        "--start-method", choices=("spawn", "fork", "forkserver"), default="spawn"
    )
    args = parser.parse_args(argv)
    if args.store == "redis" and args.port is None:
        parser.error("--store redis needs --port")
    return args


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    ctx = multiprocessing.get_context(args.start_method)
    store_dir = tempfile.mkdtemp(prefix="proxystore-pipeline-")
    if args.store == "file":
        options: dict[str, Any] = {"store_dir": store_dir, "cache_size": 0}
    else:
        options = {"hostname": args.host, "port": args.port, "cache_size": 0}
    spec = StoreSpec(args.store, "pipeline", options)
    modes = MODES if args.mode == "all" else (args.mode,)
    try:
        results = [run_mode(ctx, spec, mode, args) for mode in modes]
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    print(
        f"{args.items} items x {args.size_mb} MB through {args.stages} stages, "
        f"{args.compute:g} s simulated compute per item and stage ({args.store} store)"
    )
    print(f"{'mode':<16}{'end-to-end':>12}{'pipe bytes':>16}  checksums")
    for result in results:
        print(
            f"{result.mode:<16}{result.seconds:>10.2f} s{result.pipe_bytes:>16,}  "
            f"{'ok' if result.checksums_ok else 'WRONG'}"
        )
    return results


if __name__ == "__main__":
    main()
