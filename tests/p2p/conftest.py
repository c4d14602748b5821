from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from proxystore.endpoint.identity import Identity
from proxystore.endpoint.peers import PeerAllowlist
from proxystore.p2p import PeerManager, PeerMessage
from proxystore.p2p.signaling import SignalingServer, serve

SECRET = "test-secret"
WAIT = 10.0

ManagerFactory = Callable[..., Awaitable[PeerManager]]


async def echo_handler(peer: str, request: PeerMessage) -> PeerMessage:
    """Answer with the request's header and body, plus who asked."""
    return PeerMessage({"echo": request.header, "from": peer}, request.body)


@pytest.fixture
async def signaling() -> AsyncIterator[SignalingServer]:
    async with await serve("127.0.0.1", 0, SECRET) as server:
        yield server


@pytest.fixture
async def make_manager() -> AsyncIterator[ManagerFactory]:
    managers: list[PeerManager] = []

    async def factory(url: str, **kwargs: Any) -> PeerManager:
        kwargs.setdefault("handler", echo_handler)
        kwargs.setdefault("timeout", WAIT)
        kwargs.setdefault("allow", PeerAllowlist.any())
        handler = kwargs.pop("handler")
        identity = kwargs.pop("identity", None) or Identity.generate()
        secret = kwargs.pop("secret", SECRET)
        name = f"site-{identity.uuid[:4]}"
        manager = PeerManager(identity, name, url, secret, handler, **kwargs)
        managers.append(manager)
        await manager.start()
        return manager

    yield factory
    for manager in managers:
        await manager.close()


@pytest.fixture
async def pair(
    signaling: SignalingServer, make_manager: ManagerFactory
) -> tuple[PeerManager, PeerManager]:
    a = await make_manager(signaling.url)
    b = await make_manager(signaling.url)
    assert await a.wait_for_signaling(WAIT)
    assert await b.wait_for_signaling(WAIT)
    return a, b
