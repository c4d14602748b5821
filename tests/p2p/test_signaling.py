from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from proxystore.endpoint.identity import Identity
from proxystore.exceptions import ConfigurationError
from proxystore.p2p import signaling_protocol as protocol
from proxystore.p2p.signaling import SECRET_ENV, SignalingServer, main, serve

SECRET = "test-secret"  # the conftest fixtures' secret
WAIT = 10.0

pytestmark = pytest.mark.timeout(30)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    return message


IDS = {name: Identity.generate() for name in ("a", "b", "w")}
U = {name: identity.uuid for name, identity in IDS.items()}


async def register(
    server: SignalingServer,
    identity: Identity,
    secret: str = SECRET,
    *,
    uuid: str | None = None,
) -> ClientConnection:
    """Register ``identity``, or claim ``uuid`` with ``identity``'s key."""
    uuid = uuid or identity.uuid
    ws = await connect(server.url, open_timeout=WAIT, proxy=None)
    challenge = await recv(ws)
    assert challenge["type"] == "challenge"
    auth = protocol.auth_digest(secret, challenge["nonce"], uuid)
    body = {"from": uuid, "to": "signaling", "nonce": challenge["nonce"]}
    proof = identity.sign({**body, "ts": time.time(), "name": uuid})
    await ws.send(
        json.dumps(
            {
                "type": "register",
                "uuid": uuid,
                "name": uuid,
                "auth": auth,
                "identity": proof,
            }
        )
    )
    return ws


async def test_registration_without_secret_is_refused(
    signaling: SignalingServer,
) -> None:
    async with connect(signaling.url, open_timeout=WAIT, proxy=None) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "register", "uuid": "x", "auth": "guess"}))
        assert await recv(ws) == {"type": "error", "reason": "authentication failed"}
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == protocol.CLOSE_AUTH_FAILED
    assert signaling.registered == {}


async def test_wrong_secret_and_malformed_registration_are_refused(
    signaling: SignalingServer,
) -> None:

    ws = await register(signaling, IDS["a"], secret="not-the-secret")
    assert (await recv(ws))["reason"] == "authentication failed"
    await ws.close()
    async with connect(signaling.url, open_timeout=WAIT, proxy=None) as ws:
        await recv(ws)
        await ws.send("not json")
        assert (await recv(ws))["type"] == "error"
    assert signaling.registered == {}


async def test_relay_unknown_peer_and_departure(signaling: SignalingServer) -> None:
    a = await register(signaling, IDS["a"])
    b = await register(signaling, IDS["b"])
    assert (await recv(a))["type"] == "registered"
    assert (await recv(b))["type"] == "registered"
    assert signaling.registered == {U["a"]: U["a"], U["b"]: U["b"]}

    await a.send(json.dumps({"type": "relay", "target": U["b"], "payload": {"k": 1}}))
    assert await recv(b) == {
        "type": "relay",
        "source": U["a"],
        "source_name": U["a"],
        "payload": {"k": 1},
    }

    await a.send(json.dumps({"type": "relay", "target": "zz", "payload": {"s": 2}}))
    assert await recv(a) == {
        "type": "unknown_peer",
        "target": "zz",
        "payload": {"s": 2},
    }

    await a.send(json.dumps({"type": "relay", "target": U["b"]}))
    assert (await recv(a))["type"] == "error"

    await b.close()
    assert await recv(a) == {"type": "peer_gone", "uuid": U["b"]}
    await a.close()


async def test_same_key_replaces_old_registration(signaling: SignalingServer) -> None:
    watcher = await register(signaling, IDS["w"])
    old = await register(signaling, IDS["a"])
    assert (await recv(watcher))["type"] == "registered"
    assert (await recv(old))["type"] == "registered"
    new = await register(signaling, IDS["a"])
    assert (await recv(new))["type"] == "registered"
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(old.recv(), WAIT)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == protocol.CLOSE_REPLACED
    assert await recv(watcher) == {"type": "peer_gone", "uuid": U["a"]}
    await watcher.send(json.dumps({"type": "relay", "target": U["a"], "payload": {}}))
    assert (await recv(new))["source"] == U["w"]
    await new.close()
    await watcher.close()


async def test_serve_needs_a_secret() -> None:
    with pytest.raises(ConfigurationError):
        await serve("127.0.0.1", 0, "")


def test_main_without_secret_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert main(["--port", "0"]) == 2


@pytest.mark.timeout(30)
async def test_console_script_serves_until_sigterm() -> None:
    env = {**os.environ, SECRET_ENV: SECRET}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxystore.p2p.signaling",
        "--port",
        "0",
        env=env,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
        assert "listening on ws://" in line
        url = line.split("listening on ", 1)[1].strip()
        async with connect(url, open_timeout=WAIT, proxy=None) as ws:
            assert (await recv(ws))["type"] == "challenge"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
