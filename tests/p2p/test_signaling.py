from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from proxystore.endpoint.identity import Identity
from proxystore.exceptions import ConfigurationError
from proxystore.p2p import signaling_protocol as protocol
from proxystore.p2p.signaling import (
    SECRET_ENV,
    SignalingServer,
    main,
    read_secret,
    serve,
)
from proxystore.p2p.signaling_client import DIRECT_CONNECTION

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
    ws = await connect(server.url, open_timeout=WAIT, **DIRECT_CONNECTION)
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
    async with connect(signaling.url, open_timeout=WAIT, **DIRECT_CONNECTION) as ws:
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
    async with connect(signaling.url, open_timeout=WAIT, **DIRECT_CONNECTION) as ws:
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
        async with connect(url, open_timeout=WAIT, **DIRECT_CONNECTION) as ws:
            assert (await recv(ws))["type"] == "challenge"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_uuid_claimed_with_another_key_is_refused(
    signaling: SignalingServer,
) -> None:
    owner = await register(signaling, IDS["a"])
    assert (await recv(owner))["type"] == "registered"
    # Knows the secret, signs with its own key, claims a's UUID.
    impostor = await register(signaling, IDS["b"], uuid=U["a"])
    reply = await recv(impostor)
    assert reply["type"] == "error"
    assert "not the uuid of the signing key" in reply["reason"]
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(impostor.recv(), WAIT)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == protocol.CLOSE_AUTH_FAILED
    # The owner keeps its registration and its link.
    assert signaling.registered == {U["a"]: U["a"]}
    watcher = await register(signaling, IDS["w"])
    assert (await recv(watcher))["type"] == "registered"
    await watcher.send(json.dumps({"type": "relay", "target": U["a"], "payload": {}}))
    assert (await recv(owner))["source"] == U["w"]
    for ws in (owner, watcher, impostor):
        await ws.close()


async def test_registration_without_a_fresh_identity_proof_is_refused(
    signaling: SignalingServer,
) -> None:
    identity = IDS["a"]
    for label, proof in [
        ("missing", None),
        ("another challenge", {"nonce": "0" * 32}),
        ("another recipient", {"to": "someone"}),
        ("stale", {"ts": time.time() - 600}),
    ]:
        async with connect(signaling.url, open_timeout=WAIT, **DIRECT_CONNECTION) as ws:
            nonce = (await recv(ws))["nonce"]
            body = {"from": identity.uuid, "to": "signaling", "nonce": nonce}
            message: dict[str, Any] = {
                "type": "register",
                "uuid": identity.uuid,
                "auth": protocol.auth_digest(SECRET, nonce, identity.uuid),
            }
            if proof is not None:
                message["identity"] = identity.sign(
                    {**body, "ts": time.time(), **proof}
                )
            await ws.send(json.dumps(message))
            assert (await recv(ws))["type"] == "error", label
    assert signaling.registered == {}


async def test_tls_server_url_and_plain_ws_warnings(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from proxystore.p2p.signaling_client import SignalingClient

    with caplog.at_level(logging.WARNING):
        SignalingClient("ws://192.0.2.1:1", IDS["a"], "x", SECRET, lambda message: None)
        SignalingClient("ws://127.0.0.1:1", IDS["a"], "x", SECRET, lambda message: None)
    assert caplog.text.count("plain ws://") == 1
    assert "192.0.2.1" in caplog.text
    with pytest.raises(ConfigurationError, match="CA file"):
        SignalingClient(
            "wss://127.0.0.1:1",
            IDS["a"],
            "x",
            SECRET,
            lambda message: None,
            ca_file=str(tmp_path / "missing.pem"),
        )


def test_secret_from_file_or_env_never_argv(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert main(["--port", "0", "--secret", "s3cret"]) == 2
    assert "--secret-file" in capsys.readouterr().err
    path = tmp_path / "secret"
    path.write_text("  from-file \n")
    path.chmod(0o600)
    assert read_secret(path) == "from-file"
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        read_secret(path)
    with pytest.raises(ConfigurationError, match=SECRET_ENV):
        read_secret(None)
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert read_secret(None) == "from-env"
    assert main(["--port", "0", "--certfile", str(path)]) == 2
    assert "both --certfile and --keyfile" in capsys.readouterr().err


async def test_plain_ws_server_off_loopback_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="proxystore.p2p.signaling"):
        async with await serve("127.0.0.1", 0, SECRET):
            pass
        assert "plain ws://" not in caplog.text
        async with await serve("0.0.0.0", 0, SECRET) as server:
            assert server.url.startswith("ws://")
        assert "plain ws://" in caplog.text


def test_deeply_nested_message_is_a_protocol_error() -> None:
    with pytest.raises(protocol.SignalingProtocolError, match="not valid JSON"):
        protocol.decode("[" * 100_000 + "]" * 100_000)


async def test_client_defect_is_reported_as_permanent_not_retried(
    signaling: SignalingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxystore.p2p.signaling_client import SignalingClient

    attempts = 0

    async def broken_register(self: SignalingClient, websocket: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise TypeError("unexpected keyword argument")

    monkeypatch.setattr(SignalingClient, "_register", broken_register)
    client = SignalingClient(
        signaling.url, IDS["a"], "a", SECRET, lambda message: None, timeout=WAIT
    )
    client.start()
    try:
        assert await client.wait_attempted(WAIT)
        assert client._task is not None
        await asyncio.wait_for(asyncio.shield(client._task), WAIT)  # it ended
        assert attempts == 1
        assert client.refused is not None
        assert "internal error: TypeError" in client.refused
        assert not client.connected
    finally:
        await client.close()


async def test_wss_client_closed_leaves_no_open_transport(tmp_path: Path) -> None:
    """The TLS link is closed with the client (Python 3.10 warned at collection)."""
    from proxystore.endpoint.testing import write_test_certificate
    from proxystore.p2p.signaling import tls_context
    from proxystore.p2p.signaling_client import SignalingClient

    ca, cert, key = write_test_certificate(tmp_path, "127.0.0.1")
    tls = tls_context(str(cert), str(key))
    # Earlier tests' garbage is collected now, not charged to this test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        async with await serve("127.0.0.1", 0, SECRET, tls=tls) as server:
            client = SignalingClient(
                server.url,
                IDS["w"],
                "wss",
                SECRET,
                lambda message: None,
                timeout=WAIT,
                ca_file=str(ca),
            )
            client.start()
            try:
                assert await client.wait_attempted(WAIT)
                assert client.connected, client.last_error
            finally:
                await client.close()
        del client
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


async def test_connections_registering_at_once_are_capped() -> None:
    async with await serve("127.0.0.1", 0, SECRET, max_pending=3) as server:
        idle = [
            await connect(server.url, open_timeout=WAIT, **DIRECT_CONNECTION)
            for _ in range(3)
        ]
        for ws in idle:
            assert (await recv(ws))["type"] == "challenge"
        async with connect(server.url, open_timeout=WAIT, **DIRECT_CONNECTION) as extra:
            refusal = await recv(extra)
            assert refusal["type"] == "error"
            assert "max 3" in refusal["reason"]
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(extra.recv(), WAIT)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1013
        # Once those go away, endpoints register again.
        for ws in idle:
            await ws.close()
        ws = await register(server, IDS["a"])
        assert (await recv(ws))["type"] == "registered"
        await ws.close()


async def test_registered_endpoints_are_capped_but_may_log_in_again() -> None:
    async with await serve("127.0.0.1", 0, SECRET, max_endpoints=1) as server:
        a = await register(server, IDS["a"])
        assert (await recv(a))["type"] == "registered"
        b = await register(server, IDS["b"])
        refusal = await recv(b)
        assert refusal["type"] == "error"
        assert "max 1" in refusal["reason"]
        assert server.registered == {U["a"]: U["a"]}
        again = await register(server, IDS["a"])
        assert (await recv(again))["type"] == "registered"
        for ws in (a, b, again):
            await ws.close()


async def test_refused_registrations_log_a_bounded_number_of_lines(
    signaling: SignalingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="proxystore.p2p.signaling")
    for _ in range(20):
        ws = await register(signaling, IDS["w"], secret="wrong")
        assert (await recv(ws))["type"] == "error"
        await ws.close()
    refusals = [r for r in caplog.records if "bad secret" in r.getMessage()]
    assert len(refusals) == 1


@pytest.mark.parametrize("limit", [0, -1, 2.5, "8"])
async def test_limits_must_be_positive_integers(limit: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_pending"):
        await serve("127.0.0.1", 0, SECRET, max_pending=limit)


def test_cli_limit_mistake_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert main(["--port", "0", "--max-endpoints", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "max_endpoints" in err
    assert "Traceback" not in err
