from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
from collections.abc import AsyncIterator

import pytest

from proxystore.exceptions import PeerConnectionError, PeerError
from proxystore.p2p.fastpath import (
    LENGTH,
    TOKEN_SIZE,
    FastPathServer,
    FastPathTicket,
    fetch,
)

WAIT = 10.0

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server() -> AsyncIterator[FastPathServer]:
    server = FastPathServer("127.0.0.1", timeout=WAIT)
    await server.start()
    yield server
    await server.close()


@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 7])
async def test_fetch_returns_the_offered_body(
    server: FastPathServer, size: int
) -> None:

    body = os.urandom(size)
    ticket = server.offer(body)
    assert await asyncio.wait_for(fetch(ticket, timeout=WAIT), WAIT) == body
    assert server.served == 1
    assert server.pending_offers == 0


async def test_token_is_single_use(server: FastPathServer) -> None:
    ticket = server.offer(b"secret bytes")
    assert await fetch(ticket, timeout=WAIT) == b"secret bytes"
    with pytest.raises(PeerConnectionError, match="token refused"):
        await fetch(ticket, timeout=WAIT)


async def test_bogus_token_is_refused(server: FastPathServer) -> None:
    real = server.offer(b"payload")
    bogus = dataclasses.replace(real, token=secrets.token_hex(TOKEN_SIZE))
    with pytest.raises(PeerConnectionError, match="token refused"):
        await fetch(bogus, timeout=WAIT)
    # A refused guess does not burn the real token.
    assert await fetch(real, timeout=WAIT) == b"payload"


async def test_short_token_is_refused(server: FastPathServer) -> None:
    server.offer(b"payload")
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"short")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), WAIT) == b""
    writer.close()
    await writer.wait_closed()
    assert server.pending_offers == 1


async def test_expired_and_withdrawn_tokens_are_refused(server: FastPathServer) -> None:
    expired = server.offer(b"a", ttl=0.0)
    withdrawn = server.offer(b"b")
    server.withdraw(withdrawn)
    for ticket in (expired, withdrawn):
        with pytest.raises(PeerConnectionError, match="token refused"):
            await fetch(ticket, timeout=WAIT)


async def test_reclaim_returns_the_body_once(server: FastPathServer) -> None:
    ticket = server.offer(b"body")
    reclaimed = server.reclaim(ticket.token)
    assert reclaimed is not None
    assert bytes(reclaimed) == b"body"
    assert server.reclaim(ticket.token) is None
    assert server.reclaim("not hex") is None
    with pytest.raises(PeerConnectionError, match="token refused"):
        await fetch(ticket, timeout=WAIT)


async def test_stream_cut_mid_transfer() -> None:
    async def truncating(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readexactly(TOKEN_SIZE)
        writer.write(LENGTH.pack(1000) + b"x" * 10)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    listener = await asyncio.start_server(truncating, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        ticket = FastPathTicket("127.0.0.1", port, "00" * TOKEN_SIZE, 1000)
        with pytest.raises(PeerConnectionError, match="after 10 of 1000 bytes"):
            await fetch(ticket, timeout=WAIT)


async def test_unreachable_listener(server: FastPathServer) -> None:
    ticket = server.offer(b"x")
    await server.close()
    with pytest.raises(PeerConnectionError, match="cannot connect"):
        await fetch(ticket, timeout=WAIT)


def test_ticket_json_round_trip_and_validation() -> None:
    ticket = FastPathTicket("127.0.0.1", 1234, "ab" * TOKEN_SIZE, 10)
    assert FastPathTicket.from_json(ticket.to_json()) == ticket
    for bad in [
        None,
        {},
        {**ticket.to_json(), "port": 0},
        {**ticket.to_json(), "token": "ab"},
    ]:
        with pytest.raises(PeerError):
            FastPathTicket.from_json(bad)
