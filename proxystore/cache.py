"""A small thread-safe LRU cache of deserialized objects and their versions."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

K = TypeVar("K")

MISSING: Any = object()
"""Returned by `LRUCache.get` when the key is not cached."""


class LRUCache(Generic[K]):
    """Keep the `maxsize` most recently used objects, each with its version.

    The version is the store's version of the object when it was fetched
    (see `Store.aget(strict=True)`); None when unknown.

    Safe to share between threads without a lock: each step is one atomic
    `OrderedDict` operation, and a step that loses a race with another thread
    (the entry it meant to touch is already gone) is simply skipped.

    Args:
        maxsize: How many objects to keep; 0 disables the cache.
    """

    __slots__ = ("_data", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if maxsize < 0:
            raise ValueError(f"cache size must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[K, tuple[Any, int | None]] = OrderedDict()

    def get(self, key: K) -> Any:
        """Return the cached object or `MISSING`, marking it recently used."""
        data = self._data
        if not data:
            return MISSING
        entry = data.get(key)
        if entry is None:
            return MISSING
        try:  # noqa: SIM105 (contextlib.suppress costs more than the rest)
            data.move_to_end(key)
        except KeyError:
            pass
        return entry[0]

    def entry(self, key: K) -> tuple[Any, int | None] | None:
        """Return ``(object, version)`` (version None: unknown), or None if not cached.

        Does not mark the entry recently used.
        """
        return self._data.get(key)

    def put(self, key: K, value: Any, version: int | None = None) -> None:
        """Cache an object, dropping the least recently used one when full."""
        if self.maxsize == 0:
            return
        data = self._data
        data[key] = (value, version)
        # try/except rather than contextlib.suppress: this runs on every
        # fetch, and the context manager costs more than the rest.
        try:
            data.move_to_end(key)
            while len(data) > self.maxsize:
                data.popitem(last=False)
        except KeyError:
            pass

    def pop(self, key: K) -> None:
        """Forget a key if it is cached."""
        if self._data:
            self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()
