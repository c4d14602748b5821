"""Signed session descriptions against a signaling server that tampers with them."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from proxystore.endpoint.identity import Identity
from proxystore.endpoint.peers import PeerAllowlist
from proxystore.exceptions import PeerConnectionError, StoreTimeoutError
from proxystore.p2p import PeerMessage
from proxystore.p2p.signaling import SignalingServer
from tests.p2p.conftest import SECRET, WAIT, ManagerFactory

pytestmark = pytest.mark.timeout(60)

Tamper = Callable[[dict[str, Any]], list[dict[str, Any]]]


class TamperingServer(SignalingServer):
    """A signaling server (or anyone on its path) rewriting relayed messages.

    ``tamper`` gets each relay message an endpoint sent and returns the
    messages to relay in its place.
    """

    def __init__(self, tamper: Tamper) -> None:
        super().__init__(SECRET, auth_timeout=WAIT)
        self.tamper = tamper

    async def _dispatch(
        self, websocket: ServerConnection, uuid: str, raw: str | bytes
    ) -> None:
        for message in self.tamper(json.loads(raw)):
            await super()._dispatch(websocket, uuid, json.dumps(message))


def _body(message: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = message["payload"]["signed"]["body"]
    return body


def _swap_fingerprint(kind: str) -> Tamper:
    def tamper(message: dict[str, Any]) -> list[dict[str, Any]]:
        body = _body(message)
        if body.get("kind") == kind:
            body["sdp"] = re.sub(
                r"a=fingerprint:sha-256 \S+",
                "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
                body["sdp"],
            )
        return [message]

    return tamper


def _replay_offers(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [message, message] if _body(message).get("kind") == "offer" else [message]


@pytest.fixture
async def tampering() -> AsyncIterator[TamperingServer]:
    server = TamperingServer(lambda message: [message])
    await server._start("127.0.0.1", 0, 20.0)
    yield server
    await server.close()


async def test_untampered_relay_connects(
    tampering: TamperingServer, make_manager: ManagerFactory
) -> None:
    a = await make_manager(tampering.url)
    b = await make_manager(tampering.url)
    reply = await a.request(b.uuid, PeerMessage({"x": 1}))
    assert reply.header["from"] == a.uuid


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("offer", "refused the connection: bad signature"),
        ("answer", "invalid session description: bad signature"),
    ],
)
async def test_tampered_session_description_is_refused(
    tampering: TamperingServer,
    make_manager: ManagerFactory,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    error: str,
) -> None:
    tampering.tamper = _swap_fingerprint(kind)
    a = await make_manager(tampering.url)
    b = await make_manager(tampering.url)
    assert await a.wait_for_signaling(WAIT)
    assert await b.wait_for_signaling(WAIT)
    with (
        caplog.at_level(logging.WARNING, logger="proxystore.p2p.manager"),
        pytest.raises(PeerConnectionError, match=error),
    ):
        await a.request(b.uuid, PeerMessage({}))
    assert a.peers == []
    assert b.peers == []
    assert "bad signature" in caplog.text


async def test_replayed_offer_is_refused_without_breaking_the_real_one(
    tampering: TamperingServer,
    make_manager: ManagerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tampering.tamper = _replay_offers
    a = await make_manager(tampering.url)
    b = await make_manager(tampering.url)
    with caplog.at_level(logging.WARNING, logger="proxystore.p2p.manager"):
        reply = await a.request(b.uuid, PeerMessage({"n": 1}))
    assert reply.header["echo"] == {"n": 1}
    assert "replayed message" in caplog.text


async def test_offer_signed_by_an_outsider_key_is_refused(
    tampering: TamperingServer,
    make_manager: ManagerFactory,
) -> None:
    a = await make_manager(tampering.url)
    # b allows only a third endpoint, not a.
    b = await make_manager(
        tampering.url, allow=PeerAllowlist(peers=[Identity.generate().uuid])
    )
    assert await b.wait_for_signaling(WAIT)
    with pytest.raises(PeerConnectionError, match=r"not in peers\.allow"):
        await a.request(b.uuid, PeerMessage({}))
    # And a does not even try to reach a peer it does not allow.
    c = await make_manager(tampering.url, allow=PeerAllowlist())
    # Registered first: a client cancelled mid-handshake by the teardown
    # leaves the server waiting out its handshake timeout.
    assert await c.wait_for_signaling(WAIT)
    with pytest.raises(PeerConnectionError, match=r"peers\.allow of endpoint"):
        await c.request(a.uuid, PeerMessage({}))


async def test_relabeled_sender_is_refused(
    tampering: TamperingServer,
    make_manager: ManagerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = await make_manager(tampering.url)
    b = await make_manager(tampering.url)
    c = await make_manager(tampering.url)
    assert await c.wait_for_signaling(WAIT)
    uuids = {a.uuid: c.uuid}

    real_dispatch = SignalingServer._dispatch

    async def relabel(
        server: SignalingServer, websocket: ServerConnection, uuid: str, raw: Any
    ) -> None:
        # The server claims a's offer came from c.
        await real_dispatch(server, websocket, uuids.get(uuid, uuid), raw)

    tampering._dispatch = relabel.__get__(tampering)  # type: ignore[method-assign]
    with (
        caplog.at_level(logging.WARNING, logger="proxystore.p2p.manager"),
        pytest.raises(StoreTimeoutError),
    ):
        await a.request(b.uuid, PeerMessage({}), timeout=3.0)
    assert f"signed by {a.uuid}, relayed as from {c.uuid}" in caplog.text
    assert b.peers == []
