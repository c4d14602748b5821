"""Per-operation counters kept by every store."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(slots=True)
class OperationMetrics:
    """What one kind of operation (``get``, ``set``...) has done so far.

    Attributes:
        count: How many times it ran.
        total_time: Seconds spent in it, summed.
        bytes: Payload bytes moved by it, summed.
    """

    count: int = 0
    total_time: float = 0.0
    bytes: int = 0

    @property
    def mean_time(self) -> float:
        """Average seconds per call (0 before the first call)."""
        return self.total_time / self.count if self.count else 0.0


@dataclass
class StoreMetrics:
    """The metrics of one store, keyed by operation name.

    Operations: ``set``, ``get`` (a fetch from the store), ``cache_hit``,
    ``exists``, ``evict``. Read them as ``store.metrics["get"].count``.
    """

    operations: dict[str, OperationMetrics] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, operation: str, elapsed: float, nbytes: int = 0) -> None:
        """Add one call of `operation` that took `elapsed` seconds."""
        metrics = self.operations.get(operation)
        if metrics is None:
            metrics = self.operations.setdefault(operation, OperationMetrics())
        lock = self._lock
        lock.acquire()
        metrics.count += 1
        metrics.total_time += elapsed
        metrics.bytes += nbytes
        lock.release()

    def __getitem__(self, operation: str) -> OperationMetrics:
        return self.operations.get(operation) or OperationMetrics()

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self.operations.clear()
