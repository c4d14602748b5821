"""Factories: picklable callables that produce a proxy's target.

A `Proxy` calls its factory once, on first use. Any zero-argument callable
works; the classes here add `resolve()`, an awaitable `aresolve()` so async
code can resolve without blocking its event loop, and ProxyStore 0.4's
blocking `resolve_async()`, which starts resolving in the background where a
factory can (a store's factory does) and otherwise does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Factory(Generic[T]):
    """Base class of factories.

    Subclasses implement `resolve`; `aresolve` defaults to running `resolve`
    in a worker thread. Factories must be picklable: they travel inside
    pickled proxies.
    """

    def __call__(self) -> T:
        """Return the target (same as `resolve`)."""
        return self.resolve()

    def resolve(self) -> T:
        """Produce the target object."""
        raise NotImplementedError

    async def aresolve(self) -> T:
        """Produce the target object without blocking the running event loop."""
        import asyncio  # the sync face never needs it

        return await asyncio.to_thread(self.resolve)

    def resolve_async(self) -> None:
        """Start producing the target in the background, if this factory can.

        A no-op here (as in ProxyStore 0.4); `StoreFactory` starts a fetch.
        Never a coroutine: async code awaits `aresolve`.
        """


class SimpleFactory(Factory[T]):
    """A factory that returns an object it holds (and pickles with it).

    Args:
        obj: The object to return.
    """

    def __init__(self, obj: T) -> None:
        self._obj = obj

    def resolve(self) -> T:
        """Return the held object."""
        return self._obj

    async def aresolve(self) -> T:
        """Return the held object."""
        return self._obj

    def __repr__(self) -> str:
        return f"SimpleFactory({type(self._obj).__name__})"


class LambdaFactory(Factory[T]):
    """A factory that calls a function with fixed arguments.

    Args:
        function: Called as ``function(*args, **kwargs)`` to produce the
            target. May be a coroutine function, in which case `resolve`
            runs it to completion in a fresh event loop.
        args: Positional arguments for `function`.
        kwargs: Keyword arguments for `function`.
    """

    def __init__(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._function = function
        self._args = args
        self._kwargs = kwargs

    def resolve(self) -> T:
        """Call the function and return its result."""
        result = self._function(*self._args, **self._kwargs)
        if isinstance(result, Coroutine):
            import asyncio

            result = asyncio.run(result)
        return result  # type: ignore[no-any-return]

    async def aresolve(self) -> T:
        """Call the function (awaiting it if it is a coroutine function)."""
        import asyncio

        if asyncio.iscoroutinefunction(self._function):
            result = await self._function(*self._args, **self._kwargs)
            return result  # type: ignore[no-any-return]
        return await asyncio.to_thread(self.resolve)

    def __repr__(self) -> str:
        name = getattr(self._function, "__qualname__", repr(self._function))
        return f"LambdaFactory({name})"
