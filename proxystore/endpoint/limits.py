"""Resource limits of a running endpoint and rate-limited logging of refusals.

- `default_max_memory` and `default_max_spill`: what ``max_memory`` and
  ``max_spill`` mean when the configuration leaves them unset.
- `RateLimitedLog` (from `proxystore._ratelimit`): at most one log line per
  kind of refusal per interval, so nobody can flood the endpoint's log by
  sending bad requests.
- `ConnectionGuard`: caps open HTTP connections. At the cap, a new connection
  closes the oldest *idle* one (connected but not inside an authenticated
  request), so sockets opened and left idle cannot lock legitimate clients
  out; only when every connection is busy is the new one refused.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from proxystore._ratelimit import RateLimitedLog

MEMORY_FRACTION = 4
"""Default ``max_memory`` is 1/MEMORY_FRACTION of physical memory."""
SPILL_FRACTION = 2
"""Default ``max_spill`` is 1/SPILL_FRACTION of the spill file system's free space."""
FALLBACK_MAX_MEMORY = 1024**3
"""``max_memory`` when physical memory cannot be read."""
DEFAULT_KEEPALIVE_TIMEOUT = 15.0
"""Seconds an HTTP connection may stay idle (or send an incomplete request)."""

__all__ = [
    "ConnectionGuard",
    "RateLimitedLog",
    "default_max_memory",
    "default_max_spill",
    "physical_memory",
]


_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def physical_memory() -> int | None:
    """Return the bytes of memory this process may use, if the OS says.

    Physical memory (``os.sysconf``), or the memory limit of the process's
    cgroup when that is lower (in a container, the host's memory is not
    what the endpoint may use).
    """
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    if pages <= 0 or page_size <= 0:
        return None
    total = int(pages * page_size)
    for path in _CGROUP_LIMITS:
        try:
            limit = int(path.read_text().strip())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        if 0 < limit < total:
            total = limit
    return total


def default_max_memory() -> int:
    """Return 1/4 of physical memory (1 GiB when it cannot be read)."""
    total = physical_memory()
    return total // MEMORY_FRACTION if total else FALLBACK_MAX_MEMORY


def default_max_spill(spill_dir: str | Path) -> int:
    """Return half the free space of the file system holding ``spill_dir`` now."""
    directory = Path(spill_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(directory).free // SPILL_FRACTION


class ConnectionGuard:
    """Caps the connections of a server.

    Args:
        max_connections: Most connections open at once.
        log: Where evictions and refusals are reported (rate-limited).

    Wrap the server's protocol factory with `wrap`; request handlers call
    `busy` / `idle` around the work of a request, keyed by the connection's
    transport.
    """

    def __init__(self, max_connections: int, log: RateLimitedLog) -> None:
        self.max_connections = max_connections
        self._log = log
        # Insertion order is connection age: the first idle one is the oldest.
        self._open: dict[asyncio.BaseTransport, None] = {}
        self._busy: collections.Counter[asyncio.BaseTransport] = collections.Counter()
        self.evicted = 0
        self.refused = 0

    @property
    def open_connections(self) -> int:
        """Number of connections admitted and not yet closed."""
        return len(self._open)

    def wrap(
        self, factory: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """Return a protocol factory admitting ``factory``'s connections."""
        return lambda: _GuardedProtocol(self, factory())

    def busy(self, transport: asyncio.BaseTransport | None) -> None:
        """Mark the connection as serving a request (never evicted meanwhile)."""
        if transport is not None:
            self._busy[transport] += 1

    def idle(self, transport: asyncio.BaseTransport | None) -> None:
        """Mark the end of a request started with `busy`."""
        if transport is not None:
            self._busy[transport] -= 1
            if self._busy[transport] <= 0:
                del self._busy[transport]

    def _admit(self, transport: asyncio.BaseTransport) -> bool:
        if len(self._open) >= self.max_connections:
            oldest_idle = next((t for t in self._open if t not in self._busy), None)
            if oldest_idle is None:
                self.refused += 1
                self._log.warning(
                    "refused",
                    "refused a connection from %s: all %d connections are busy "
                    "(max_connections)",
                    _peer(transport),
                    self.max_connections,
                )
                return False
            self.evicted += 1
            self._log.warning(
                "evicted",
                "closed an idle connection from %s to admit one from %s "
                "(max_connections %d reached)",
                _peer(oldest_idle),
                _peer(transport),
                self.max_connections,
            )
            self._forget(oldest_idle)
            oldest_idle.close()
        self._open[transport] = None
        return True

    def _forget(self, transport: asyncio.BaseTransport) -> None:
        self._open.pop(transport, None)
        self._busy.pop(transport, None)


class _GuardedProtocol(asyncio.Protocol):
    """Passes every event to the wrapped protocol once the guard admits it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._guard._admit(transport):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._admitted = True
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._guard._forget(self._transport)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
