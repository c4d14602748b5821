"""Endpoints across two "hosts" (network namespaces joined by a veth pair).

Measures, in one run, in the same two namespaces (root only):
  (a) raw ceiling: a TLS 1.3 stream of SIZE bytes from a process in A to one
      in B over the veth link (the reader fills one preallocated buffer);
  (b) `EndpointStore` resolve in B of a SIZE-byte object made in A, with the
      endpoints' DEFAULT settings (HTTP to B's endpoint, B's endpoint fetches
      from A's over the fast path on the link address);
  (c) 1 KB resolves in B of objects owned by A (remote), per object;
  (d) 1 KB resolves in A of objects owned by A (local endpoint), per object.
Row (b) is split using B's endpoint log (its INFO line per request): the
endpoint-to-endpoint leg (B's handler: peer request + fast path over the link)
and the rest (HTTP between B's endpoint and its client, deserialization).

Goals: (b) >= 0.6x the throughput of (a); median (c) <= 2x median (d).
Rounds interleave (a) and (b), and (c) and (d) run in alternating blocks
(each client process warms its connections with one untimed get), so load
weighs on both sides alike; medians and spread (min-max) are printed with
the ratios.

With ``--webrtc-only`` both endpoints are configured ``--no-fast-path``:
every body moves over the WebRTC data channel, and (b) is timed for
``--size`` (default 10^8 B in that mode) next to (a) for the same size.

    sudo python benchmarks/bench_crosshost.py [--size 1000000000] [--rounds 3]
    sudo python benchmarks/bench_crosshost.py --webrtc-only [--size 100000000]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
from pathlib import Path

from proxystore.endpoint.config import free_port
from proxystore.endpoint.netns import NamespacePair, TwoSites, start_two_sites
from proxystore.endpoint.testing import wait_for_port, write_test_certificate

_TLS_SERVER = """
import socket, ssl, sys
size, port = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(sys.argv[4], sys.argv[5])
body = memoryview(bytes(size))
with socket.create_server((sys.argv[3], port)) as listener:
    while True:  # until stopped; a probe that only connects is no client
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                for start in range(0, size, 4 << 20):
                    tls.sendall(body[start : start + (4 << 20)])
        except OSError:
            pass
"""
_TLS_CLIENT = """
import socket, ssl, sys, time
size, port, host = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
start = time.perf_counter()
buf = bytearray(size)
view = memoryview(buf)
with ctx.wrap_socket(socket.create_connection((host, port))) as tls:
    got = 0
    while got < size:
        n = tls.recv_into(view[got:])
        if not n:
            raise SystemExit("short stream")
        got += n
print(time.perf_counter() - start)
"""
_PRODUCE = """
import pickle, sys
from proxystore.store import init_store
size, count = int(sys.argv[1]), int(sys.argv[2])
store = init_store("endpoint", name="bench", endpoints=["site-a", "site-b"])
proxies = [store.proxy(b"warm-up")] if sys.argv[3:] == ["warm"] else []
proxies += [store.proxy(bytes([i % 256]) * size) for i in range(count)]
sys.stdout.buffer.write(pickle.dumps(proxies))
"""
_RESOLVE = """
import pickle, sys, time
from proxystore.store import init_store
init_store("endpoint", name="bench", endpoints=["site-a", "site-b"])
proxies = pickle.loads(sys.stdin.buffer.read())
bytes(proxies.pop(0))  # warm-up: connections to the endpoint (and its peer)
times = []
for p in proxies:
    start = time.perf_counter()
    n = len(bytes(p))
    times.append(time.perf_counter() - start)
print(" ".join(map(str, times)))
"""


def _last_get_ms(root: Path) -> float:
    log = root / "site-b" / "endpoints" / "site-b" / "endpoint.log"
    lines = [line for line in log.read_text().splitlines() if " GET " in line]
    return float(lines[-1].split(" ms ")[0].rsplit(" ", 1)[-1])


def _small_leg_ms(root: Path) -> list[float]:
    """ms B's endpoint took per 1 KB GET of an object owned by A (its log)."""
    log = root / "site-b" / "endpoints" / "site-b" / "endpoint.log"
    legs = []
    for line in log.read_text().splitlines():
        if " GET " in line and "owner=local" not in line and " 200 " in line:
            size = int(line.split(" bytes ")[0].rsplit(" ", 1)[-1])
            if size < 10_000:
                legs.append(float(line.split(" ms ")[0].rsplit(" ", 1)[-1]))
    return legs[1:]  # the first pays for the request channel


def _channel_lines(root: Path) -> list[str]:
    """B's log lines about request channels (opened, closed, not opened)."""
    log = root / "site-b" / "endpoints" / "site-b" / "endpoint.log"
    return [line for line in log.read_text().splitlines() if "request channel" in line]


def _spread(values: list[float]) -> str:
    median = statistics.median(values)
    return f"median {median:.4g} (min {min(values):.4g}, max {max(values):.4g})"


def _small_gets(sites: TwoSites, count: int, blocks: int) -> tuple[list[float], ...]:
    """Return ms of 1 KB gets in B of A's objects and in A of A's, in ABAB blocks."""
    per = max(1, count // blocks)
    made = sites.python("site-a", _PRODUCE, "1000", str(2 * blocks * (per + 1)))
    proxies = pickle.loads(made.stdout)
    remote: list[float] = []
    local: list[float] = []
    for _ in range(blocks):
        for site, into in (("site-b", remote), ("site-a", local)):
            batch = [proxies.pop() for _ in range(per + 1)]
            got = sites.python(site, _RESOLVE, stdin=pickle.dumps(batch))
            into.extend(float(x) * 1e3 for x in got.stdout.split())
    return remote, local


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--webrtc-only", action="store_true")
    parser.add_argument(
        "--small-only", action="store_true", help="only the 1 KB gets (c) and (d)"
    )
    args = parser.parse_args()
    size = args.size or (10**8 if args.webrtc_only else 10**9)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    options = ["--no-fast-path"] if args.webrtc_only else []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pid = os.getpid()
        pair = NamespacePair(f"b{pid % 10000}", 20 + (pid + 7) % 200)
        try:
            sites = start_two_sites(pair, root, *options)
            a, b = pair.a, pair.b
            _, cert, key = write_test_certificate(root / "raw", a.address)
            port = free_port()
            pair.popen(
                a,
                [sys.executable, "-c", _TLS_SERVER, str(size), str(port),
                 a.address, str(cert), str(key)],
                sites.env(None),
            )  # fmt: skip
            b.run(lambda: wait_for_port(a.address, port, 30))
            raw: list[float] = []
            store: list[float] = []
            legs: list[float] = []
            for _ in range(0 if args.small_only else args.rounds):
                result = sites.python(
                    "site-b", _TLS_CLIENT, str(size), str(port), a.address
                )
                raw.append(float(result.stdout.decode().split()[-1]))
                made = sites.python("site-a", _PRODUCE, str(size), "1", "warm")
                got = sites.python("site-b", _RESOLVE, stdin=made.stdout)
                store.append(float(got.stdout.decode().split()[0]))
                legs.append(_last_get_ms(sites.root) / 1e3)
            remote_ms, local_ms = [], []
            if not args.webrtc_only:
                remote_ms, local_ms = _small_gets(sites, args.small, args.blocks)
            channel_log = _channel_lines(sites.root)
            small_legs = _small_leg_ms(sites.root)
        finally:
            pair.close()
    rows = _large_rows(args, size, raw, store, legs) if raw else []
    if remote_ms:
        ratio = statistics.median(remote_ms) / statistics.median(local_ms)
        rows += [
            f"(c) 1 KB remote get ms: {_spread(remote_ms)}  (n={len(remote_ms)})",
            f"(d) 1 KB local get  ms: {_spread(local_ms)}  (n={len(local_ms)})",
            f"    latency (c)/(d): {ratio:.2f}x  (goal <= 2x)",
            f"(c1) B's endpoint per (c) GET ms: {_spread(small_legs)}"
            f"  (its log; n={len(small_legs)})",
        ]
    rows += [f"B's log: {line}" for line in channel_log]
    print("\n".join(rows))
    return 0


def _large_rows(
    args: argparse.Namespace,
    size: int,
    raw: list[float],
    store: list[float],
    legs: list[float],
) -> list[str]:
    raw_s, store_s = statistics.median(raw), statistics.median(store)
    rounds = zip(raw, store, strict=True)
    mb = size / 1e6
    path = "WebRTC data channel only" if args.webrtc_only else "default settings"
    return [
        f"size {size} bytes, {args.rounds} rounds, veth between namespaces, {path}",
        f"(a) raw TLS stream A->B  s: {_spread(raw)}  ({mb / raw_s:.1f} MB/s)",
        f"(b) EndpointStore A->B   s: {_spread(store)}  ({mb / store_s:.1f} MB/s)",
        f"    throughput (b)/(a): {raw_s / store_s:.2f}x"
        f"  (per round: {', '.join(f'{r / t:.2f}' for r, t in rounds)})"
        + ("" if args.webrtc_only else "  (goal >= 0.6x)"),
        f"(b1) endpoint-to-endpoint leg s: {_spread(legs)}"
        f"  ({mb / statistics.median(legs):.1f} MB/s,"
        f" {raw_s / statistics.median(legs):.2f}x raw)",
    ]


if __name__ == "__main__":
    sys.exit(main())
