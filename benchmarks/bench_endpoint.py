"""Throughput and latency of endpoint-to-endpoint gets on loopback.

Starts a signaling server and two pairs of endpoint processes through the
CLIs (one pair with the TCP fast path, one WebRTC-only via --no-fast-path),
then measures over HTTP, as `EndpointStore` does:
  (a) raw loopback TCP: one process-local socket transfer (the ceiling),
  (b) a local get: the object is owned by the endpoint we ask (HTTP only),
  (c) a remote get through the fast-path pair,
  (d) a remote get through the WebRTC-only pair,
  (e) median latency of sequential 1 KiB gets, local and remote,
  (f) the cost of API authentication on those 1 KiB gets: a second fast-path
      pair runs the same code with the server's token check left out (the
      private `server._INSECURE_SKIP_API_TOKEN_CHECK` hook, set in that
      endpoint process by a launcher here, never by an option), and gets
      with and without the Authorization header are timed in alternating
      rounds in the same run.

    python benchmarks/bench_endpoint.py [--mb 100] [--webrtc-mb 100] [--repeat 3]
    python benchmarks/bench_endpoint.py --auth-only [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from proxystore.endpoint.testing import (
    EndpointProcess,
    SignalingServer,
    configure_endpoint,
    site_env,
    start_signaling_server,
    wait_until_registered,
)
from proxystore.p2p.ice import ICE_ADDRESSES_ENV

# A benchmark on one host: keep ICE, and so all peer traffic, on loopback
# (the endpoint processes inherit this environment).
os.environ.setdefault(ICE_ADDRESSES_ENV, "127.0.0.1")

MB = 1_000_000
SECRET = "bench"


def raw_tcp(size: int) -> float:
    """Return MB/s of one transfer over a loopback TCP socket."""
    payload = memoryview(bytes(size))
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def send() -> None:
            connection, _ = server.accept()
            with connection:
                connection.sendall(payload)

        sender = threading.Thread(target=send)
        sender.start()
        buffer = bytearray(size)
        view = memoryview(buffer)
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as client:
            received = 0
            while received < size:
                received += client.recv_into(view[received:])
        elapsed = time.perf_counter() - start
        sender.join()
    return size / MB / elapsed


# Runs `proxystore-endpoint start NAME` with the token check left out.
_UNCHECKED_START = (
    "import sys; from proxystore.endpoint import server; "
    "server._INSECURE_SKIP_API_TOKEN_CHECK = True; "
    "from proxystore.endpoint.cli import main; sys.exit(main(sys.argv[1:]))"
)


def timed_get(
    http: httpx.Client,
    url: str,
    key: str,
    owner: str,
    headers: dict[str, str] | None = None,
) -> float:
    """Return seconds taken by one GET of ``key`` owned by ``owner``."""
    start = time.perf_counter()
    response = http.get(
        f"{url}/objects/{key}", params={"endpoint": owner}, headers=headers
    )
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


def put(http: httpx.Client, site: EndpointProcess, key: str, data: bytes) -> None:
    """Store ``data`` at ``site`` under ``key``."""
    http.put(
        f"{site.url}/objects/{key}", content=data, headers=site.auth_headers
    ).raise_for_status()


def throughput(
    http: httpx.Client, via: EndpointProcess, owner: EndpointProcess, size: int, n: int
) -> float:
    """Return the median MB/s of ``n`` gets of a ``size`` object through ``via``."""
    key = f"bulk-{size}"
    put(http, owner, key, bytes(size))
    auth = via.auth_headers
    times = [timed_get(http, via.url, key, owner.uuid, auth) for _ in range(n)]
    return size / MB / statistics.median(times)


def latency(
    http: httpx.Client, via: EndpointProcess, owner: EndpointProcess, n: int = 100
) -> float:
    """Return the median seconds of ``n`` sequential 1 KiB gets through ``via``."""
    put(http, owner, "small", bytes(1024))
    auth = via.auth_headers
    timed_get(http, via.url, "small", owner.uuid, auth)
    return statistics.median(
        timed_get(http, via.url, "small", owner.uuid, auth) for _ in range(n)
    )


def start_unchecked(site: EndpointProcess) -> None:
    """Start ``site`` with the API token check left out of its server."""
    log = open(site.home / f"{site.name}.out", "ab")  # noqa: SIM115
    with log:
        site.process = subprocess.Popen(
            [sys.executable, "-c", _UNCHECKED_START, "start", site.name],
            env=site_env(site.home),
            stdout=log,
            stderr=log,
        )


def auth_cost(
    root: Path, signaling: SignalingServer, rounds: int, n: int = 200
) -> dict[str, list[float]]:
    """Return per-round median 1 KiB get latencies, checked vs. unchecked.

    Keys: ``local`` / ``remote`` (token checked, header sent) and
    ``local-unchecked`` / ``remote-unchecked`` (same build, check left out,
    no header). Gets of the four kinds alternate one by one.
    """
    common = ["--server", signaling.url]
    names = ["auth-a", "auth-b", "open-a", "open-b"]
    sites = {
        name: configure_endpoint(root / name, name, *common, secret=SECRET)
        for name in names
    }
    for site in sites.values():
        site.allow("*")
    try:
        for name, site in sites.items():
            if name.startswith("open"):
                start_unchecked(site)
            else:
                site.start(wait=None)
        for site in sites.values():
            site.wait_ready(30)
            wait_until_registered(site, 30)
        results: dict[str, list[float]] = {}
        with httpx.Client(timeout=60, trust_env=False) as http:
            setups = []
            for prefix, suffix in (("auth", ""), ("open", "-unchecked")):
                a, b = sites[f"{prefix}-a"], sites[f"{prefix}-b"]
                put(http, a, "small", bytes(1024))
                headers = a.auth_headers if prefix == "auth" else {}
                remote_headers = b.auth_headers if prefix == "auth" else {}
                setups.append((f"local{suffix}", a.url, a.uuid, headers))
                setups.append((f"remote{suffix}", b.url, a.uuid, remote_headers))
            for _label, url, owner, headers in setups:  # warm up connections
                for _ in range(20):
                    timed_get(http, url, "small", owner, headers)
            for _ in range(rounds):
                # One get of each kind in turn, so load from other processes
                # on the host hits checked and unchecked gets alike.
                times: dict[str, list[float]] = {label: [] for label, *_ in setups}
                for _ in range(n):
                    for label, url, owner, headers in setups:
                        times[label].append(
                            timed_get(http, url, "small", owner, headers)
                        )
                for label, samples in times.items():
                    results.setdefault(label, []).append(statistics.median(samples))
        return results
    finally:
        for site in sites.values():
            site.stop()


def report_auth_cost(results: dict[str, list[float]]) -> None:
    """Print checked/unchecked latency ratios: median and spread over rounds."""
    rounds = len(results["local"])
    print(f"cost of API authentication, 1 KiB gets ({rounds} rounds x 200):")
    for kind in ("local", "remote"):
        checked, unchecked = results[kind], results[f"{kind}-unchecked"]
        ratios = [c / u for c, u in zip(checked, unchecked, strict=True)]
        print(
            f"  {kind:6} get  checked {statistics.median(checked) * 1e3:7.3f} ms  "
            f"unchecked {statistics.median(unchecked) * 1e3:7.3f} ms  "
            f"ratio {statistics.median(ratios):.3f}x "
            f"(spread {min(ratios):.3f}-{max(ratios):.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="object size, MB")
    parser.add_argument("--webrtc-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=7, help="rounds of the authentication cost"
    )
    parser.add_argument(
        "--auth-only", action="store_true", help="measure only (f), the auth cost"
    )
    args = parser.parse_args()
    size, webrtc_size = args.mb * MB, args.webrtc_mb * MB

    if args.auth_only:
        with tempfile.TemporaryDirectory() as temp:
            signaling = start_signaling_server(SECRET)
            try:
                report_auth_cost(auth_cost(Path(temp), signaling, args.rounds))
            finally:
                signaling.stop()
        return

    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        signaling = start_signaling_server(SECRET)
        common = ["--server", signaling.url]
        large = ["--max-object-size", str(2 * max(size, webrtc_size))]
        sites = {
            name: configure_endpoint(
                root / name, name, *common, *large, *extra, secret=SECRET
            )
            for name, extra in [
                ("fast-a", []),
                ("fast-b", []),
                ("rtc-a", ["--no-fast-path"]),
                ("rtc-b", ["--no-fast-path"]),
            ]
        }
        for a, b in (("fast-a", "fast-b"), ("rtc-a", "rtc-b")):
            sites[a].allow(sites[b].uuid)
            sites[b].allow(sites[a].uuid)
        try:
            for site in sites.values():
                site.start(wait=None)
            for site in sites.values():
                site.wait_ready(30)
                wait_until_registered(site, 30)
            with httpx.Client(timeout=300, trust_env=False) as http:
                fast_a, fast_b = sites["fast-a"], sites["fast-b"]
                rtc_a, rtc_b = sites["rtc-a"], sites["rtc-b"]
                raw = statistics.median(raw_tcp(size) for _ in range(args.repeat))
                local = throughput(http, fast_a, fast_a, size, args.repeat)
                fast = throughput(http, fast_b, fast_a, size, args.repeat)
                rtc = throughput(http, rtc_b, rtc_a, webrtc_size, 1)
                local_lat = latency(http, fast_a, fast_a)
                fast_lat = latency(http, fast_b, fast_a)
                rtc_lat = latency(http, rtc_b, rtc_a)
            auth = auth_cost(root / "auth", signaling, args.rounds)
        finally:
            for site in sites.values():
                site.stop()
            signaling.stop()

    print(f"{args.mb} MB get, median of {args.repeat} (WebRTC-only: 1 run):")
    print(f"  raw loopback TCP socket       {raw:9.1f} MB/s  (1.00x)")
    print(
        f"  local get (HTTP only)         {local:9.1f} MB/s  ({local / raw:.2f}x raw)"
    )
    print(
        f"  remote get, fast path         {fast:9.1f} MB/s  ({fast / raw:.2f}x raw, "
        f"{fast / local:.2f}x local)"
    )
    print(
        f"  remote get, WebRTC only       {rtc:9.1f} MB/s  ({rtc / raw:.3f}x raw, "
        f"{rtc / local:.3f}x local)  [{args.webrtc_mb} MB]"
    )
    print("median latency of 100 sequential 1 KiB gets:")
    print(f"  local get                     {local_lat * 1e3:9.2f} ms  (1.00x)")
    print(
        f"  remote get, fast path pair    {fast_lat * 1e3:9.2f} ms  "
        f"({fast_lat / local_lat:.1f}x local)"
    )
    print(
        f"  remote get, WebRTC-only pair  {rtc_lat * 1e3:9.2f} ms  "
        f"({rtc_lat / local_lat:.1f}x local)"
    )
    report_auth_cost(auth)


if __name__ == "__main__":
    main()
