"""An asyncio service that answers requests with proxies instead of data.

The server (plain `asyncio.start_server` on 127.0.0.1) builds a numpy array
for each request, puts it in an async `FileStore` with
``await store.aproxy(array, evict=True)`` and writes back the *pickled proxy*
(a few hundred bytes, whatever the array's size). The client unpickles it and
resolves it with ``await proxystore.aio.resolve(...)``, which fetches the
array from the store without blocking the event loop; ``evict=True`` deletes
it from the store once resolved. Both run in one script run, in one event
loop.

Wire format, both directions: a 4-byte big-endian length, then that many
bytes (JSON for requests, a pickle for responses).

Run it:

    python examples/async_service.py --requests 8 --size 1000000

The last line printed is a JSON summary (the tests read it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import struct
import tempfile
from typing import Any

import numpy as np

from proxystore import aio
from proxystore.aio.base import Store
from proxystore.proxy import Proxy
from proxystore.store.utils import get_key

STORE_NAME = "async-service-example"
TIMEOUT = 30.0
_LENGTH = struct.Struct(">I")


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """Read one length-prefixed frame, waiting at most `TIMEOUT` seconds."""
    header = await asyncio.wait_for(reader.readexactly(_LENGTH.size), TIMEOUT)
    (length,) = _LENGTH.unpack(header)
    return await asyncio.wait_for(reader.readexactly(length), TIMEOUT)


async def write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write one length-prefixed frame and wait until it is flushed."""
    writer.write(_LENGTH.pack(len(data)) + data)
    await asyncio.wait_for(writer.drain(), TIMEOUT)


class ArrayService:
    """Answers each request with a proxy of a freshly built array.

    Args:
        store: The async store the arrays are put in.
    """

    def __init__(self, store: Store[Any]) -> None:
        self.store = store
        self._connections: set[asyncio.Task[Any]] = set()

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one connection until the client closes it."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        try:
            while True:
                try:
                    request = json.loads(await read_frame(reader))
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection
                array = np.full(request["size"], float(request["value"]))
                proxy = await self.store.aproxy(array, evict=True)
                await write_frame(writer, pickle.dumps(proxy))
        finally:
            writer.close()
            await writer.wait_closed()

    async def drain(self) -> None:
        """Wait for the connections still open to finish."""
        if self._connections:
            await asyncio.wait_for(asyncio.gather(*self._connections), TIMEOUT)


async def request_arrays(
    port: int, requests: int, size: int
) -> tuple[list[Proxy[Any]], int]:
    """Ask the service for `requests` arrays; return the proxies and bytes read."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port), TIMEOUT
    )
    proxies: list[Proxy[Any]] = []
    received = 0
    try:
        for value in range(requests):
            request = {"size": size, "value": value}
            await write_frame(writer, json.dumps(request).encode())
            frame = await read_frame(reader)
            received += _LENGTH.size + len(frame)
            proxies.append(pickle.loads(frame))
    finally:
        writer.close()
        await writer.wait_closed()
    return proxies, received


async def run(requests: int, size: int, store_dir: str) -> dict[str, Any]:
    """Start the service, run the client against it, and summarise."""
    store = aio.init_store("file", name=STORE_NAME, store_dir=store_dir)
    try:
        service = ArrayService(store)
        server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            proxies, received = await request_arrays(port, requests, size)
            await service.drain()
        arrays = await aio.resolve_all(*proxies)
        sums = [float(array.sum()) for array in arrays]
        left_in_store = sum([await store.aexists(get_key(p)) for p in proxies])
    finally:
        await store.aclose()
        aio.unregister_store(STORE_NAME)
    return {
        "requests": requests,
        "sums": sums,
        "expected": [float(value * size) for value in range(requests)],
        "array_bytes": sum(array.nbytes for array in arrays),
        "wire_bytes": received,
        "left_in_store": left_in_store,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the service and its client; return the summary printed last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="requests to send")
    parser.add_argument(
        "--size", type=int, default=1_000_000, help="float64 elements per array"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as store_dir:
        summary = asyncio.run(run(args.requests, args.size, store_dir))
    if summary["sums"] != summary["expected"]:
        raise RuntimeError(f"wrong arrays: {summary['sums']}")

    ratio = summary["array_bytes"] / summary["wire_bytes"]
    print(
        f"{summary['requests']} responses carried {summary['wire_bytes']:,} bytes "
        f"for {summary['array_bytes']:,} bytes of arrays ({ratio:.3g}x)"
    )
    print(f"objects left in the store after resolving: {summary['left_in_store']}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
