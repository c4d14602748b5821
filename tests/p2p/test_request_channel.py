"""Request channels: peer requests over TLS streams to the fast-path listener.

Real peer managers (signaling server, WebRTC, fast-path listeners on
loopback) and real sockets; the cuts are real socket shutdowns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from proxystore.endpoint.identity import Identity
from proxystore.exceptions import PeerConnectionError, StoreTimeoutError
from proxystore.p2p import PeerManager, PeerMessage
from proxystore.p2p.channel import RequestChannel, dial_channel
from proxystore.p2p.connection import PeerConnection
from proxystore.p2p.fastpath import (
    CHANNEL_PREAMBLE,
    HELLO_SIZE,
    FastPathServer,
    FastPathTicket,
    client_context,
    fetch,
)
from proxystore.p2p.framing import DEFAULT_MAX_FRAME_SIZE
from proxystore.p2p.signaling import SignalingServer

WAIT = 10.0
ManagerFactory = Callable[..., Awaitable[PeerManager]]

pytestmark = pytest.mark.timeout(60)

HOLDER = Identity.generate()
DIALER = Identity.generate()


def _connection(manager: PeerManager, peer: str) -> PeerConnection:
    return manager._connections[peer]


async def _until_channel(a: PeerManager, b: PeerManager) -> None:
    """Send requests from a to b until one went over a request channel.

    The channel opens in the background after the first request; requests
    keep going (over the data channel) until it is used, for up to WAIT.
    """
    deadline = time.monotonic() + WAIT
    i = 0
    while time.monotonic() < deadline:
        reply = await asyncio.wait_for(
            a.request(b.uuid, PeerMessage({"n": i}, b"x" * 1000)), WAIT
        )
        assert bytes(reply.body) == b"x" * 1000
        if a.peer_stats()[b.uuid]["requests_over_channel"]:
            return
        i += 1
    raise AssertionError(f"no request channel after {i} requests in {WAIT}s")


async def test_requests_go_over_the_channel_both_ways(
    pair: tuple[PeerManager, PeerManager],
) -> None:
    a, b = pair
    await _until_channel(a, b)
    stats_a, stats_b = a.peer_stats()[b.uuid], b.peer_stats()[a.uuid]
    assert stats_a["request_channel"]
    assert stats_b["request_channel"]
    assert stats_b["served_over_channel"] == stats_a["requests_over_channel"] == 1
    # The first request went over the data channel while the channel opened.
    assert stats_a["requests_over_data_channel"] >= 1
    # b's requests take the channel a dialed: no second channel.
    for i in range(3):
        reply = await asyncio.wait_for(a.request(a.uuid, PeerMessage({})), WAIT)
        reply = await asyncio.wait_for(b.request(a.uuid, PeerMessage({"i": i})), WAIT)
        assert reply.header["from"] == b.uuid
    stats_a, stats_b = a.peer_stats()[b.uuid], b.peer_stats()[a.uuid]
    assert stats_b["requests_over_channel"] == 3
    assert stats_a["served_over_channel"] == 3
    assert stats_a["channels_opened"] == stats_b["channels_opened"] == 1
    # The token was used: nothing left registered.
    for manager in (a, b):
        assert manager.fast_path_server is not None
        assert manager.fast_path_server.pending_channel_offers == 0


async def test_large_bodies_still_take_the_fast_path(
    pair: tuple[PeerManager, PeerManager],
) -> None:
    a, b = pair
    await _until_channel(a, b)
    body = os.urandom(3 * 1024 * 1024)
    reply = await asyncio.wait_for(a.request(b.uuid, PeerMessage({}, body)), WAIT)
    assert bytes(reply.body) == body
    assert a.fast_path_server is not None
    assert b.fast_path_server is not None
    # One body each way over the fast path, the messages over the channel.
    assert (a.fast_path_server.served, b.fast_path_server.served) == (1, 1)
    assert a.peer_stats()[b.uuid]["requests_over_channel"] == 2


async def test_no_channel_without_fast_path(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    a = await make_manager(signaling.url)
    b = await make_manager(signaling.url, fast_path=False)
    for i in range(5):
        await asyncio.wait_for(a.request(b.uuid, PeerMessage({"i": i})), WAIT)
    stats = a.peer_stats()[b.uuid]
    assert stats["request_channel"] is False
    assert stats["requests_over_data_channel"] == 5


async def test_channel_cut_mid_run_loses_no_request(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    release = asyncio.Event()
    all_held = asyncio.Event()
    held = 0
    seen: list[int] = []

    async def handler(peer: str, request: PeerMessage) -> PeerMessage:
        nonlocal held
        if request.header.get("hold"):
            held += 1
            if held == 5:
                all_held.set()
            await release.wait()
        seen.append(request.header["n"])
        return PeerMessage({"n": request.header["n"]}, request.body)

    a = await make_manager(signaling.url)
    b = await make_manager(signaling.url, handler=handler)
    await _until_channel(a, b)
    # Requests in flight on the channel (their handler waits), then a run
    # of requests while the socket is cut under them.
    in_flight = [
        asyncio.create_task(
            a.request(b.uuid, PeerMessage({"n": 1000 + i, "hold": True}, b"h" * 10))
        )
        for i in range(5)
    ]
    await asyncio.wait_for(all_held.wait(), WAIT)
    assert held == 5
    before = a.peer_stats()[b.uuid]
    assert before["requests_over_channel"] >= 6
    run = [
        asyncio.create_task(a.request(b.uuid, PeerMessage({"n": i}, os.urandom(i))))
        for i in range(50)
    ]
    channel = _connection(a, b.uuid)._streams[-1]
    channel.cut()
    release.set()
    replies = await asyncio.wait_for(asyncio.gather(*run, *in_flight), 3 * WAIT)
    assert [r.header["n"] for r in replies] == [
        *range(50),
        *range(1000, 1005),
    ]
    after = a.peer_stats()[b.uuid]
    # Sent again over the data channel: at least the held requests.
    assert after["resent_after_channel_loss"] >= 5
    assert not channel.is_open
    # Requests keep working, and the channel comes back (after a backoff).
    for i in range(2000):
        await asyncio.wait_for(a.request(b.uuid, PeerMessage({"n": i})), WAIT)
        if a.peer_stats()[b.uuid]["channels_opened"] == 2:
            break
    stats = a.peer_stats()[b.uuid]
    assert stats["channels_opened"] == 2
    assert stats["request_channel"]


async def _served_channel(
    acceptor: Callable[[asyncio.StreamReader, asyncio.StreamWriter], bool],
) -> AsyncIterator[tuple[FastPathServer, FastPathTicket]]:
    server = FastPathServer(HOLDER, "127.0.0.1", timeout=WAIT)
    await server.start()
    try:
        yield server, server.offer_channel(DIALER.public_bytes, acceptor)
    finally:
        await server.close()


@pytest.fixture
async def accepted() -> AsyncIterator[tuple[FastPathServer, FastPathTicket, list[Any]]]:
    taken: list[Any] = []

    def acceptor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        taken.append((reader, writer))
        return True

    async for server, ticket in _served_channel(acceptor):
        yield server, ticket, taken
        for _, writer in taken:
            writer.close()


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), WAIT)
    except (OSError, ssl.SSLError):
        return b""  # reset: nothing was sent either


async def test_unauthenticated_dial_gets_nothing(
    accepted: tuple[FastPathServer, FastPathTicket, list[Any]],
) -> None:
    server, ticket, taken = accepted
    intruder = Identity.generate()
    # A valid token signed by another identity: refused, token kept.
    with pytest.raises(PeerConnectionError, match="refused"):
        await dial_channel(
            ticket, identity=intruder, peer_public=HOLDER.public_bytes, timeout=WAIT
        )
    # A random token with the right identity: refused.
    bogus = FastPathTicket(ticket.host, ticket.port, os.urandom(32).hex(), 0)
    with pytest.raises(PeerConnectionError, match="refused"):
        await dial_channel(
            bogus, identity=DIALER, peer_public=HOLDER.public_bytes, timeout=WAIT
        )
    # The channel token does not open a body fetch (other signed context).
    with pytest.raises(PeerConnectionError):
        await fetch(
            ticket, identity=DIALER, peer_public=HOLDER.public_bytes, timeout=WAIT
        )
    # Preamble, TLS and garbage for a hello: no byte back.
    host, port = server.address
    sock = socket.create_connection((host, port))
    sock.sendall(CHANNEL_PREAMBLE)
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=client_context(), server_hostname=""
    )
    writer.write(bytes(HELLO_SIZE))
    assert await _read_all(reader) == b""
    writer.close()
    # Preamble, then plaintext: closed without an answer.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(CHANNEL_PREAMBLE + bytes.fromhex(ticket.token) + bytes(64))
    assert await _read_all(reader) == b""
    writer.close()
    assert taken == []
    assert server.pending_channel_offers == 1
    # The peer it was offered to still gets it, once.
    reader, writer = await dial_channel(
        ticket, identity=DIALER, peer_public=HOLDER.public_bytes, timeout=WAIT
    )
    assert len(taken) == 1
    assert server.pending_channel_offers == 0
    writer.close()
    with pytest.raises(PeerConnectionError, match="refused"):
        await dial_channel(
            ticket, identity=DIALER, peer_public=HOLDER.public_bytes, timeout=WAIT
        )


async def test_dialer_pins_the_listener() -> None:
    impostor = FastPathServer(Identity.generate(), "127.0.0.1", timeout=WAIT)
    await impostor.start()
    try:
        ticket = impostor.offer_channel(DIALER.public_bytes, lambda r, w: True)
        with pytest.raises(PeerConnectionError, match="expected peer"):
            await dial_channel(
                ticket, identity=DIALER, peer_public=HOLDER.public_bytes, timeout=WAIT
            )
        assert impostor.pending_channel_offers == 1  # no token was sent
    finally:
        await impostor.close()


async def test_oversized_frame_is_refused_unread() -> None:
    frames: list[bytes] = []
    closed: list[tuple[str, bool]] = []
    done = asyncio.Event()
    channels: list[RequestChannel] = []

    def on_closed(channel: RequestChannel, reason: str, protocol_error: bool) -> None:
        closed.append((reason, protocol_error))
        done.set()

    def acceptor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        channels.append(
            RequestChannel(
                reader,
                writer,
                lambda _, frame: frames.append(frame),
                on_closed,
                dialed=False,
            )
        )
        return True

    async for _, ticket in _served_channel(acceptor):
        reader, writer = await dial_channel(
            ticket, identity=DIALER, peer_public=HOLDER.public_bytes, timeout=WAIT
        )
        # The largest frame passes...
        largest = os.urandom(DEFAULT_MAX_FRAME_SIZE)
        writer.write(struct.pack("!I", len(largest)) + largest)
        # ...one byte more is refused from its length, before its bytes.
        writer.write(struct.pack("!I", DEFAULT_MAX_FRAME_SIZE + 1))
        await writer.drain()
        await asyncio.wait_for(done.wait(), WAIT)
        assert frames == [largest]
        assert closed[0][1] is True
        assert "frame of 1048577 bytes" in closed[0][0]
        # The listener closed the stream.
        assert await _read_all(reader) == b""
        writer.close()
        for channel in channels:
            await channel.aclose(WAIT)


async def test_oversized_frame_from_a_peer_closes_the_connection(
    pair: tuple[PeerManager, PeerManager],
) -> None:
    a, b = pair
    await _until_channel(a, b)
    connection_at_b = _connection(b, a.uuid)
    connection_at_a = _connection(a, b.uuid)
    channel = connection_at_a._streams[-1]
    with contextlib.suppress(Exception):
        await channel.send_frame(b"\0" * (DEFAULT_MAX_FRAME_SIZE + 1))
    assert await connection_at_b.wait_lost(WAIT)
    assert not connection_at_b.is_open
    assert a.uuid not in b.peer_stats()
    # A request racing a's own discovery of the close would fail; once a
    # has seen it, the next request connects again.
    assert await connection_at_a.wait_lost(WAIT)
    # The peers connect again on the next request.
    reply = await asyncio.wait_for(a.request(b.uuid, PeerMessage({"again": 1})), WAIT)
    assert reply.header["echo"] == {"again": 1}


async def test_a_peer_holds_at_most_one_channel_token(
    pair: tuple[PeerManager, PeerManager],
) -> None:
    a, b = pair
    await _until_channel(a, b)
    connection = _connection(a, b.uuid)
    first = await connection._ask_channel_ticket()
    second = await connection._ask_channel_ticket()
    assert b.fast_path_server is not None
    assert b.fast_path_server.pending_channel_offers == 1
    with pytest.raises(PeerConnectionError, match="refused"):
        await dial_channel(
            first,
            identity=a.identity,
            peer_public=b.identity.public_bytes,
            timeout=WAIT,
        )
    # The last one opens a (second) channel; the connection keeps at most two.
    _, writer = await dial_channel(
        second, identity=a.identity, peer_public=b.identity.public_bytes, timeout=WAIT
    )
    assert b.fast_path_server.pending_channel_offers == 0
    assert b.peer_stats()[a.uuid]["channels_opened"] == 2
    writer.close()


async def test_a_request_stalled_on_the_channel_sends_the_next_ones_another_way(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    never = asyncio.Event()

    async def handler(peer: str, request: PeerMessage) -> PeerMessage:
        if request.header.get("stuck"):
            await never.wait()
        return PeerMessage({"n": request.header.get("n")}, request.body)

    a = await make_manager(signaling.url)
    b = await make_manager(signaling.url, handler=handler)
    await _until_channel(a, b)
    with pytest.raises(StoreTimeoutError, match=r"no bytes moved for 0\.5s"):
        await a.request(b.uuid, PeerMessage({"stuck": True}), timeout=0.5)
    before = a.peer_stats()[b.uuid]
    assert before["request_channel"] is False
    reply = await asyncio.wait_for(a.request(b.uuid, PeerMessage({"n": 7})), WAIT)
    assert reply.header == {"n": 7}
    after = a.peer_stats()[b.uuid]
    assert (
        after["requests_over_data_channel"] == before["requests_over_data_channel"] + 1
    )
