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
import inspect
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

C = TypeVar("C")

Owner = asyncio.AbstractEventLoop | None
"""The event loop a client belongs to, or None for the sync face."""


Close = Callable[[C], "Awaitable[None] | None"]


class ClientsPerLoop(Mapping[Owner, C]):
    """A lazily filled map from owner (event loop or None) to client.

    Read it as a mapping of the clients made so far; `client_for` creates.

    A client made for an event loop is closed in that loop when the loop
    shuts down (`asyncio.run` does so after the main coroutine): a store
    used under successive `asyncio.run` calls never leaves the previous
    loop's connections open. The hook is an async generator started in the
    loop, which the loop closes in `shutdown_asyncgens`; a loop closed
    without that step leaves its clients to be dropped, as before.

    The sync face's client (owner None) is closed when this map is garbage
    collected with it still open: a store dropped without `close` (one a
    received proxy built, then unregistered or replaced) does not leave
    its sockets to the garbage collector, which reports each as unclosed.

    Args:
        create: Makes a new client for the calling loop (or thread, if sync).
        close: Closes a client (a coroutine function for loop owners); None
            to never close clients when their loop shuts down.
    """

    def __init__(self, create: Callable[[], C], close: Close[C] | None = None) -> None:
        self._create = create
        self._close = close
        self._clients: dict[Owner, C] = {}
        self._guards: dict[Owner, _Guard] = {}
        self._finalizers: dict[Owner, weakref.finalize[Any, Any]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._inherited: list[object] = []
        _instances[id(self)] = self

    def client_for(self, owner: Owner) -> C:
        """Return the owner's client, creating it on first use."""
        client = self._clients.get(owner)
        if client is not None and self._pid == os.getpid():
            return client
        stale: list[_Guard] = []
        with self._lock:
            if self._pid != os.getpid():
                self._inherited.extend(self._clients.values())
                self._inherited.extend(self._guards.values())
                self._clients = {}
                self._guards = {}
                _detach(self._finalizers)
                self._pid = os.getpid()
            for loop in [loop for loop in self._clients if _closed(loop)]:
                del self._clients[loop]
                if (guard := self._guards.pop(loop, None)) is not None:
                    stale.append(guard)
            client = self._clients.get(owner)
            if client is None:
                client = self._clients[owner] = self._create()
                if owner is not None and self._close is not None:
                    self._guards[owner] = _Guard(
                        _guard(weakref.ref(self), owner, client, self._close)
                    )
                elif owner is None and _closes_in_place(self._close):
                    assert self._close is not None
                    self._finalizers[None] = _finalizer(self, client, self._close)
            guard = self._guards.get(owner)
        for old in stale:
            old.discard()
        if guard is not None and owner is not None and _running(owner):
            guard.start()
        return client

    def _release(self, owner: Owner, client: C) -> bool:
        """Forget `client` if it is still the owner's; return whether it was."""
        with self._lock:
            if self._pid != os.getpid() or self._clients.get(owner) is not client:
                return False
            del self._clients[owner]
            self._guards.pop(owner, None)
            return True

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
            guards, self._guards = self._guards, {}
            _detach(self._finalizers)
        for guard in guards.values():
            guard.discard()
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


# Every map, so a forked child can replace their locks: another thread of the
# parent may have held one at fork time, and would never release it here.
_instances: weakref.WeakValueDictionary[int, ClientsPerLoop[Any]] = (
    weakref.WeakValueDictionary()
)


def _new_locks_after_fork() -> None:
    for clients in list(_instances.values()):
        clients._lock = threading.Lock()


os.register_at_fork(after_in_child=_new_locks_after_fork)


def _closes_in_place(close: Close[C] | None) -> bool:
    """Whether `close` closes a client without a loop (a plain function)."""
    return close is not None and not inspect.iscoroutinefunction(close)


def _finalizer(
    clients: ClientsPerLoop[C], client: C, close: Close[C]
) -> weakref.finalize[Any, Any]:
    """Close the sync client when `clients` is collected; not at exit."""
    finalizer = weakref.finalize(clients, _close_dropped, client, close, os.getpid())
    finalizer.atexit = False
    return finalizer


def _close_dropped(client: C, close: Close[C], pid: int) -> None:
    # A forked child that inherited the map never closes the parent's client.
    if os.getpid() == pid:
        close(client)


def _detach(finalizers: dict[Owner, weakref.finalize[Any, Any]]) -> None:
    """Forget the finalizers: their clients were taken (closed by the taker)."""
    for finalizer in finalizers.values():
        finalizer.detach()
    finalizers.clear()


def _closed(loop: Owner) -> bool:
    return loop is not None and loop.is_closed()


def _running(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _guard(
    clients: weakref.ref[ClientsPerLoop[C]],
    owner: Owner,
    client: C,
    close: Close[C],
) -> AsyncGenerator[None, None]:
    """Close `client` when the loop that runs this generator shuts it down."""
    try:
        yield
    finally:
        owned = clients()
        # A store dropped without aclose still gets its connections closed;
        # one that took the client back (aclose, a fork) closes it itself.
        if owned is None or owned._release(owner, client):
            result = close(client)
            if inspect.isawaitable(result):
                await result


class _Guard:
    """A `_guard` generator and whether it reached its `yield`."""

    __slots__ = ("agen", "started")

    def __init__(self, agen: AsyncGenerator[None, None]) -> None:
        self.agen = agen
        self.started = False

    def start(self) -> None:
        """Run it to its `yield` on the running loop, registering it there.

        The first step is what hands it to the loop's async-generator hooks;
        it never awaits, so one synchronous step reaches the `yield`.
        """
        if self.started:
            return
        self.started = True
        with contextlib.suppress(StopIteration):
            self.agen.asend(None).send(None)

    def discard(self) -> None:
        """Finish it: its client is no longer ours, so its `finally` does nothing."""
        with contextlib.suppress(StopIteration, RuntimeError):
            self.agen.aclose().send(None)


async def _call(close: Callable[[C], Awaitable[None]], client: C) -> None:
    await close(client)
