"""Encrypted fast path: EndpointStore.get of a peer's object vs raw asyncio TLS.

Measures, in one run, on loopback:
  (a) ceiling: a raw asyncio TLS 1.3 stream between two processes (a child
      serves SIZE bytes, the parent reads them into one preallocated buffer),
      with the same Ed25519 certificate and cipher negotiation as the fast path;
  (b) the fast path alone: `fetch` of a body a child process offers, pinned
      and signed as between peers;
  (c) `EndpointStore.get` of an object owned by the peer endpoint (HTTP to the
      local endpoint + the encrypted fast path between the two endpoints);
  (d) `EndpointStore.get` of an object owned by the endpoint asked (the HTTP
      leg alone), to show where (c) spends its time.

Each round runs (a)-(d) once, so load from other processes weighs on all of
them alike; the median and the spread (min-max) over the rounds are printed,
with ratios against (a).

    python benchmarks/bench_fastpath_tls.py [--mb 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from proxystore.endpoint.identity import Identity
from proxystore.endpoint.testing import (
    configure_endpoint,
    start_signaling_server,
    wait_until_registered,
)
from proxystore.p2p.fastpath import (
    FastPathServer,
    FastPathTicket,
    client_context,
    fetch,
    server_context,
)
from proxystore.p2p.ice import ICE_ADDRESSES_ENV

os.environ.setdefault(ICE_ADDRESSES_ENV, "127.0.0.1")

MB = 1_000_000
SECRET = "bench-secret"
CHUNK = 4 * 1024 * 1024


def _serve_raw_tls(pem: bytes, size: int, port_out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    identity = Identity(load_pem_private_key(pem, None))  # type: ignore[arg-type]
    body = memoryview(bytes(size))

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readexactly(1)
        for start in range(0, size, CHUNK):
            writer.write(body[start : start + CHUNK])
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(
            handle, "127.0.0.1", 0, ssl=server_context(identity)
        )
        port_out.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class _Sink(asyncio.BufferedProtocol):
    def __init__(self, size: int) -> None:
        self.view = memoryview(bytearray(size))
        self.received = 0
        self.done = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.received :]

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        if self.received == len(self.view) and not self.done.done():
            self.done.set_result(None)


async def raw_tls_get(port: int, size: int) -> float:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    # Allocating the destination is part of any receive, as in `fetch`.
    sink = _Sink(size)
    transport, _ = await loop.create_connection(
        lambda: sink, "127.0.0.1", port, ssl=client_context(), server_hostname=""
    )
    transport.write(b"x")
    await asyncio.wait_for(sink.done, 120)
    elapsed = time.perf_counter() - start
    transport.close()
    return elapsed


def _serve_fast_path(
    pem: bytes,
    peer_public: bytes,
    size: int,
    requests: multiprocessing.Queue,  # type: ignore[type-arg]
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    identity = Identity(load_pem_private_key(pem, None))  # type: ignore[arg-type]
    body = bytes(size)

    async def serve() -> None:
        server = FastPathServer(identity, timeout=120)
        await server.start()
        loop = asyncio.get_running_loop()
        # One ticket per request; None stops.
        while await loop.run_in_executor(None, requests.get) is not None:
            out.put(server.offer(body, peer_public, ttl=600).to_json())
        await server.close()

    asyncio.run(serve())


def summarize(label: str, size: int, times: list[float], base: float | None) -> float:
    rates = sorted(size / MB / t for t in times)
    median = statistics.median(rates)
    ratio = f"  {median / base:.2f}x raw TLS" if base else ""
    print(
        f"  {label:44s} {median:8.1f} MB/s  "
        f"(min {rates[0]:.1f}, max {rates[-1]:.1f}){ratio}"
    )
    return median


async def main_async(size: int, repeat: int) -> None:
    from proxystore.aio.endpoint import EndpointStore

    ctx = multiprocessing.get_context("spawn")
    holder, fetcher = Identity.generate(), Identity.generate()
    ports: multiprocessing.Queue[int] = ctx.Queue()
    requests: multiprocessing.Queue[int | None] = ctx.Queue()
    tickets: multiprocessing.Queue[dict[str, object]] = ctx.Queue()
    children = [
        ctx.Process(
            target=_serve_raw_tls,
            args=(holder.private_pem(), size, ports),
            daemon=True,
        ),
        ctx.Process(
            target=_serve_fast_path,
            args=(holder.private_pem(), fetcher.public_bytes, size, requests, tickets),
            daemon=True,
        ),
    ]
    for child in children:
        child.start()
    port = ports.get(timeout=60)

    async def raw() -> float:
        return await raw_tls_get(port, size)

    async def fast() -> float:
        requests.put(1)
        ticket = FastPathTicket.from_json(tickets.get(timeout=60))
        start = time.perf_counter()
        await fetch(
            ticket, identity=fetcher, peer_public=holder.public_bytes, timeout=120
        )
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"raw": [], "fast": [], "remote": [], "local": []}
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        signaling = start_signaling_server(SECRET)
        options = ["--server", signaling.url, "--max-object-size", str(4 * size)]
        sites = [
            configure_endpoint(root / name, name, *options, secret=SECRET)
            for name in ("owner", "reader")
        ]
        owner, reader = sites
        owner.allow(reader.uuid)
        reader.allow(owner.uuid)
        try:
            for site in sites:
                site.start(wait=30)
            for site in sites:
                wait_until_registered(site, 30)
            async with (
                EndpointStore(
                    "own",
                    url=owner.url,
                    token_file=str(owner.token_file),
                    timeout=300,
                    cache_size=0,
                ) as at_o,
                EndpointStore(
                    "rd",
                    url=reader.url,
                    token_file=str(reader.token_file),
                    timeout=300,
                    cache_size=0,
                ) as at_r,
            ):
                key = await at_o.aset(os.urandom(size))

                def getter(store: EndpointStore) -> Callable[[], Awaitable[float]]:
                    async def get() -> float:
                        start = time.perf_counter()
                        data = await store.aget(key)
                        elapsed = time.perf_counter() - start
                        assert data is not None
                        assert len(data) == size
                        return elapsed

                    return get

                runs = {
                    "raw": raw,
                    "fast": fast,
                    "remote": getter(at_r),
                    "local": getter(at_o),
                }
                # Interleaved rounds, so load from other processes on the
                # host weighs on every variant alike; round 0 is a warm-up.
                for round_ in range(repeat + 1):
                    for label, run in runs.items():
                        elapsed = await run()
                        if round_:
                            times[label].append(elapsed)
        finally:
            for site in sites:
                site.stop()
            signaling.stop()
            requests.put(None)
            for child in children:
                child.terminate()
                child.join(10)

    print(f"{size // MB} MB, median of {repeat} interleaved rounds, loopback:")
    base = summarize(
        "(a) raw asyncio TLS 1.3 stream, 2 processes", size, times["raw"], None
    )
    summarize("(b) fast path fetch alone (TLS, pinned)", size, times["fast"], base)
    summarize("(c) EndpointStore.get, owned by the peer", size, times["remote"], base)
    summarize("(d) EndpointStore.get, owned locally (HTTP)", size, times["local"], base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="object size, MB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main_async(args.mb * MB, args.repeat))


if __name__ == "__main__":
    main()
