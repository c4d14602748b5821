"""Streams of proxies against raw Redis Streams and ProxyStore 1.1, same run.

One producer sends N items of one size to a topic; 1 or 4 consumer
processes (a consumer group) receive them and read every byte. Timed from
the producer's first send until the last consumer has finished; items/s and
MB/s of the whole transfer. Three implementations, interleaved per
repetition (ABC ABC ...) on one private redis-server:

- ``ours``: `proxystore.stream` (blocking face): `RedisStreamPublisher` /
  `RedisStreamSubscriber` (consumer group, ack, evict once done), objects
  over 4 KB in a `RedisStore`, smaller ones inline; consumers get objects
  (``resolve=True``).
- ``raw``: redis-py only, data inline in the stream entry: ``XADD`` per
  item; consumers ``XREADGROUP COUNT 1`` then ``XACK`` + ``XDEL``.
Also the client CPU time per item (producer plus consumers, `process_time`),
which other load on the machine disturbs less than wall time; "cpu Nx" is
theirs / ours (above 1: ours uses less).

- ``1.1``: ProxyStore 1.1's ``StreamProducer``/``StreamConsumer`` over its
  Redis queue shim (``proxystore.stream.shims.redis.RedisQueuePublisher``,
  one consumer per message) and its ``RedisStore`` (``evict=True``), run in
  its own virtual environment (`benchmarks/ps11.py`).

With ``--objects``: the producer's cost per item for objects whose size is
not known up front (a list of floats, a dict of numpy arrays), 1 MB and
32 MB, which the producer serializes once and hands to the store as a
payload. Per repetition, interleaved, each kind in a fresh process on the
same redis-server: ``after`` (`StreamProducer.send` of this tree),
``before`` (the same with the tree given by ``--before-root``, e.g. the
round-1 build that pickled such objects twice) and ``floor``
(``RedisStore.set`` of the object: one serialization and one write, no
event). Medians of the per-item times, ratios per repetition.

Usage:
    PROXYSTORE11_VENV=/work/main/.bench/ps11 python benchmarks/bench_streams.py
        [--reps N] [--quick] [--sizes 1KB,1MB,32MB] [--consumers 1,4]
    python benchmarks/bench_streams.py --crash --sizes 1KB,1MB
    python benchmarks/bench_streams.py --objects [--before-root /work/main]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks import ps11
from proxystore.store import init_store
from proxystore.stream import (
    RedisStreamPublisher,
    RedisStreamSubscriber,
    StreamConsumer,
    StreamProducer,
)
from tests.redis_server import RedisServer

SIZES = {"1KB": 1_000, "1MB": 1_000_000, "32MB": 32_000_000}
ITEMS = {"1KB": 2000, "1MB": 200, "32MB": 12}
QUICK_ITEMS = {"1KB": 500, "1MB": 50, "32MB": 4}
_WAIT = 600.0
_CTX = multiprocessing.get_context("fork")


# -- ours ---------------------------------------------------------------------


def _ours_consumer(host: str, port: int, topic: str, ready: Any, done: Any) -> None:
    store = init_store("redis", "bench-streams", hostname=host, port=port)
    subscriber = RedisStreamSubscriber(host, port, topic, block=0.05, claim_after=_WAIT)
    subscriber.receive(1, 0.001)  # connect and join the group before timing
    count = nbytes = 0
    ready.put(1)
    cpu = time.process_time()
    with StreamConsumer(subscriber, resolve=True) as consumer:
        for value, _ in consumer:
            count += 1
            nbytes += len(value)
    done.put((time.monotonic(), count, nbytes, time.process_time() - cpu))
    store.close()


def _ours_producer(
    host: str, port: int, topic: str, data: bytes, n: int, numbered: bool = False
) -> None:
    store = init_store("redis", "bench-streams", hostname=host, port=port)
    publisher = RedisStreamPublisher(host, port)
    with StreamProducer(publisher, store) as producer:
        for index in range(n):
            producer.send(topic, data, metadata={"i": index} if numbered else None)
        producer.close_topic(topic)
    store.close()


# -- raw Redis Streams, data inline ---------------------------------------------


def _create_group(client: redis.Redis, topic: str) -> None:
    with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: it exists
        client.xgroup_create(topic, "g", id="0", mkstream=True)


def _raw_consumer(host: str, port: int, topic: str, ready: Any, done: Any) -> None:
    client = redis.Redis(host=host, port=port)
    _create_group(client, topic)
    name = f"c{os.getpid()}"
    count = nbytes = 0
    ready.put(1)
    cpu = time.process_time()
    while True:
        reply = client.xreadgroup("g", name, {topic: ">"}, count=1, block=50)
        if not reply:
            continue
        entry, fields = reply[0][1][0]
        pipe = client.pipeline(transaction=False)
        pipe.xack(topic, "g", entry)
        pipe.xdel(topic, entry)
        pipe.execute()
        if b"end" in fields:
            break
        count += 1
        nbytes += len(fields[b"d"])
    done.put((time.monotonic(), count, nbytes, time.process_time() - cpu))
    client.close()


def _raw_producer(host: str, port: int, topic: str, data: bytes, n: int) -> None:
    client = redis.Redis(host=host, port=port)
    _create_group(client, topic)
    for _ in range(n):
        client.xadd(topic, {"d": data})
    client.close()


def _raw_end(host: str, port: int, topic: str, consumers: int) -> None:
    client = redis.Redis(host=host, port=port)
    for _ in range(consumers):
        client.xadd(topic, {"end": b"1"})
    client.close()


def run_local(
    kind: str, server: RedisServer, size: int, n: int, consumers: int, topic: str
) -> dict[str, float]:
    """One timed transfer with `consumers` processes; return rates."""
    host, port = server.host, server.port
    data = os.urandom(size)
    ready, done = _CTX.Queue(), _CTX.Queue()
    target = _ours_consumer if kind == "ours" else _raw_consumer
    processes = [
        _CTX.Process(target=target, args=(host, port, topic, ready, done))
        for _ in range(consumers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=_WAIT)
    start = time.monotonic()
    cpu = time.process_time()
    if kind == "ours":
        _ours_producer(host, port, topic, data, n)
    else:
        _raw_producer(host, port, topic, data, n)
        _raw_end(host, port, topic, consumers)
    cpu = time.process_time() - cpu
    results = [done.get(timeout=_WAIT) for _ in processes]
    for process in processes:
        process.join(_WAIT)
    end = max(result[0] for result in results)
    count = sum(result[1] for result in results)
    nbytes = sum(result[2] for result in results)
    cpu += sum(result[3] for result in results)
    if count != n or nbytes != n * len(data):
        raise RuntimeError(f"{kind}: {count} items of {n} received")
    return _rates(end - start, n, size, cpu)


def _rates(seconds: float, n: int, size: int, cpu: float) -> dict[str, float]:
    return {
        "seconds": seconds,
        "items_s": n / seconds,
        "mb_s": n * size / seconds / 1e6,
        "cpu_ms_item": cpu * 1000 / n,
    }


# -- ProxyStore 1.1 (its own interpreter) ------------------------------------------

PS11_SCRIPT = r"""
import json, multiprocessing, os, sys, time
from proxystore.store import Store, register_store
from proxystore.connectors.redis import RedisConnector
from proxystore.stream import StreamConsumer, StreamProducer
from proxystore.stream.shims.redis import RedisQueuePublisher, RedisQueueSubscriber

host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
size, n, consumers = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ctx = multiprocessing.get_context("fork")

def consumer(ready, done):
    sub = RedisQueueSubscriber(host, port, topic)
    count = nbytes = 0
    ready.put(1)
    cpu = time.process_time()
    with StreamConsumer(sub) as stream:
        for obj in stream.iter_objects():
            count += 1
            nbytes += len(obj)
    done.put((time.monotonic(), count, nbytes, time.process_time() - cpu))

ready, done = ctx.Queue(), ctx.Queue()
procs = [ctx.Process(target=consumer, args=(ready, done)) for _ in range(consumers)]
for p in procs:
    p.start()
for _ in procs:
    ready.get(timeout=600)
data = os.urandom(size)
store = Store("bench-streams-11", RedisConnector(host, port), register=True)
start = time.monotonic()
cpu = time.process_time()
producer = StreamProducer(RedisQueuePublisher(host, port), default_store=store)
for _ in range(n):
    producer.send(topic, data, evict=True)
for _ in range(consumers):
    producer.close_topics(topic)
cpu = time.process_time() - cpu
results = [done.get(timeout=600) for _ in procs]
for p in procs:
    p.join(600)
end = max(r[0] for r in results)
print(json.dumps({"seconds": end - start, "items": sum(r[1] for r in results),
                  "bytes": sum(r[2] for r in results),
                  "cpu": cpu + sum(r[3] for r in results)}))
"""


def run_ps11(
    server: RedisServer, size: int, n: int, consumers: int, topic: str
) -> dict[str, float]:
    """One timed transfer under ProxyStore 1.1."""
    out = ps11.run(
        PS11_SCRIPT,
        server.host,
        str(server.port),
        topic,
        str(size),
        str(n),
        str(consumers),
    )
    if out["items"] != n or out["bytes"] != n * size:
        raise RuntimeError(f"1.1: {out['items']} items of {n} received")
    return _rates(out["seconds"], n, size, out["cpu"])


# -- consumer crash ---------------------------------------------------------------


def _crash_consumer(
    host: str, port: int, topic: str, ready: Any, seen: Any, hang_after: int
) -> None:
    store = init_store("redis", "bench-streams", hostname=host, port=port)
    subscriber = RedisStreamSubscriber(host, port, topic, block=0.05, claim_after=1.0)
    subscriber.receive(1, 0.001)
    ready.put(1)
    with StreamConsumer(subscriber, resolve=True) as consumer:
        for count, (value, metadata) in enumerate(consumer, 1):
            assert len(value) > 0
            seen.put((os.getpid(), metadata["i"]))
            if count == hang_after:
                seen.put((os.getpid(), "hanging"))
                time.sleep(_WAIT)  # working on it... until SIGKILL
    seen.put((os.getpid(), "done"))
    store.close()


def run_crash(server: RedisServer, size: int, n: int, consumers: int) -> dict[str, int]:
    """Kill one of `consumers` with SIGKILL mid-item; count what was delivered."""
    # A topic ends once: a fresh one per run.
    host, port, topic = server.host, server.port, f"bench-crash-{size}"
    ready, seen = _CTX.Queue(), _CTX.Queue()
    processes = [
        _CTX.Process(
            target=_crash_consumer,
            args=(
                host,
                port,
                topic,
                ready,
                seen,
                n // (2 * consumers) if i == 0 else 0,
            ),
        )
        for i in range(consumers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=_WAIT)
    _ours_producer(host, port, topic, os.urandom(size), n, numbered=True)
    victim = processes[0].pid
    delivered: list[int] = []
    finished = 0
    while finished < consumers - 1:
        pid, what = seen.get(timeout=_WAIT)
        if what == "hanging":
            os.kill(pid, signal.SIGKILL)
        elif what == "done":
            finished += 1
        else:
            delivered.append(what)
    for process in processes:
        process.join(_WAIT)
    unique = set(delivered)
    return {
        "produced": n,
        "delivered": len(delivered),
        "unique": len(unique),
        "duplicates": len(delivered) - len(unique),
        "lost": n - len(unique),
        "victim_exit": processes[0].exitcode or 0,
        "victim": victim or 0,
    }


# -- objects of unknown size: producer cost -------------------------------------

OBJECTS_SCRIPT = r"""
import json, sys, time
root, host, port, kind, shape, size, n = sys.argv[1:8]
sys.path.insert(0, root)
port, size, n = int(port), int(size), int(n)
from proxystore.store import init_store
from proxystore.stream import RedisStreamPublisher, StreamProducer
if shape == "list":
    obj = [float(i) for i in range(size // 9)]  # 9 bytes of pickle per float
else:
    import numpy
    obj = {f"a{i}": numpy.ones(size // 8 // 8) for i in range(8)}
store = init_store("redis", "bench-objects", hostname=host, port=port)
producer = StreamProducer(RedisStreamPublisher(host, port), store, evict=False)
if kind == "floor":
    send = lambda: store.set(obj)
else:
    send = lambda: producer.send("bench-objects", obj)
send()  # warm: connections, the consumer group
times = []
for _ in range(n):
    start = time.perf_counter()
    send()
    times.append(time.perf_counter() - start)
producer.close()
store.close()
print(json.dumps(times))
"""

OBJECT_ITEMS = {"1MB": 40, "32MB": 6}


def run_objects(
    server: RedisServer, root: str, kind: str, shape: str, size: int, n: int
) -> float:
    """Median seconds per item of `n` sends of one object (its own process)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            OBJECTS_SCRIPT,
            root,
            server.host,
            str(server.port),
            kind,
            shape,
            str(size),
            str(n),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=_WAIT,
    )
    return float(statistics.median(json.loads(out.stdout)))


def main_objects(reps: int, sizes: list[str], before_root: str | None) -> None:
    """Print the producer cost of unknown-size objects, interleaved ABC."""
    here = str(Path(__file__).resolve().parent.parent)
    kinds = {"after": here, "floor": here}
    if before_root:
        kinds["before"] = before_root
    with RedisServer() as server:
        client = server.client()
        for label in sizes:
            for shape in ("list", "arrays"):
                runs: dict[str, list[float]] = {kind: [] for kind in kinds}
                for _ in range(reps):
                    for kind, root in kinds.items():
                        client.flushall()
                        runs[kind].append(
                            run_objects(
                                server,
                                root,
                                kind,
                                shape,
                                SIZES[label],
                                OBJECT_ITEMS[label],
                            )
                        )
                parts = [f"{label:>5} {shape:<6}"]
                for kind, times in runs.items():
                    ordered = sorted(times)
                    parts.append(
                        f"{kind} {statistics.median(ordered) * 1e3:7.2f} ms "
                        f"[{ordered[0] * 1e3:.2f}-{ordered[-1] * 1e3:.2f}]"
                    )
                for kind in ("floor", "before"):
                    if kind not in runs:
                        continue
                    ratios = sorted(
                        after / other
                        for after, other in zip(runs["after"], runs[kind], strict=True)
                    )
                    parts.append(
                        f"after/{kind} {statistics.median(ratios):.2f}x "
                        f"[{ratios[0]:.2f}-{ratios[-1]:.2f}]"
                    )
                print(" | ".join(parts), flush=True)
        client.close()


# -- driver ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="1KB,1MB,32MB")
    parser.add_argument("--consumers", default="1,4")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument(
        "--crash",
        action="store_true",
        help="only the crash check: 4 consumers, one SIGKILLed mid-item",
    )
    parser.add_argument(
        "--objects",
        action="store_true",
        help="only the producer cost of objects of unknown size (list, arrays)",
    )
    parser.add_argument(
        "--before-root",
        help="with --objects: a source tree to compare with (e.g. /work/main)",
    )
    args = parser.parse_args(argv)
    if args.objects:
        sizes = [s for s in args.sizes.split(",") if s in OBJECT_ITEMS]
        main_objects(args.reps, sizes, args.before_root)
        return 0
    if args.crash:
        with RedisServer() as server:
            for label in args.sizes.split(","):
                result = run_crash(server, SIZES[label], 200, 4)
                print(f"{label}: {json.dumps(result)}", flush=True)
        return 0
    items = QUICK_ITEMS if args.quick else ITEMS
    rows = []
    with RedisServer() as server:
        client = server.client()
        serial = 0
        for label in args.sizes.split(","):
            size = SIZES[label]
            for consumers in map(int, args.consumers.split(",")):
                runs: dict[str, list[dict[str, float]]] = {
                    "ours": [],
                    "raw": [],
                    "1.1": [],
                }
                for _ in range(args.reps):
                    for kind in runs:
                        serial += 1
                        topic = f"bench-{serial}"
                        client.flushall()
                        if kind == "1.1":
                            result = run_ps11(
                                server, size, items[label], consumers, topic
                            )
                        else:
                            result = run_local(
                                kind, server, size, items[label], consumers, topic
                            )
                        runs[kind].append(result)
                row = _row(label, consumers, items[label], runs)
                rows.append(row)
                _print(row)
        client.close()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _row(
    label: str, consumers: int, n: int, runs: dict[str, list[dict[str, float]]]
) -> dict[str, Any]:
    row: dict[str, Any] = {"size": label, "consumers": consumers, "items": n}
    for kind, results in runs.items():
        rates = sorted(result["items_s"] for result in results)
        mbs = sorted(result["mb_s"] for result in results)
        row[kind] = {
            "items_s": statistics.median(rates),
            "items_s_min": rates[0],
            "items_s_max": rates[-1],
            "mb_s": statistics.median(mbs),
            "cpu_ms_item": statistics.median(r["cpu_ms_item"] for r in results),
        }
    # Ratios per repetition (interleaved runs share the machine's noise).
    for other in ("raw", "1.1"):
        ratios = sorted(
            ours["items_s"] / theirs["items_s"]
            for ours, theirs in zip(runs["ours"], runs[other], strict=True)
        )
        row[f"vs_{other}"] = {
            "median": statistics.median(ratios),
            "min": ratios[0],
            "max": ratios[-1],
        }
        # Client CPU (producer + consumers) per item: theirs / ours.
        row[f"cpu_vs_{other}"] = statistics.median(
            theirs["cpu_ms_item"] / ours["cpu_ms_item"]
            for ours, theirs in zip(runs["ours"], runs[other], strict=True)
        )
    return row


def _print(row: dict[str, Any]) -> None:
    parts = [f"{row['size']:>5} x{row['items']:<5} {row['consumers']} cons"]
    for kind in ("ours", "raw", "1.1"):
        stats = row[kind]
        parts.append(
            f"{kind} {stats['items_s']:9.1f} it/s {stats['mb_s']:8.1f} MB/s "
            f"[{stats['items_s_min']:.0f}-{stats['items_s_max']:.0f}] "
            f"cpu {stats['cpu_ms_item']:.2f} ms/it"
        )
    for other in ("raw", "1.1"):
        ratio = row[f"vs_{other}"]
        parts.append(
            f"vs {other} {ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]"
            f" cpu {row[f'cpu_vs_{other}']:.2f}x"
        )
    print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    sys.exit(main())
