"""The primitives that differ between the faces, in pairs, for both faces.

Face-neutral (outside both face packages) and light: the sync face imports
it, so asyncio and aiofiles are imported only when an async name is first
used (`ASemaphore` and `ATimeoutError` through the module's ``__getattr__``).

Every name here used by the async face, ``aname`` (or ``AName``), has its
sync twin ``name`` (``Name``) beside it. Drivers in `proxystore.aio` import
only the async names; `scripts/generate_sync.py` renames each to its twin in
the sync face (a pair is two names of this module that differ by the
leading ``a``; its ``--check`` fails on a name without its twin). Both faces
import this one module, so a driver never branches on its face for file
I/O, sleeping, semaphores, the current loop or blocking calls.

The async twins never block the event loop: file metadata calls and
blocking SDK calls run in a worker thread (the loop's default executor).
A thread hop costs tens of microseconds, so a driver makes one per
operation where it can (`aremove_files` takes several paths; `ato_thread`
runs a helper doing several calls).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    import asyncio

    ASemaphore = asyncio.Semaphore
    """Bounds concurrent tasks of one event loop."""

    ATimeoutError = asyncio.TimeoutError
    """What an operation on the loop raises on timeout (3.10: not the builtin)."""

T = TypeVar("T")


def __getattr__(name: str) -> Any:
    # Checked before importing: the import system asks for other names
    # (``__path__``) that must not import asyncio.
    if name not in ("ASemaphore", "ATimeoutError"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import asyncio

    return asyncio.Semaphore if name == "ASemaphore" else asyncio.TimeoutError


# -- files ----------------------------------------------------------------------


def aopen_file(path: str, mode: str) -> Any:
    """Open a file for reads and writes awaited on the loop (`aiofiles.open`)."""
    import aiofiles

    opener: Any = aiofiles.open  # its overloads want a literal mode
    return opener(path, mode)


open_file = open
"""Open a file (the builtin `open`)."""


async def apath_exists(path: str) -> bool:
    """`os.path.exists` in a worker thread."""
    import asyncio

    return await asyncio.to_thread(os.path.exists, path)


path_exists = os.path.exists
"""`os.path.exists`."""


async def astat(path: str) -> os.stat_result:
    """`os.stat` in a worker thread."""
    import asyncio

    return await asyncio.to_thread(os.stat, path)


stat = os.stat
"""`os.stat`."""


async def aremove_files(*paths: str) -> None:
    """`remove_files` in a worker thread (one hop for all of them)."""
    import asyncio

    await asyncio.to_thread(remove_files, *paths)


def remove_files(*paths: str) -> None:
    """Remove files; a file that is already gone is not an error."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# -- blocking calls, sleeping, concurrency -----------------------------------------


async def ato_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in a worker thread and await its result."""
    import asyncio

    return await asyncio.to_thread(function, *args, **kwargs)


def to_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a blocking function in the calling thread (the sync face blocks)."""
    return function(*args, **kwargs)


async def asleep(delay: float) -> None:
    """Sleep without blocking the loop."""
    import asyncio

    await asyncio.sleep(delay)


sleep = time.sleep
"""Sleep, blocking the thread."""


async def agather(*awaitables: Awaitable[T]) -> list[T]:
    """Await several operations concurrently, returning results in order.

    The operations are owned: when one fails (or the caller is cancelled)
    the others are cancelled and awaited before the error propagates, so
    none keeps running unobserved.
    """
    import asyncio

    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def gather(*results: T) -> list[T]:
    """Return results already computed one after the other, as a list."""
    return list(results)


Semaphore = threading.BoundedSemaphore
"""Bounds concurrent threads."""

TimeoutError = TimeoutError
"""What a blocking operation raises when it times out."""


AFACE: Literal["async"] = "async"
"""The registry's name for the face the code runs in (`proxystore.registry.find`)."""

FACE: Literal["sync"] = "sync"
"""The registry's name for the face the code runs in (`proxystore.registry.find`)."""


def acurrent_loop() -> asyncio.AbstractEventLoop:
    """The running event loop: per-loop state (client pools) is keyed by it."""
    import asyncio

    return asyncio.get_running_loop()


def current_loop() -> asyncio.AbstractEventLoop | None:
    """None: the sync face runs on no loop, so per-loop state has one entry."""
    return None


class AWaiter:
    """A one-shot wake-up that any thread may trigger, awaited in this loop.

    Made in the task that waits (it binds the running loop); `wake` is safe
    from any thread and after the wait ended.
    """

    def __init__(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Wake the waiting task (thread-safe; a closed loop is ignored)."""
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float | None) -> bool:
        """Wait for `wake`; return False if `timeout` seconds passed first."""
        import asyncio

        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


class Waiter:
    """A one-shot wake-up that any thread may trigger, waited on by this thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        """Wake the waiting thread."""
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        """Wait for `wake`; return False if `timeout` seconds passed first."""
        return self._event.wait(timeout)
