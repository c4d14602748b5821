"""Per-operation counters kept by every store, and per key with ``stats=True``."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

DEFAULT_STATS_KEYS = 4096
"""Keys whose per-key stats a store keeps (least recently used dropped first)."""


@dataclass(slots=True)
class OperationMetrics:
    """What one kind of operation (``get``, ``set``...) has done so far.

    Also answers to ProxyStore 0.4's ``TimeStats`` names (`calls`,
    `avg_time_ms`, `min_time_ms`, `max_time_ms`).

    Attributes:
        count: How many times it ran.
        total_time: Seconds spent in it, summed.
        bytes: Payload bytes moved by it, summed.
        min_time: Seconds of the fastest call (0 before the first call).
        max_time: Seconds of the slowest call.
    """

    count: int = 0
    total_time: float = 0.0
    bytes: int = 0
    min_time: float = 0.0
    max_time: float = 0.0

    @property
    def mean_time(self) -> float:
        """Average seconds per call (0 before the first call)."""
        return self.total_time / self.count if self.count else 0.0

    @property
    def calls(self) -> int:
        """0.4's name for `count`."""
        return self.count

    @property
    def avg_time_ms(self) -> float:
        """0.4's average milliseconds per call."""
        return self.mean_time * 1000

    @property
    def min_time_ms(self) -> float:
        """0.4's fastest call in milliseconds."""
        return self.min_time * 1000

    @property
    def max_time_ms(self) -> float:
        """0.4's slowest call in milliseconds."""
        return self.max_time * 1000

    def add(self, elapsed: float, nbytes: int) -> None:
        """Count one call (the caller holds the lock)."""
        if self.count == 0 or elapsed < self.min_time:
            self.min_time = elapsed
        if elapsed > self.max_time:
            self.max_time = elapsed
        self.count += 1
        self.total_time += elapsed
        self.bytes += nbytes


@dataclass
class StoreMetrics:
    """The metrics of one store, keyed by operation name.

    Operations: ``set``, ``get`` (a fetch from the store), ``cache_hit``,
    ``exists``, ``evict``, ``resolve`` (a proxy's resolution), and the
    batch ones. Read them as ``store.metrics["get"].count``.

    Attributes:
        max_keys: How many keys to keep per-key metrics for (0: none);
            the least recently recorded key is dropped first, so memory
            stays bounded however many objects pass through.
    """

    operations: dict[str, OperationMetrics] = field(default_factory=dict)
    max_keys: int = 0
    _keys: OrderedDict[Any, dict[str, OperationMetrics]] = field(
        default_factory=OrderedDict, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self, operation: str, elapsed: float, nbytes: int = 0, key: Any = None
    ) -> None:
        """Add one call of `operation` that took `elapsed` seconds.

        Args:
            operation: The operation's name.
            elapsed: Its duration in seconds.
            nbytes: Payload bytes it moved.
            key: The object's key, for per-key metrics (when kept).
        """
        metrics = self.operations.get(operation)
        if metrics is None:
            metrics = self.operations.setdefault(operation, OperationMetrics())
        with self._lock:
            metrics.add(elapsed, nbytes)
            if key is not None and self.max_keys:
                self._record_key(key, operation, elapsed, nbytes)

    def _record_key(
        self, key: Any, operation: str, elapsed: float, nbytes: int
    ) -> None:
        keys = self._keys
        per_key = keys.get(key)
        if per_key is None:
            per_key = keys[key] = {}
            while len(keys) > self.max_keys:
                keys.popitem(last=False)
        else:
            keys.move_to_end(key)
        per_key.setdefault(operation, OperationMetrics()).add(elapsed, nbytes)

    def for_key(self, key: Any) -> dict[str, OperationMetrics]:
        """Return a copy of the metrics recorded for one key ({} if none)."""
        with self._lock:
            per_key = self._keys.get(key, {})
            return {name: copy.copy(ops) for name, ops in per_key.items()}

    def __getitem__(self, operation: str) -> OperationMetrics:
        return self.operations.get(operation) or OperationMetrics()

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self.operations.clear()
            self._keys.clear()
