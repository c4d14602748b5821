"""The parts of `RedisStore` only its async face has.

Queued gets: at most `max_connections` operations per pool are in flight. In the async
face, gets that find every slot taken queue here and go out as one ``MGET``
sent by one task once a slot frees up, instead of one round trip each (a
thread of the sync face waits for its slot). Also: the error for a race of
redis-py's asyncio cluster client (`unclosed_connection_error`), writes
of large parts by reference (`send_by_reference`), and reads of a large
value into one buffer (`read_large_value`).

This module is never generated and the sync face never imports it:
`proxystore.aio.redis` calls it from ``# async-only`` blocks (see
scripts/generate_sync.py).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis import exceptions as redis_errors

from proxystore.exceptions import ProxyStoreError
from proxystore.frame import HEAD_FIXED_SIZE, Split, Stored, header_length
from proxystore.serialize import Buffer

if sys.version_info >= (3, 11, 3):  # as redis-py times its reads
    from asyncio import timeout as _timeout  # type: ignore[attr-defined,unused-ignore]
else:  # pragma: no cover - redis-py depends on async-timeout there
    from async_timeout import timeout as _timeout  # type: ignore[import-not-found,no-redef,unused-ignore]

SendGets = Callable[[list[str]], Awaitable[list[Any]]]
"""Sends ``MGET`` of the keys' values and versions on a connection whose slot the
caller holds; returns the flat reply, raises `ProxyStoreError`."""


class QueuedGets:
    """The gets of one connection pool waiting for a free slot.

    Args:
        slots: The semaphore bounding the pool's operations.
        send: Sends one ``MGET`` for the queued keys (see `SendGets`).
    """

    def __init__(self, slots: asyncio.Semaphore, send: SendGets) -> None:
        self.slots = slots
        self.send = send
        self.queued: list[tuple[str, asyncio.Future[list[Any]]]] = []
        self.tasks: set[asyncio.Task[int]] = set()

    def busy(self) -> bool:
        """Whether every slot is taken (a get should queue)."""
        return self.slots.locked()

    async def aget(self, key: str) -> list[Any]:
        """Join the next MGET of gets waiting for a connection.

        Returns the key's value and version, as `MGET K {K}:v` would.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self.queued.append((key, future))
        if len(self.queued) == 1:
            task = loop.create_task(self._afetch_queued())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        pair: list[Any] = await future
        return pair

    async def _afetch_queued(self) -> int:
        """Send one MGET for every queued get once a connection is free.

        Returns how many gets it answered. Every waiter sees a failure; the
        task itself ends quietly unless cancelled.
        """
        try:
            await self.slots.acquire()
        except BaseException:
            batch, self.queued = self.queued, []
            _settle(batch, asyncio.CancelledError())
            raise
        try:
            batch, self.queued = self.queued, []
            try:
                values = await self.send([key for key, _ in batch])
            except ProxyStoreError as error:
                _settle(batch, error)
                return 0
            except BaseException as err:
                _settle(batch, err)
                raise
        finally:
            self.slots.release()
        for index, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result(values[2 * index : 2 * index + 2])
        return len(batch)

    def cancel(self) -> None:
        """Stop the tasks sending queued gets (the pool is closing)."""
        for task in list(self.tasks):
            task.cancel()


def _settle(batch: list[tuple[str, Any]], error: BaseException) -> None:
    """Fail the futures of queued gets (cancel them if `error` is a cancel)."""
    for _, future in batch:
        if future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)


def unclosed_connection_error(err: BaseException) -> redis_errors.ConnectionError:
    """The error for a connection closed under a command after a node failed.

    redis-py 8.1's asyncio cluster client, when a node fails, closes its
    connections under other tasks still using them (AttributeError; on
    Python 3.13 a TypeError, calling the closed connection's reader that is
    now None). As a redis-py ``ConnectionError`` the store retries it after
    reading the slot map again, like any other failed node.
    """
    return redis_errors.ConnectionError(
        f"a connection was closed under the command after a node failed: {err!r}"
    )


async def send_by_reference(connection: Any, packed: Sequence[Buffer]) -> bool:
    """Write packed commands' parts to an open connection's stream one by one.

    redis-py's ``writelines`` joins them into one copy first on Python <
    3.12 (asyncio's default). Returns False, having sent nothing, where
    there is nothing to gain (one part) or no open stream to write to; the
    caller then sends them through redis-py.

    Raises:
        redis.exceptions.TimeoutError: If the parts are not sent within the
            connection's socket timeout.
        redis.exceptions.ConnectionError: If writing fails.
    """
    writer = getattr(connection, "_writer", None)
    if len(packed) == 1 or writer is None or not connection.is_connected:
        return False
    try:
        for part in packed:
            writer.write(part)
        await asyncio.wait_for(writer.drain(), connection.socket_timeout)
    except asyncio.TimeoutError:
        raise redis_errors.TimeoutError("Timeout writing to socket") from None
    except OSError as err:
        raise redis_errors.ConnectionError(
            f"Error while writing to socket: {err}"
        ) from err
    return True


# A value at least this large, first in an array reply, is read by
# `read_large_value`; smaller ones by redis-py's parser.
LARGE_VALUE = 1 << 20
# Most bytes taken from the stream at a time (its buffer stays small).
_PIECE = 1 << 20
# As much as redis-py's parser reads at a time.
_FIRST_READ = 64 * 1024
_LARGE_HEAD = re.compile(rb"\*([1-9][0-9]{0,8})\r\n\$([0-9]{1,15})\r\n")


async def read_large_value(connection: Any) -> Any:
    """Read an array reply whose first element may be a large value.

    redis-py's hiredis parser gathers a bulk value in hiredis's own buffer
    and then copies it into a `bytes`: two copies of the value at once.
    Here the first read of the reply (as large as redis-py's) is looked at:
    a value of at least `LARGE_VALUE` bytes that starts it is then read
    piece by piece into one `bytearray` (a one-part frame as a `Split`:
    its header, then its part in that buffer), and the rest of the array
    goes to redis-py's parser (fed the array header of the remaining
    elements). Any other reply goes to redis-py's parser, fed that first
    read. Nothing is checked here but the protocol: the store decodes what
    comes back as any other value.

    Raises:
        redis.exceptions.TimeoutError: If the reply takes longer than the
            connection's socket timeout.
        redis.exceptions.ConnectionError: If the connection fails or closes
            (the caller then drops the connection).
    """
    parser = getattr(connection, "_parser", None)
    reader: Any = getattr(parser, "_reader", None)
    stream = getattr(connection, "_reader", None)
    if (
        not isinstance(stream, asyncio.StreamReader)
        or not hasattr(reader, "has_data")
        or reader.has_data()
    ):
        return await connection.read_response()
    try:
        # One timeout for the whole reply, as redis-py's read_response has.
        async with _timeout(connection.socket_timeout):
            return await _read_large_value(parser, stream, reader)
    except asyncio.TimeoutError:
        raise redis_errors.TimeoutError("Timeout reading from socket") from None
    except asyncio.IncompleteReadError as err:
        raise redis_errors.ConnectionError("Connection closed by server.") from err
    except OSError as err:
        raise redis_errors.ConnectionError(
            f"Error while reading from socket: {err}"
        ) from err


async def _read_large_value(
    parser: Any, stream: asyncio.StreamReader, reader: Any
) -> Any:
    # The read redis-py's parser would do first; a small reply goes to it.
    data = await stream.read(_FIRST_READ)
    found = _LARGE_HEAD.match(data)
    if found is None or int(found[2]) < LARGE_VALUE:
        if not data:
            raise redis_errors.ConnectionError("Connection closed by server.")
        reader.feed(data)
        return await _parsed(parser)
    count, size = int(found[1]), int(found[2])
    # The value's first bytes (less than all of it: it is over 64 KiB).
    pending = data[found.end() :]
    if len(pending) < HEAD_FIXED_SIZE:
        pending += await stream.readexactly(HEAD_FIXED_SIZE - len(pending))
    head = header_length(pending)
    if head is not None and len(pending) < head:
        pending += await stream.readexactly(head - len(pending))
    start = 0 if head is None else head
    buffer = bytearray(size - start)
    buffer[: len(pending) - start] = pending[start:]
    await _read_into(stream, memoryview(buffer)[len(pending) - start :])
    value: Stored = buffer if head is None else Split(pending[:head], buffer)
    del pending
    if await stream.readexactly(2) != b"\r\n":
        raise redis_errors.ConnectionError(
            "malformed reply: a bulk value not followed by CRLF"
        )
    if count == 1:
        return [value]
    # The other elements (a version) through redis-py's parser.
    reader.feed(b"*%d\r\n" % (count - 1))
    rest: list[Any] = await _parsed(parser)
    return [value, *rest]


async def _parsed(parser: Any) -> Any:
    """The next reply from redis-py's parser (under the caller's timeout).

    As redis-py's ``read_response``: an error reply is raised.
    """
    response = await parser.read_response()
    if isinstance(response, redis_errors.ResponseError):
        raise response from None
    return response


async def _read_into(stream: asyncio.StreamReader, view: memoryview) -> None:
    """Fill `view` from the stream, a piece of at most `_PIECE` bytes at a time."""
    done = 0
    size = view.nbytes
    while done < size:
        piece = await stream.read(min(size - done, _PIECE))
        if not piece:
            raise asyncio.IncompleteReadError(b"", size)
        view[done : done + len(piece)] = piece
        done += len(piece)
