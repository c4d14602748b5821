from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxystore.endpoint.identity import Identity
from proxystore.exceptions import (
    LimitExceededError,
    PeerConnectionError,
    PeerError,
    StoreTimeoutError,
)
from proxystore.p2p.fastpath import (
    LENGTH,
    TOKEN_SIZE,
    FastPathServer,
    FastPathTicket,
    client_context,
    fetch,
    server_context,
)

WAIT = 10.0
HOLDER = Identity.generate()
FETCHER = Identity.generate()

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server() -> AsyncIterator[FastPathServer]:
    server = FastPathServer(HOLDER, "127.0.0.1", timeout=WAIT)
    await server.start()
    yield server
    await server.close()


async def get(
    ticket: FastPathTicket,
    identity: Identity = FETCHER,
    peer_public: bytes = HOLDER.public_bytes,
) -> bytearray:
    return await asyncio.wait_for(
        fetch(ticket, identity=identity, peer_public=peer_public, timeout=WAIT),
        2 * WAIT,
    )


@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 7])
async def test_fetch_returns_the_offered_body(
    server: FastPathServer, size: int
) -> None:
    body = os.urandom(size)
    ticket = server.offer(body, FETCHER.public_bytes)
    assert await get(ticket) == body
    assert server.served == 1
    assert server.pending_offers == 0


async def test_token_is_single_use(server: FastPathServer) -> None:
    ticket = server.offer(b"secret bytes", FETCHER.public_bytes)
    assert await get(ticket) == b"secret bytes"
    with pytest.raises(PeerConnectionError, match="token refused"):
        await get(ticket)


async def test_bogus_token_is_refused(server: FastPathServer) -> None:
    real = server.offer(b"payload", FETCHER.public_bytes)
    bogus = dataclasses.replace(real, token=secrets.token_hex(TOKEN_SIZE))
    with pytest.raises(PeerConnectionError, match="token refused"):
        await get(bogus)
    # A refused guess does not burn the real token.
    assert await get(real) == b"payload"


async def test_fetcher_without_the_offered_identity_is_refused(
    server: FastPathServer,
) -> None:
    ticket = server.offer(b"for FETCHER only", FETCHER.public_bytes)
    with pytest.raises(PeerConnectionError, match="token refused"):
        await get(ticket, identity=Identity.generate())
    assert server.served == 0
    # The stolen ticket attempt does not burn it for the rightful peer.
    assert await get(ticket) == b"for FETCHER only"


async def test_listener_without_the_expected_identity_is_refused() -> None:
    impostor = FastPathServer(Identity.generate(), "127.0.0.1", timeout=WAIT)
    await impostor.start()
    try:
        ticket = impostor.offer(b"forged body", FETCHER.public_bytes)
        with pytest.raises(PeerConnectionError, match="expected peer's identity"):
            await get(ticket)
        # The token never reached the impostor.
        assert impostor.pending_offers == 1
    finally:
        await impostor.close()


async def test_fetch_never_pins_to_an_empty_key(server: FastPathServer) -> None:
    ticket = server.offer(b"payload", FETCHER.public_bytes)
    with pytest.raises(PeerConnectionError, match="no identity key"):
        await get(ticket, peer_public=b"")
    assert server.pending_offers == 1


async def test_plaintext_client_is_refused(server: FastPathServer) -> None:
    ticket = server.offer(b"payload", FETCHER.public_bytes)
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    data = b""
    try:
        writer.write(bytes.fromhex(ticket.token) + bytes(64))
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), WAIT)
    except OSError:
        pass  # the listener's TLS alert and reset may come at any point
    assert b"payload" not in data
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    assert server.pending_offers == 1


async def _relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: bytearray
) -> None:
    try:
        while chunk := await reader.read(1 << 16):
            seen += chunk
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


async def test_bytes_on_the_wire_are_encrypted(server: FastPathServer) -> None:
    marker = b"PLAINTEXT-MARKER-" + secrets.token_hex(8).encode()
    body = marker * 4096
    upstream_host, upstream_port = server.address
    seen = bytearray()
    relays: list[asyncio.Task[None]] = []

    async def proxy(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        reader, writer = await asyncio.open_connection(upstream_host, upstream_port)
        relays.append(asyncio.create_task(_relay(client_reader, writer, seen)))
        relays.append(asyncio.create_task(_relay(reader, client_writer, seen)))

    listener = await asyncio.start_server(proxy, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        ticket = dataclasses.replace(
            server.offer(body, FETCHER.public_bytes), port=port
        )
        assert await get(ticket) == body
        await asyncio.wait_for(asyncio.gather(*relays), WAIT)
    assert len(seen) > len(body)
    assert marker not in seen
    assert bytes.fromhex(ticket.token) not in seen


async def test_expired_and_withdrawn_tokens_are_refused(server: FastPathServer) -> None:
    expired = server.offer(b"a", FETCHER.public_bytes, ttl=0.0)
    withdrawn = server.offer(b"b", FETCHER.public_bytes)
    server.withdraw(withdrawn)
    for ticket in (expired, withdrawn):
        with pytest.raises(PeerConnectionError, match="token refused"):
            await get(ticket)


async def test_reclaim_returns_the_body_once(server: FastPathServer) -> None:
    ticket = server.offer(b"body", FETCHER.public_bytes)
    reclaimed = server.reclaim(ticket.token)
    assert reclaimed is not None
    assert bytes(reclaimed) == b"body"
    assert server.reclaim(ticket.token) is None
    assert server.reclaim("not hex") is None
    with pytest.raises(PeerConnectionError, match="token refused"):
        await get(ticket)


@contextlib.asynccontextmanager
async def _ten_of_a_thousand(
    then: Callable[[asyncio.StreamReader], Awaitable[None]] | None = None,
) -> AsyncIterator[FastPathTicket]:
    """A TLS listener that announces 1000 bytes and sends 10, then `then`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Closed whatever the client did first: on Python 3.10 a TLS
        # transport left open warns (unclosed transport) when collected.
        try:
            await reader.readexactly(TOKEN_SIZE + 64)
            writer.write(LENGTH.pack(1000) + b"x" * 10)
            await writer.drain()
            if then is not None:
                await then(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    listener = await asyncio.start_server(
        serve, "127.0.0.1", 0, ssl=server_context(HOLDER)
    )
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        yield FastPathTicket("127.0.0.1", port, "00" * TOKEN_SIZE, 1000)


async def test_stream_cut_mid_transfer() -> None:
    async with _ten_of_a_thousand() as ticket:
        with pytest.raises(PeerConnectionError, match="after 10 of 1000 bytes"):
            await get(ticket)


async def test_unreachable_listener(server: FastPathServer) -> None:
    ticket = server.offer(b"x", FETCHER.public_bytes)
    await server.close()
    with pytest.raises(PeerConnectionError, match="cannot connect"):
        await get(ticket)


def test_ticket_json_round_trip_and_validation() -> None:
    ticket = FastPathTicket("127.0.0.1", 1234, "ab" * TOKEN_SIZE, 10)
    assert FastPathTicket.from_json(ticket.to_json()) == ticket
    for bad in [
        None,
        {},
        {**ticket.to_json(), "port": 0},
        {**ticket.to_json(), "token": "ab"},
        {**ticket.to_json(), "token": "zz" * TOKEN_SIZE},
        {**ticket.to_json(), "host": "h" * 256},
        {**ticket.to_json(), "length": -1},
        {**ticket.to_json(), "extra": "x" * 10_000},
    ]:
        with pytest.raises(PeerError):
            FastPathTicket.from_json(bad)
    with pytest.raises(LimitExceededError, match="max_object_size of 9 bytes"):
        FastPathTicket.from_json(ticket.to_json(), max_length=9)


async def _tls_client(
    server: FastPathServer,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that completes the TLS handshake and sends nothing more."""
    host, port = server.address
    return await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=client_context()), WAIT
    )


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await asyncio.wait_for(writer.wait_closed(), WAIT)


async def test_close_ends_a_connection_waiting_for_its_hello() -> None:
    server = FastPathServer(HOLDER, "127.0.0.1", timeout=WAIT)
    await server.start()
    reader, writer = await _tls_client(server)
    try:
        # Its worker thread waits (up to WAIT) for the hello on the TLS
        # socket; close shuts that socket down instead of leaving the
        # thread (and the connection) to its timeout.
        start = time.monotonic()
        await server.close()
        with contextlib.suppress(OSError):
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        assert time.monotonic() - start < WAIT / 2
    finally:
        await _close(writer)


async def test_client_gone_before_its_hello_leaves_no_open_socket(
    server: FastPathServer,
) -> None:
    gc.collect()
    _, writer = await _tls_client(server)
    await _close(writer)
    deadline = time.monotonic() + WAIT
    while server._sockets or server._connections:
        assert time.monotonic() < deadline, "the server never ended the connection"
        await asyncio.sleep(0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert [str(w.message) for w in caught] == []


async def test_cancelled_fetch_stops_receiving_at_once() -> None:
    gone = asyncio.Event()
    started = asyncio.Event()

    async def stall(reader: asyncio.StreamReader) -> None:
        started.set()
        # Nothing more is sent: the fetch waits (up to WAIT) for bytes.
        with contextlib.suppress(OSError):
            await reader.read()
        gone.set()

    async with _ten_of_a_thousand(stall) as ticket:
        fetching = asyncio.create_task(get(ticket))
        await asyncio.wait_for(started.wait(), WAIT)
        start = time.monotonic()
        fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetching
        # Its thread let go of the connection, not at its own timeout.
        await asyncio.wait_for(gone.wait(), WAIT)
        assert time.monotonic() - start < WAIT / 2


async def test_deadline_error_quotes_the_callers_deadline() -> None:
    async def stall(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            await reader.read()

    loop = asyncio.get_running_loop()
    # The caller's request began earlier (it waited for the peer's answer
    # that carried the ticket) and gave 0.3 s in all.
    began = loop.time() - 0.1
    async with _ten_of_a_thousand(stall) as ticket:
        with pytest.raises(
            StoreTimeoutError,
            match=r"total deadline of 0\.3s with 10 of 1000 bytes moved",
        ):
            await asyncio.wait_for(
                fetch(
                    ticket,
                    identity=FETCHER,
                    peer_public=HOLDER.public_bytes,
                    timeout=WAIT,
                    deadline=began + 0.3,
                    began=began,
                ),
                2 * WAIT,
            )


async def test_connections_beyond_the_cap_are_closed_unserved() -> None:
    server = FastPathServer(HOLDER, "127.0.0.1", timeout=WAIT, max_connections=3)
    await server.start()
    held = [await _tls_client(server) for _ in range(3)]
    try:
        # Each held connection is a worker thread waiting for its hello.
        assert len(server._connections) == 3
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*server.address), WAIT
        )
        with contextlib.suppress(OSError):
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        await _close(writer)
        assert server.refused == 1
        ticket = server.offer(b"still served", FETCHER.public_bytes)
        for _, held_writer in held:
            await _close(held_writer)
        held = []
        deadline = time.monotonic() + WAIT
        while server._connections:
            assert time.monotonic() < deadline, "held connections never ended"
            await asyncio.sleep(0.01)
        assert await get(ticket) == b"still served"
    finally:
        for _, held_writer in held:
            await _close(held_writer)
        await server.close()


async def test_refused_tokens_log_a_bounded_number_of_lines(
    server: FastPathServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="proxystore.p2p.fastpath")
    real = server.offer(b"payload", FETCHER.public_bytes)
    for _ in range(10):
        bogus = dataclasses.replace(real, token=secrets.token_hex(TOKEN_SIZE))
        with pytest.raises(PeerConnectionError, match="token refused"):
            await get(bogus)
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1


@pytest.mark.parametrize("cap", [0, -1, 1.5])
def test_connection_cap_must_be_a_positive_integer(cap: object) -> None:
    with pytest.raises(PeerError, match="max_connections"):
        FastPathServer(HOLDER, "127.0.0.1", max_connections=cap)  # type: ignore[arg-type]
