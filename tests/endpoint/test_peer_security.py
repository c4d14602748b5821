"""An attacker who knows the signaling secret, against real endpoint processes.

One signaling server (TLS, with a CA made here) and two endpoints that allow
each other, each in its own PROXYSTORE_HOME, started through the CLIs.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
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
)
from proxystore.exceptions import PeerConnectionError, ProxyStoreError
from proxystore.p2p import PeerManager, PeerMessage
from proxystore.p2p import signaling_protocol as protocol
from proxystore.p2p.signaling_client import SignalingClient

pytestmark = pytest.mark.timeout(90)

SECRET = "peer-security-secret-" + "x" * 16
READY = 30.0
WAIT = 10.0


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """Write a test CA and a server certificate for 127.0.0.1 it signed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("proxystore test CA"))
        .issuer_name(_name("proxystore test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs its
        # key usage and key identifier, a leaf the authority's key identifier.
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "c.pem", "k.pem"))
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(
            pem,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


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
    ca_file, cert_file, key_file = make_ca_and_server_cert(root)
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
            sites.signaling.url, ssl=context, open_timeout=WAIT, proxy=None
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
