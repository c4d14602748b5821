"""A peer that sends lengths beyond the framing caps is cut off; others are not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from proxystore.p2p import PeerManager, PeerMessage
from proxystore.p2p.framing import FRAME_HEADER, START_HEADER, FrameType
from proxystore.p2p.signaling import SignalingServer

WAIT = 10.0
ManagerFactory = Callable[..., Awaitable[PeerManager]]

pytestmark = pytest.mark.timeout(60)


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_peer_declaring_an_oversized_body_is_cut_off(
    signaling: SignalingServer,
    make_manager: ManagerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    victim = await make_manager(signaling.url)
    attacker = await make_manager(signaling.url)
    other = await make_manager(signaling.url)
    await asyncio.wait_for(attacker.request(victim.uuid, PeerMessage({})), WAIT)
    # There is no public way to send a malformed frame: use the raw channel.
    channel = attacker._connections[victim.uuid]._channel
    with caplog.at_level(logging.WARNING, logger="proxystore.p2p.connection"):
        channel.send(
            FRAME_HEADER.pack(FrameType.START, 0, 99) + START_HEADER.pack(2, 2**40)
        )
        await _until(lambda: attacker.uuid not in victim.peers, WAIT)
    assert "body of 1099511627776 bytes; the limit is" in caplog.text
    reply = await asyncio.wait_for(
        other.request(victim.uuid, PeerMessage({"still": "serving"})), WAIT
    )
    assert reply.header["echo"] == {"still": "serving"}
