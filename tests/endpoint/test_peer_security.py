"""An attacker who knows the signaling secret, against real endpoint processes.

One signaling server (TLS, with a CA made here) and two endpoints that allow
each other, each in its own PROXYSTORE_HOME, started through the CLIs.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from proxystore.aio.endpoint import EndpointStore
from proxystore.endpoint.identity import Identity, read_identity
from proxystore.endpoint.keys import EndpointKey
from proxystore.endpoint.peers import PeerAllowlist
from proxystore.endpoint.testing import (
    EndpointProcess,
    SignalingServer,
    configure_endpoint,
    describe_endpoint,
    run_cli,
    start_signaling_server,
    wait_until_registered,
    write_test_certificate,
)
from proxystore.exceptions import PeerConnectionError, ProxyStoreError
from proxystore.p2p import PeerManager, PeerMessage
from proxystore.p2p import signaling_protocol as protocol
from proxystore.p2p.signaling_client import DIRECT_CONNECTION, SignalingClient

pytestmark = pytest.mark.timeout(90)

SECRET = "peer-security-secret-" + "x" * 16
READY = 30.0
WAIT = 10.0


@dataclasses.dataclass
class Sites:
    root: Path
    ca_file: Path
    signaling: SignalingServer
    a: EndpointProcess
    b: EndpointProcess


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    root = tmp_path_factory.mktemp("secure-sites")
    ca_file, cert_file, key_file = write_test_certificate(root, "127.0.0.1")
    signaling = start_signaling_server(
        SECRET, log=root / "signaling.log", certfile=cert_file, keyfile=key_file
    )
    started: list[EndpointProcess] = []
    try:
        options = ["--server", signaling.url, "--signaling-ca-file", str(ca_file)]
        for name in ("site-a", "site-b"):
            site = configure_endpoint(root / name, name, *options, secret=SECRET)
            started.append(site)
        a, b = started
        a.allow(b.uuid)
        b.allow(a.uuid)
        for site in started:
            site.start(wait=READY)
        for site in started:
            wait_until_registered(site, READY)
        yield Sites(root, ca_file, signaling, a, b)
    finally:
        for site in started:
            site.stop()
        signaling.stop()


def test_signaling_is_wss_and_the_secret_is_never_on_a_command_line(
    sites: Sites,
) -> None:
    assert sites.signaling.url.startswith("wss://")
    for pid in (sites.signaling.process.pid, sites.a.pid, sites.b.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline, cmdline
        assert b"--secret" not in cmdline


async def test_impostor_with_the_secret_cannot_take_over_an_endpoint(
    sites: Sites,
) -> None:
    victim = sites.a
    impostor = Identity.generate()
    victim_public = read_identity(victim.home / "endpoints" / victim.name).public_bytes

    import ssl

    context = ssl.create_default_context(cafile=str(sites.ca_file))
    attempts = {
        "no proof": None,
        "own key": lambda body: impostor.sign(body),
        "victim's public key, own signature": lambda body: {
            **impostor.sign(body),
            "pub": base64.b64encode(victim_public).decode(),
        },
    }
    for label, make_proof in attempts.items():
        async with connect(
            sites.signaling.url, ssl=context, open_timeout=WAIT, **DIRECT_CONNECTION
        ) as ws:
            nonce = json.loads(await asyncio.wait_for(ws.recv(), WAIT))["nonce"]
            body = {
                "from": victim.uuid,
                "to": "signaling",
                "nonce": nonce,
                "ts": time.time(),
                "name": "impostor",
            }
            message: dict[str, Any] = {
                "type": "register",
                "uuid": victim.uuid,
                "name": "impostor",
                "auth": protocol.auth_digest(SECRET, nonce, victim.uuid),
            }
            if make_proof is not None:
                message["identity"] = make_proof(body)
            await ws.send(json.dumps(message))
            reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert reply["type"] == "error", label
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == protocol.CLOSE_AUTH_FAILED, label

    # The real endpoint was never knocked off and keeps serving its peers.
    assert describe_endpoint(victim.url, victim.api_token)["signaling"] is True
    async with (
        EndpointStore(
            "sec-a", url=sites.a.url, token_file=str(sites.a.token_file), timeout=20
        ) as at_a,
        EndpointStore(
            "sec-b", url=sites.b.url, token_file=str(sites.b.token_file), timeout=20
        ) as at_b,
    ):
        key = await at_a.aset({"owner": "a"})
        assert await at_b.aget(key) == {"owner": "a"}
        back = await at_b.aset(b"from b")
        assert await at_a.aget(back) == b"from b"


async def test_valid_identity_not_on_the_allowlist_gets_nothing(
    sites: Sites,
) -> None:
    async with EndpointStore(
        "sec-own", url=sites.a.url, token_file=str(sites.a.token_file), timeout=20
    ) as at_a:
        key = await at_a.aset(b"private to a's peers")

    seen: list[str] = []

    async def handler(peer: str, request: PeerMessage) -> PeerMessage:
        seen.append(peer)
        return PeerMessage({"ok": True, "found": True}, b"forged")

    outsider = PeerManager(
        Identity.generate(),
        "outsider",
        sites.signaling.url,
        SECRET,
        handler,
        allow=PeerAllowlist.any(),
        timeout=WAIT,
        signaling_ca_file=str(sites.ca_file),
    )
    async with outsider:
        # Knowing the secret and holding a key is enough to register...
        assert await outsider.wait_for_signaling(WAIT)
        # ...but not to read, write or probe an endpoint that did not allow it.
        for header, body in [
            ({"op": "get", "key": key.object_id}, b""),
            ({"op": "set", "key": "planted"}, b"malicious pickle"),
            ({"op": "exists", "key": key.object_id}, b""),
        ]:
            with pytest.raises(PeerConnectionError, match="refused the connection"):
                await outsider.request(sites.a.uuid, PeerMessage(header, body))
        assert outsider.peers == []
    assert seen == []
    async with EndpointStore(
        "sec-check", url=sites.a.url, token_file=str(sites.a.token_file), timeout=20
    ) as at_a:
        assert await at_a.aget(key) == b"private to a's peers"
        assert await at_a.aget(EndpointKey("planted", sites.a.uuid)) is None


async def test_client_without_the_ca_cannot_register(sites: Sites) -> None:
    """Endpoints verify the wss:// server: the system trust store lacks our CA."""
    client = SignalingClient(
        sites.signaling.url,
        Identity.generate(),
        "no-ca",
        SECRET,
        lambda message: None,
        timeout=WAIT,
    )
    client.start()
    try:
        assert await client.wait_attempted(WAIT)
        assert not client.connected
        assert "CERTIFICATE_VERIFY_FAILED" in str(client.last_error)
    finally:
        await client.close()


async def test_removing_a_peer_cuts_off_its_open_connection(sites: Sites) -> None:
    async with (
        EndpointStore(
            "cut-a", url=sites.a.url, token_file=str(sites.a.token_file), timeout=20
        ) as at_a,
        EndpointStore(
            "cut-b", url=sites.b.url, token_file=str(sites.b.token_file), timeout=20
        ) as at_b,
    ):
        key = await at_a.aset(b"before")
        assert await at_b.aget(key) == b"before"  # b holds a connection to a
        removed = run_cli(sites.a.home, "peers", "remove", sites.a.name, sites.b.uuid)
        assert removed.returncode == 0, removed.stderr
        try:
            with pytest.raises(ProxyStoreError, match="not allowed"):
                await at_b.aget(await at_a.aset(b"after removal"))
        finally:
            sites.a.allow(sites.b.uuid)
        # Allowed again: b reconnects.
        assert await at_b.aget(await at_a.aset(b"again")) == b"again"
