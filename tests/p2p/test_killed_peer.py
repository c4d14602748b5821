from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxystore.endpoint.identity import write_identity
from proxystore.exceptions import PeerConnectionError
from proxystore.p2p import PeerManager, PeerMessage
from proxystore.p2p.signaling import SECRET_ENV, SignalingServer

SECRET = "test-secret"  # the conftest fixtures' secret
WAIT = 10.0
ManagerFactory = Callable[..., Awaitable[PeerManager]]
PEER_SCRIPT = pathlib.Path(__file__).with_name("peer_process.py")
REQUEST_TIMEOUT = 20.0


class PeerProcess:
    """A peer manager running in a child process, killed or stopped by pid."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str, identity_dir: pathlib.Path) -> PeerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PEER_SCRIPT),
            "--url",
            url,
            "--identity-dir",
            str(identity_dir),
            stdout=subprocess.PIPE,
            env={**os.environ, SECRET_ENV: SECRET},
        )
        peer = cls(process)
        await peer.expect("READY", timeout=30.0)
        return peer

    async def expect(self, word: str, timeout: float = WAIT) -> None:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert line.decode().strip() == word

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), WAIT)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()


@pytest.fixture
async def processes() -> AsyncIterator[list[PeerProcess]]:
    started: list[PeerProcess] = []
    yield started
    for peer in started:
        await peer.stop()


@pytest.mark.timeout(90)
async def test_peer_killed_mid_transfer_then_restarted(
    signaling: SignalingServer,
    make_manager: ManagerFactory,
    processes: list[PeerProcess],
    tmp_path: pathlib.Path,
) -> None:
    peer_uuid = write_identity(tmp_path).uuid
    local = await make_manager(signaling.url, timeout=REQUEST_TIMEOUT, fast_path=False)
    assert await local.wait_for_signaling(WAIT)
    first = await PeerProcess.start(signaling.url, tmp_path)
    processes.append(first)

    reply = await local.request(peer_uuid, PeerMessage({"n": 1}), timeout=WAIT)
    assert reply.header["pong"] == {"n": 1}
    first_pid = reply.header["pid"]

    # Over the data channel alone this body takes seconds, so the kill lands
    # while the response is streaming.
    big = asyncio.create_task(
        local.request(peer_uuid, PeerMessage({"op": "big", "size": 200 * 1024 * 1024}))
    )
    await first.expect("SENDING")
    first.process.kill()
    killed_at = time.monotonic()
    with pytest.raises(PeerConnectionError, match=r"disconnected|closed|failed"):
        await asyncio.wait_for(big, REQUEST_TIMEOUT + WAIT)
    # Noticed through the link going down, not by waiting out the timeout.
    assert time.monotonic() - killed_at < REQUEST_TIMEOUT / 2
    assert peer_uuid not in local.peers

    second = await PeerProcess.start(signaling.url, tmp_path)
    processes.append(second)
    reply = await local.request(peer_uuid, PeerMessage({"n": 2}, b"abc"), timeout=WAIT)
    assert reply.header["pong"] == {"n": 2}
    assert reply.header["pid"] != first_pid
    assert reply.body == b"abc"
    assert local.peers == [peer_uuid]
