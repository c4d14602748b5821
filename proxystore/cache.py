"""A small thread-safe LRU cache of deserialized objects."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Generic, TypeVar

K = TypeVar("K")

MISSING: Any = object()
"""Returned by `LRUCache.get` when the key is not cached."""


class LRUCache(Generic[K]):
    """Keep the `maxsize` most recently used objects.

    Args:
        maxsize: How many objects to keep; 0 disables the cache.
    """

    __slots__ = ("_data", "_lock", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if maxsize < 0:
            raise ValueError(f"cache size must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[K, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> Any:
        """Return the cached object or `MISSING`, marking it recently used."""
        if not self._data:
            return MISSING
        with self._lock:
            value = self._data.get(key, MISSING)
            if value is not MISSING:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: Any) -> None:
        """Cache an object, dropping the least recently used one when full."""
        if self.maxsize == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            if len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget a key if it is cached."""
        if self._data:
            with self._lock:
                self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()
