"""Default limits and the connection guard, on real sockets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from proxystore.endpoint.limits import (
    ConnectionGuard,
    RateLimitedLog,
    default_max_memory,
    default_max_spill,
    physical_memory,
)

pytestmark = pytest.mark.timeout(30)


def test_default_limits_follow_the_host(tmp_path: Path) -> None:
    total = physical_memory()
    assert total is not None
    assert total > 0
    assert default_max_memory() == total // 4
    assert 0 < default_max_spill(str(tmp_path)) < 2**62


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    return reader, writer


async def test_guard_evicts_the_oldest_idle_connection_then_refuses_when_all_busy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = ConnectionGuard(2, RateLimitedLog(logging.getLogger("test.guard")))
    transports: list[asyncio.BaseTransport] = []

    def factory() -> asyncio.Protocol:
        protocol = _Echo()
        original = protocol.connection_made

        def made(transport: asyncio.BaseTransport) -> None:
            transports.append(transport)
            original(transport)

        protocol.connection_made = made  # type: ignore[method-assign]
        return protocol

    server = await asyncio.get_running_loop().create_server(
        guard.wrap(factory), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    opened = []
    try:
        with caplog.at_level(logging.WARNING, logger="test.guard"):
            opened.append(await _connect(port))
            opened.append(await _connect(port))
            opened.append(await _connect(port))
            # The first (oldest, idle) one was closed to admit the third.
            assert await asyncio.wait_for(opened[0][0].read(), 5) == b""
            assert guard.evicted == 1
            assert guard.open_connections == 2
            for transport in transports[1:]:
                guard.busy(transport)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert guard.refused == 1
            guard.idle(transports[1])
            opened.append(await _connect(port))
        assert "refused a connection" in caplog.text
        assert "closed an idle connection" in caplog.text
    finally:
        for _, writer in opened:
            writer.close()
        server.close()
        await server.wait_closed()
