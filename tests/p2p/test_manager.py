from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from proxystore.exceptions import (
    PeerConnectionError,
    PeerError,
    PeerUnknownError,
    StoreTimeoutError,
)
from proxystore.p2p import PeerManager, PeerMessage
from proxystore.p2p.signaling import SignalingServer, serve

SECRET = "test-secret"  # the conftest fixtures' secret
WAIT = 10.0
ManagerFactory = Callable[..., Awaitable[PeerManager]]

pytestmark = pytest.mark.timeout(60)


MiB = 1024 * 1024


# The data channel moves only a few MB/s on a loaded machine: 10 MiB each way
# gets a generous bound.
BULK_WAIT = 60.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fast_path", [False, True], ids=["webrtc", "fastpath"])
@pytest.mark.parametrize(
    "size",
    [
        pytest.param(1, id="1B"),
        pytest.param(1024, id="1KiB"),
        pytest.param(10 * MiB, id="10MiB", marks=pytest.mark.heavy),
    ],
)
async def test_request_round_trip(
    signaling: SignalingServer,
    make_manager: ManagerFactory,
    fast_path: bool,
    size: int,
) -> None:
    a = await make_manager(signaling.url, fast_path=fast_path, timeout=BULK_WAIT)
    b = await make_manager(signaling.url, fast_path=fast_path, timeout=BULK_WAIT)
    body = os.urandom(size)

    reply = await asyncio.wait_for(
        a.request(b.uuid, PeerMessage({"op": "echo", "n": size}, body)), BULK_WAIT
    )

    assert reply.header == {"echo": {"op": "echo", "n": size}, "from": a.uuid}
    assert bytes(reply.body) == body
    assert a.peers == [b.uuid]
    assert b.peers == [a.uuid]
    big = size >= MiB
    served = [m.fast_path_server.served if m.fast_path_server else 0 for m in (a, b)]
    # One fast-path body each way for big bodies; none otherwise.
    assert served == ([1, 1] if fast_path and big else [0, 0])


@pytest.mark.timeout(180)
async def test_fast_path_only_when_both_sides_enable_it(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    a = await make_manager(signaling.url, fast_path=True, timeout=BULK_WAIT)
    b = await make_manager(signaling.url, fast_path=False, timeout=BULK_WAIT)
    body = os.urandom(2 * MiB)
    # Connecting and 2 MiB each way over the data channel: a loaded machine
    # takes many seconds.
    reply = await asyncio.wait_for(a.request(b.uuid, PeerMessage({}, body)), BULK_WAIT)
    assert bytes(reply.body) == body
    assert a.fast_path_server is not None
    assert a.fast_path_server.served == 0


@pytest.mark.timeout(180)
async def test_unreachable_fast_path_falls_back_to_data_channel(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    # 127.0.0.2 is loopback too, but nothing listens there: connecting fails.
    a = await make_manager(
        signaling.url, fast_path_advertised_host="127.0.0.2", timeout=BULK_WAIT
    )
    b = await make_manager(
        signaling.url, fast_path_advertised_host="127.0.0.2", timeout=BULK_WAIT
    )
    for _ in range(2):
        body = os.urandom(2 * MiB)
        reply = await asyncio.wait_for(
            a.request(b.uuid, PeerMessage({}, body)), BULK_WAIT
        )
        assert bytes(reply.body) == body
    for manager in (a, b):
        assert manager.fast_path_server is not None
        assert manager.fast_path_server.served == 0
        assert manager.fast_path_server.pending_offers == 0


async def test_connection_is_reused(pair: tuple[PeerManager, PeerManager]) -> None:
    a, b = pair
    for i in range(3):
        reply = await asyncio.wait_for(a.request(b.uuid, PeerMessage({"i": i})), WAIT)
        assert reply.header["echo"] == {"i": i}
    # The reverse direction uses the connection a opened.
    reply = await asyncio.wait_for(b.request(a.uuid, PeerMessage({"back": 1})), WAIT)
    assert reply.header["from"] == b.uuid
    assert a.peers == [b.uuid]
    assert b.peers == [a.uuid]


async def test_unknown_peer_fails_fast(pair: tuple[PeerManager, PeerManager]) -> None:
    a, _ = pair
    start = time.monotonic()
    with pytest.raises(PeerUnknownError) as info:
        await a.request(str(uuid.uuid4()), PeerMessage({}), timeout=WAIT)
    assert time.monotonic() - start < WAIT / 2
    assert "registered" in str(info.value)


@pytest.mark.timeout(180)
async def test_concurrent_requests_are_multiplexed(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    async def slow_first(peer: str, request: PeerMessage) -> PeerMessage:
        # The first request answers last, so replies must be matched by id.
        if request.header["i"] == 0:
            await asyncio.wait_for(all_others_done.wait(), BULK_WAIT)
        return PeerMessage({"i": request.header["i"]}, request.body)

    all_others_done = asyncio.Event()
    a = await make_manager(signaling.url, fast_path=False, timeout=BULK_WAIT)
    b = await make_manager(
        signaling.url, fast_path=False, handler=slow_first, timeout=BULK_WAIT
    )
    bodies = [os.urandom(n) for n in [10, 3 * MiB, 0, 200_000, *range(1, 17)]]

    async def ask(i: int) -> None:
        reply = await a.request(b.uuid, PeerMessage({"i": i}, bodies[i]))
        assert reply.header == {"i": i}
        assert bytes(reply.body) == bodies[i]

    first = asyncio.create_task(ask(0))
    others = (ask(i) for i in range(1, len(bodies)))
    await asyncio.wait_for(asyncio.gather(*others), BULK_WAIT)
    assert not first.done()
    all_others_done.set()
    await asyncio.wait_for(first, BULK_WAIT)
    assert a.peers == [b.uuid]
    assert b.peers == [a.uuid]


async def test_first_requests_share_one_connection_attempt(
    signaling: SignalingServer, pair: tuple[PeerManager, PeerManager]
) -> None:
    a, b = pair
    replies = await asyncio.wait_for(
        asyncio.gather(*(a.request(b.uuid, PeerMessage({"i": i})) for i in range(10))),
        WAIT,
    )
    assert [r.header["echo"] for r in replies] == [{"i": i} for i in range(10)]
    assert signaling.relayed == 2  # one offer, one answer
    assert a.peers == [b.uuid]


async def test_simultaneous_dial_converges_on_one_connection(
    signaling: SignalingServer, pair: tuple[PeerManager, PeerManager]
) -> None:
    a, b = pair
    replies = await asyncio.wait_for(
        asyncio.gather(
            a.request(b.uuid, PeerMessage({"from": "a"})),
            b.request(a.uuid, PeerMessage({"from": "b"})),
        ),
        WAIT,
    )
    assert [r.header["echo"] for r in replies] == [{"from": "a"}, {"from": "b"}]
    # Two offers at most (the loser may cancel before sending) and one answer.
    assert signaling.relayed <= 3
    assert a.peers == [b.uuid]
    assert b.peers == [a.uuid]


async def test_request_to_self_calls_own_handler(
    pair: tuple[PeerManager, PeerManager],
) -> None:
    a, _ = pair
    reply = await asyncio.wait_for(a.request(a.uuid, PeerMessage({"x": 1}, b"b")), WAIT)
    assert reply.header == {"echo": {"x": 1}, "from": a.uuid}


async def test_handler_error_is_reported(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    async def broken(peer: str, request: PeerMessage) -> PeerMessage:
        raise KeyError("no such object")

    a = await make_manager(signaling.url)
    b = await make_manager(signaling.url, handler=broken)
    with pytest.raises(PeerError, match="no such object"):
        await a.request(b.uuid, PeerMessage({}), timeout=WAIT)
    # The connection survives a failed handler.
    with pytest.raises(PeerError, match="no such object"):
        await a.request(b.uuid, PeerMessage({}), timeout=WAIT)
    assert a.peers == [b.uuid]


async def test_timeout_when_handler_never_answers(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    never = asyncio.Event()

    async def stuck(peer: str, request: PeerMessage) -> PeerMessage:
        await never.wait()
        raise AssertionError("unreachable")

    a = await make_manager(signaling.url)
    b = await make_manager(signaling.url, handler=stuck)
    await asyncio.wait_for(a.request(a.uuid, PeerMessage({})), WAIT)
    start = time.monotonic()
    with pytest.raises(StoreTimeoutError, match="no bytes moved for 1s"):
        await a.request(b.uuid, PeerMessage({}), timeout=1.0)
    assert time.monotonic() - start < 1.0 + WAIT / 2


async def test_peer_closing_fails_requests_in_flight(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    entered = asyncio.Event()
    never = asyncio.Event()

    async def stuck(peer: str, request: PeerMessage) -> PeerMessage:
        entered.set()
        await never.wait()
        raise AssertionError("unreachable")

    a = await make_manager(signaling.url)
    b = await make_manager(signaling.url, handler=stuck)
    pending = asyncio.create_task(a.request(b.uuid, PeerMessage({}), timeout=WAIT))
    await asyncio.wait_for(entered.wait(), WAIT)
    start = time.monotonic()
    await b.close()
    with pytest.raises(PeerConnectionError):
        await asyncio.wait_for(pending, WAIT)
    assert time.monotonic() - start < WAIT / 2
    with pytest.raises(PeerUnknownError):
        await a.request(b.uuid, PeerMessage({}), timeout=WAIT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_signaling_down_at_start_then_up(make_manager: ManagerFactory) -> None:
    port = _free_port()
    url = f"ws://127.0.0.1:{port}"
    start = time.monotonic()
    a = await make_manager(url, reconnect_max_delay=0.5)
    b = await make_manager(url, reconnect_max_delay=0.5)
    assert time.monotonic() - start < 1.0
    assert not a.connected_to_signaling
    with pytest.raises(PeerConnectionError, match="signaling"):
        await a.request(b.uuid, PeerMessage({}), timeout=WAIT)
    # Local requests keep working while signaling is down.
    assert (await a.request(a.uuid, PeerMessage({"x": 1}))).header["echo"] == {"x": 1}

    async with await serve("127.0.0.1", port, SECRET):
        assert await a.wait_for_signaling(WAIT)
        assert await b.wait_for_signaling(WAIT)
        reply = await asyncio.wait_for(a.request(b.uuid, PeerMessage({"up": 1})), WAIT)
        assert reply.header["echo"] == {"up": 1}


async def test_connections_survive_a_signaling_restart(
    make_manager: ManagerFactory,
) -> None:
    port = _free_port()
    server = await serve("127.0.0.1", port, SECRET)
    try:
        a = await make_manager(server.url, reconnect_max_delay=0.5)
        b = await make_manager(server.url, reconnect_max_delay=0.5)
        assert await a.wait_for_signaling(WAIT)
        assert await b.wait_for_signaling(WAIT)
        await asyncio.wait_for(a.request(b.uuid, PeerMessage({"n": 1})), WAIT)
    finally:
        await server.close()
    assert not a.connected_to_signaling
    reply = await asyncio.wait_for(a.request(b.uuid, PeerMessage({"n": 2})), WAIT)
    assert reply.header["echo"] == {"n": 2}
    async with await serve("127.0.0.1", port, SECRET):
        assert await a.wait_for_signaling(WAIT)
        assert await b.wait_for_signaling(WAIT)
        reply = await asyncio.wait_for(b.request(a.uuid, PeerMessage({"n": 3})), WAIT)
        assert reply.header["echo"] == {"n": 3}
    assert a.peers == [b.uuid]


async def test_wrong_secret_never_registers(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    good = await make_manager(signaling.url)
    bad = await make_manager(signaling.url, secret="wrong")
    assert await good.wait_for_signaling(WAIT)
    assert not await bad.wait_for_signaling(0.5)
    assert bad.uuid not in signaling.registered
    with pytest.raises(PeerConnectionError, match="authentication failed"):
        await bad.request(good.uuid, PeerMessage({}), timeout=WAIT)


async def test_closed_manager_refuses_requests(
    pair: tuple[PeerManager, PeerManager],
) -> None:

    a, b = pair
    await asyncio.wait_for(a.request(b.uuid, PeerMessage({})), WAIT)
    await a.close()
    assert not a.connected_to_signaling
    with pytest.raises(PeerConnectionError, match="not running"):
        await a.request(b.uuid, PeerMessage({}))


@pytest.mark.timeout(180)
async def test_transfer_longer_than_the_timeout_succeeds_while_moving(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    # A request outlasts its idle timeout several times over while bytes keep
    # moving on its connection. The test sets the pace: the peer holds the
    # request until the test has kept bytes moving past 3 * idle. Moving
    # bodies are small messages, several in flight, each step awaited: a
    # bulk body can lose packets on a loaded machine and wait a whole
    # retransmission timeout (1 s in SCTP) with nothing moving.
    idle = 0.5
    hold = asyncio.Event()

    async def held(peer: str, request: PeerMessage) -> PeerMessage:
        if request.header.get("held"):
            await asyncio.wait_for(hold.wait(), BULK_WAIT)
        return PeerMessage({}, request.body)

    a = await make_manager(signaling.url, fast_path=False, timeout=BULK_WAIT)
    b = await make_manager(
        signaling.url, fast_path=False, handler=held, timeout=BULK_WAIT
    )
    await asyncio.wait_for(a.request(b.uuid, PeerMessage({})), BULK_WAIT)
    loop = asyncio.get_running_loop()
    body = os.urandom(64 * 1024)
    start = loop.time()
    transfer = asyncio.create_task(
        a.request(b.uuid, PeerMessage({"held": True}, body), timeout=idle)
    )
    steps = 0

    async def keep_moving() -> None:
        nonlocal steps
        while loop.time() - start <= 3 * idle and not transfer.done():
            step = os.urandom(1024)
            reply = await asyncio.wait_for(
                a.request(b.uuid, PeerMessage({}, step)), BULK_WAIT
            )
            assert bytes(reply.body) == step
            steps += 1

    await asyncio.wait_for(
        asyncio.gather(*(keep_moving() for _ in range(4))), BULK_WAIT
    )
    assert not transfer.done(), transfer
    hold.set()
    reply = await asyncio.wait_for(transfer, BULK_WAIT)
    elapsed = loop.time() - start
    assert bytes(reply.body) == body
    assert elapsed > 3 * idle
    assert steps > 0


@pytest.mark.timeout(180)
async def test_stalled_request_says_how_much_moved(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> None:
    release = asyncio.Event()

    async def stuck(peer: str, request: PeerMessage) -> PeerMessage:
        await asyncio.wait_for(release.wait(), BULK_WAIT)
        return PeerMessage({})

    a = await make_manager(signaling.url, timeout=BULK_WAIT)
    b = await make_manager(signaling.url, handler=stuck, timeout=BULK_WAIT)
    try:
        # Connect first, so only the request's own wait is measured.
        await asyncio.wait_for(b.request(a.uuid, PeerMessage({})), BULK_WAIT)
        with pytest.raises(
            StoreTimeoutError,
            match=r"stalled: no bytes moved for 0.5s \(\d+ bytes moved",
        ):
            await a.request(b.uuid, PeerMessage({}, b"x" * 1000), timeout=0.5)
        with pytest.raises(
            StoreTimeoutError, match=r"total deadline of 0.3s with \d+ bytes moved"
        ):
            await a.request(b.uuid, PeerMessage({}), timeout=WAIT, deadline=0.3)
    finally:
        release.set()
