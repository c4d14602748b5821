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
from typing import Any, Generic, TypeVar

from proxystore.exceptions import StoreClosedError

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

    Closing (`close_all`, `aclose_all`) is final: afterwards no client is
    made and `client_for` and `lease` raise `StoreClosedError`. A client
    leased when the map is closed stays open for its holders (a worker
    thread or task mid-request finishes with it) and is closed when the
    last of them returns it, in the holder's thread or loop.

    Args:
        create: Makes a new client for the calling loop (or thread, if sync).
        close: Closes a client (a coroutine function for loop owners); None
            to never close clients when their loop shuts down.
        name: The store's name, for `StoreClosedError`.
    """

    def __init__(
        self,
        create: Callable[[], C],
        close: Close[C] | None = None,
        name: str = "",
    ) -> None:
        self._create = create
        self._close = close
        self._name = name
        self._clients: dict[Owner, C] = {}
        self._guards: dict[Owner, _Guard] = {}
        self._finalizers: dict[Owner, weakref.finalize[Any, Any]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._inherited: list[object] = []
        self._is_closed = False
        # id(client) -> holders, and the closes owed to leased clients.
        self._holders: dict[int, int] = {}
        self._owed: dict[int, Close[C]] = {}
        _instances[id(self)] = self

    def client_for(self, owner: Owner) -> C:
        """Return the owner's client, creating it on first use.

        Raises:
            StoreClosedError: The map was closed.
        """
        client = self._clients.get(owner)
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            client, guard, stale = self._locked_client(owner)
        self._started(owner, guard, stale)
        return client

    def lease(self, owner: Owner) -> Lease[C]:
        """The owner's client, held for one request (``with``/``async with``).

        While held, closing the map does not close it: the holder returned
        last closes it (see the class docstring).
        """
        return Lease(self, owner)

    def _acquire(self, owner: Owner) -> C:
        holders = self._holders
        with self._lock:
            client = self._clients.get(owner)
            if client is not None and self._pid == os.getpid():
                holders[id(client)] = holders.get(id(client), 0) + 1
                return client  # the common case: open, made, same process
            client, guard, stale = self._locked_client(owner)
            holders = self._holders  # a forked child's new count
            holders[id(client)] = holders.get(id(client), 0) + 1
        self._started(owner, guard, stale)
        return client

    def _give_back(self, client: C) -> Close[C] | None:
        """Count a holder out; return the close owed if it was the last one."""
        with self._lock:
            holders = self._holders.pop(id(client), 0) - 1
            if holders > 0:
                self._holders[id(client)] = holders
                return None
            return self._owed.pop(id(client), None)

    def _locked_client(self, owner: Owner) -> tuple[C, _Guard | None, list[_Guard]]:
        """`client_for` under the lock: the client, its guard, stale guards."""
        if self._pid != os.getpid():
            self._inherited.extend(self._clients.values())
            self._inherited.extend(self._guards.values())
            self._clients = {}
            self._guards = {}
            _detach(self._finalizers)
            self._holders = {}
            self._owed = {}
            self._pid = os.getpid()
        if self._is_closed:
            raise StoreClosedError(self._name)
        stale: list[_Guard] = []
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
        return client, self._guards.get(owner), stale

    @staticmethod
    def _started(owner: Owner, guard: _Guard | None, stale: list[_Guard]) -> None:
        """Outside the lock: finish stale guards, start the owner's."""
        for old in stale:
            old.discard()
        if guard is not None and owner is not None and _running(owner):
            guard.start()

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

    def take_all(self, close: Close[C] | None = None) -> dict[Owner, C]:
        """Close the map: forget every client, return those to close now.

        Those are the clients this process made and nobody holds; a held
        one is closed with `close` (else the map's) by its last holder.
        """
        with self._lock:
            self._is_closed = True
            clients, self._clients = self._clients, {}
            guards, self._guards = self._guards, {}
            _detach(self._finalizers)
            if self._pid != os.getpid():
                clients = {}
            idle = {}
            for owner, client in clients.items():
                if id(client) not in self._holders:
                    idle[owner] = client
                elif (owed := close or self._close) is not None:
                    self._owed[id(client)] = owed
        for guard in guards.values():
            guard.discard()
        return idle

    async def aclose_all(self, close: Callable[[C], Awaitable[None]]) -> None:
        """Close every client, each in the loop that owns it."""
        current = asyncio.get_running_loop()
        for owner, client in self.take_all(close).items():
            if owner is current:
                await close(client)
            elif owner is not None and not owner.is_closed():
                # The loop may close meanwhile; its sockets then went with it.
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(_call(close, client), owner)

    def close_all(self, close: Callable[[C], None]) -> None:
        """Close every client of the sync face."""
        for client in self.take_all(close).values():
            close(client)


class Lease(Generic[C]):
    """One holder's use of a map's client; see `ClientsPerLoop.lease`.

    A class, not a generator: it wraps every request of a store.
    """

    __slots__ = ("_client", "_clients", "_owner")

    def __init__(self, clients: ClientsPerLoop[C], owner: Owner) -> None:
        self._clients = clients
        self._owner = owner

    def __enter__(self) -> C:
        self._client = self._clients._acquire(self._owner)
        return self._client

    def __exit__(self, *exc_info: object) -> None:
        close = self._clients._give_back(self._client)
        if close is not None:
            result = close(self._client)
            if inspect.iscoroutine(result):  # never for the sync face's clients
                result.close()

    async def __aenter__(self) -> C:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        close = self._clients._give_back(self._client)
        if close is not None:
            result = close(self._client)
            if inspect.isawaitable(result):
                await result


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
