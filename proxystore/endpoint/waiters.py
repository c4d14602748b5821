"""Long-poll waits on an endpoint's objects (futures are woken, not polled).

Route (installed by `install`, authenticated and limited like every other):

- ``GET /objects/{key}/wait?endpoint=OWNER&wait=SECONDS``: answers
  ``{"exists": true, "waited": true}`` as soon as an object is stored under
  ``key``, or ``{"exists": false, "waited": true}`` once ``SECONDS`` (capped
  by the server at `MAX_WAIT`) have passed; the client asks again.

A waiting request is a request in flight like any other: it takes one of the
endpoint's ``max_requests`` slots and keeps its connection busy (never closed
to admit another under ``max_connections``). So that waiters cannot take every
slot and starve the write that would wake them, at most
``max_requests // WAITER_SHARE`` requests wait at once; more are refused with
429 ``max_requests`` (and ``Retry-After``), and `EndpointStore` polls instead
until a slot frees.

Writes wake waiters wherever they come from: an HTTP ``PUT`` or a peer's
``set`` request both go through the endpoint's `ObjectStorage.set`, which
`install` wraps.

Only objects this endpoint owns are waited on. For another owner the route
answers at once with one ``exists`` forwarded to that owner
(``"waited": false``): waits are not forwarded to peers, and a client waiting
on an object owned elsewhere polls (`EndpointStore` does so with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from proxystore.endpoint.endpoint import Endpoint
from proxystore.endpoint.keys import validate_object_id
from proxystore.endpoint.protocol import (
    MAX_WAIT,
    OWNER_PARAM,
    TIMEOUT_HEADER,
    WAIT_PARAM,
    WAIT_SUFFIX,
)
from proxystore.exceptions import LimitExceededError

__all__ = [
    "MAX_WAIT",
    "WAITER_SHARE",
    "WAIT_PARAM",
    "WAIT_SUFFIX",
    "Waiters",
    "install",
    "max_waiters",
]

WAITER_SHARE = 2
"""At most ``max_requests // WAITER_SHARE`` (and at least one) requests wait at once."""

_WAITERS_KEY: web.AppKey[Waiters] = web.AppKey("waiters")


def max_waiters(max_requests: int | None) -> int | None:
    """Return how many requests may wait at once under ``max_requests``."""
    if max_requests is None:
        return None
    return max(1, max_requests // WAITER_SHARE)


class Waiters:
    """Tasks waiting for objects to be stored, woken by `wake`.

    Args:
        limit: Most waits at once (``None``: no limit); more raise
            `LimitExceededError` naming ``max_requests``.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._events: dict[str, asyncio.Event] = {}
        self._counts: dict[str, int] = {}
        self._closed = False

    @property
    def waiting(self) -> int:
        """Number of waits in progress."""
        return sum(self._counts.values())

    def wake(self, object_id: str) -> None:
        """Wake every wait on ``object_id`` (an object was stored under it)."""
        event = self._events.get(object_id)
        if event is not None:
            event.set()

    def close(self) -> None:
        """Wake every wait (each answers whether its object exists); end new ones."""
        self._closed = True
        for event in self._events.values():
            event.set()

    async def wait(
        self,
        object_id: str,
        exists: Callable[[], Awaitable[bool]],
        seconds: float,
    ) -> bool:
        """Wait until ``exists()`` is true, woken by `wake`; at most ``seconds``.

        Raises:
            LimitExceededError: If `limit` waits are in progress.
        """
        if self.limit is not None and self.waiting >= self.limit:
            raise LimitExceededError(
                "max_requests",
                f"the endpoint holds its cap of {self.limit} waiting requests "
                f"(max_requests // {WAITER_SHARE}); poll instead, or retry later",
            )
        event = self._events.get(object_id)
        if event is None:
            event = self._events[object_id] = asyncio.Event()
        self._counts[object_id] = self._counts.get(object_id, 0) + 1
        try:
            # Registered before the check: a write between the two sets the
            # event (one loop, so nothing runs between check and wait).
            if await exists():
                return True
            if self._closed:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), seconds)
            return await exists()
        finally:
            self._counts[object_id] -= 1
            if not self._counts[object_id]:
                del self._counts[object_id]
                del self._events[object_id]


def _wait_seconds(request: web.Request) -> float:
    raw = request.query.get(WAIT_PARAM, str(MAX_WAIT))
    try:
        seconds = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{WAIT_PARAM} {raw!r} is not a number") from None
    if not seconds >= 0 or math.isinf(seconds):
        raise web.HTTPBadRequest(text=f"{WAIT_PARAM} {raw!r} is not seconds >= 0")
    return min(seconds, MAX_WAIT)


def _peer_timeout(request: web.Request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER)
    try:
        value = float(raw) if raw is not None else 0.0
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"{TIMEOUT_HEADER} {raw!r} is not a number"
        ) from None
    return value if value > 0 else None


def install(app: web.Application, endpoint: Endpoint, max_requests: int | None) -> None:
    """Add the wait route to ``app`` and wake its waiters on every write.

    Args:
        app: The endpoint's application (before it starts).
        endpoint: The endpoint it serves; its ``storage.set`` is wrapped.
        max_requests: The endpoint's ``max_requests`` (sets `max_waiters`).
    """
    waiters = Waiters(max_waiters(max_requests))
    app[_WAITERS_KEY] = waiters
    storage = endpoint.storage
    store_object = storage.set

    async def set_and_wake(object_id: str, data: Any) -> None:
        await store_object(object_id, data)
        waiters.wake(object_id)

    # Wrapped on the instance: HTTP PUTs and peers' writes both pass here.
    setattr(storage, "set", set_and_wake)  # noqa: B010

    async def wait(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        validate_object_id(key)
        seconds = _wait_seconds(request)
        owner = request.query.get(OWNER_PARAM) or None
        if not endpoint.is_local(owner):
            found = await endpoint.exists(key, owner, _peer_timeout(request))
            return web.json_response({"exists": found, "waited": False})
        found = await waiters.wait(key, lambda: endpoint.storage.exists(key), seconds)
        return web.json_response({"exists": found, "waited": True})

    async def close(_: web.Application) -> None:
        waiters.close()

    app.router.add_get("/objects/{key}" + WAIT_SUFFIX, wait)
    app.on_shutdown.append(close)


def waiters_of(app: web.Application) -> Waiters:
    """Return the `Waiters` `install` added to ``app`` (for tests and metrics)."""
    return app[_WAITERS_KEY]
