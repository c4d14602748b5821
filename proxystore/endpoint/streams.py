"""Request bodies sent from payload parts without joining them first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx

from proxystore.serialize import Payload

CHUNK_SIZE = 4 * 1024 * 1024


class PayloadStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An httpx request body made of a payload's parts, in order.

    Usable by both `httpx.Client` and `httpx.AsyncClient` so one driver source
    serves both store faces. Parts are sent as views in chunks of at most
    `CHUNK_SIZE` bytes: no part is copied to build the body.

    Args:
        payload: The parts of the body.
    """

    def __init__(self, payload: Payload) -> None:
        self._parts = [memoryview(part).cast("B") for part in payload]

    @property
    def nbytes(self) -> int:
        """Total length of the body in bytes."""
        return sum(part.nbytes for part in self._parts)

    def _chunks(self) -> Iterator[bytes]:
        for part in self._parts:
            for start in range(0, part.nbytes, CHUNK_SIZE):
                # h11 and the socket accept any buffer; the bytes annotation
                # is what httpx's stream interface promises.
                yield part[start : start + CHUNK_SIZE]  # type: ignore[misc]

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            yield chunk
