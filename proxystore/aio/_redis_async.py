"""The parts of `RedisStore` only its async face has.

Queued gets: at most `max_connections` operations per pool are in flight. In the async
face, gets that find every slot taken queue here and go out as one ``MGET``
sent by one task once a slot frees up, instead of one round trip each (a
thread of the sync face waits for its slot). Also: the error for a race of
redis-py's asyncio cluster client (`unclosed_connection_error`), and writes
of large parts by reference (`send_by_reference`).

This module is never generated and the sync face never imports it:
`proxystore.aio.redis` calls it from ``# async-only`` blocks (see
scripts/generate_sync.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis import exceptions as redis_errors

from proxystore.exceptions import ProxyStoreError
from proxystore.serialize import Buffer

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
