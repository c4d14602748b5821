"""One network client per event loop and per process, shared by both faces.

An asyncio connection belongs to the loop that opened it, and a store's
async face may serve the user's loop and the background prefetch loop at
once; the sync face keys its one client by None. A forked child never uses
(or closes) the parent's sockets: it starts afresh and keeps the inherited
clients referenced so their finalizers do not close them under the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TypeVar

C = TypeVar("C")

Owner = asyncio.AbstractEventLoop | None
"""The event loop a client belongs to, or None for the sync face."""


class ClientsPerLoop(Mapping[Owner, C]):
    """A lazily filled map from owner (event loop or None) to client.

    Read it as a mapping of the clients made so far; `client_for` creates.

    Args:
        create: Makes a new client for the calling loop (or thread, if sync).
    """

    def __init__(self, create: Callable[[], C]) -> None:
        self._create = create
        self._clients: dict[Owner, C] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._inherited: list[C] = []

    def client_for(self, owner: Owner) -> C:
        """Return the owner's client, creating it on first use."""
        client = self._clients.get(owner)
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._pid != os.getpid():
                self._inherited.extend(self._clients.values())
                self._clients = {}
                self._pid = os.getpid()
            for loop in [loop for loop in self._clients if _closed(loop)]:
                del self._clients[loop]
            client = self._clients.get(owner)
            if client is None:
                client = self._clients[owner] = self._create()
            return client

    def __getitem__(self, owner: Owner) -> C:
        return self._clients[owner]

    def __iter__(self) -> Iterator[Owner]:
        return iter(self._clients)

    def __len__(self) -> int:
        return len(self._clients)

    def take_all(self) -> dict[Owner, C]:
        """Forget every client and return those this process may close."""
        with self._lock:
            clients, self._clients = self._clients, {}
        return clients if self._pid == os.getpid() else {}

    async def aclose_all(self, close: Callable[[C], Awaitable[None]]) -> None:
        """Close every client, each in the loop that owns it."""
        current = asyncio.get_running_loop()
        for owner, client in self.take_all().items():
            if owner is current:
                await close(client)
            elif owner is not None and not owner.is_closed():
                # The loop may close meanwhile; its sockets then went with it.
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(_call(close, client), owner)

    def close_all(self, close: Callable[[C], None]) -> None:
        """Close every client of the sync face."""
        for client in self.take_all().values():
            close(client)


def _closed(loop: Owner) -> bool:
    return loop is not None and loop.is_closed()


async def _call(close: Callable[[C], Awaitable[None]], client: C) -> None:
    await close(client)
