"""Endpoints on two "hosts": network namespaces joined by a veth pair.

Each namespace has only loopback and its own address on the link, like two
machines on one LAN. A signaling server (``wss://``) runs in namespace A, one
endpoint runs in each namespace with DEFAULT settings (API on loopback, fast
path on the address the peer connection uses), and a proxy made by a process
in A resolves in a process in B. Needs root; without root the test skips,
unless ``CI`` is set, where it fails.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxystore.endpoint.config import free_port
from proxystore.endpoint.netns import Namespace, NamespacePair
from proxystore.endpoint.testing import (
    EndpointProcess,
    configure_endpoint,
    site_env,
    wait_for_port,
    wait_until_registered,
    write_test_certificate,
)
from proxystore.p2p.ice import ICE_ADDRESSES_ENV
from proxystore.p2p.signaling import SECRET_ENV

pytestmark = pytest.mark.timeout(300)

READY = 60.0

# Made in A, resolved in B; both print sha256 and length of what they hold.
_PRODUCE = """
import hashlib, pickle, sys
from proxystore.store import init_store
kind = sys.argv[1]
small = {"answer": 42, "crosses": "hosts"}
obj = small if kind == "dict" else (bytes(range(256)) * (10**9 // 256 + 1))[: 10**9]
store = init_store("endpoint", name="crosshost", endpoints=["site-a", "site-b"])
proxy = store.proxy(obj)
data = obj if isinstance(obj, bytes) else repr(sorted(obj.items())).encode()
sys.stdout.buffer.write(pickle.dumps(proxy))
sys.stderr.write(hashlib.sha256(data).hexdigest() + " " + str(len(data)) + "\\n")
"""
_CONSUME = """
import hashlib, pickle, sys
from proxystore.store import init_store
init_store("endpoint", name="crosshost", endpoints=["site-a", "site-b"])
proxy = pickle.loads(sys.stdin.buffer.read())
obj = proxy
data = bytes(obj) if isinstance(obj, bytes) else repr(sorted(obj.items())).encode()
print(hashlib.sha256(data).hexdigest(), len(data))
"""


def _require_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("the cross-host test needs root (network namespaces) in CI")
    pytest.skip("network namespaces need root")


class CrossHost:
    """The two namespaces, their endpoints and how to run clients in them."""

    def __init__(self, pair: NamespacePair, root: Path, secret: str) -> None:
        self.pair = pair
        self.root = root
        self.secret = secret
        self.sites: dict[str, EndpointProcess] = {}
        self.signaling_port = 0

    def env(self, home: Path | None) -> dict[str, str]:
        env = site_env(home)
        # Real hosts: ICE gathers every interface address, as by default.
        env.pop(ICE_ADDRESSES_ENV, None)
        return env

    def client(self, ns: Namespace, site: str, script: str, *args: str,
               stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        result = subprocess.run(
            ns.command(sys.executable, "-c", script, *args),
            input=stdin,
            env=self.env(self.sites[site].home),
            capture_output=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        return result


@pytest.fixture(scope="module")
def crosshost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrossHost]:
    _require_root()
    root = tmp_path_factory.mktemp("crosshost")
    pid = os.getpid()
    pair = NamespacePair(str(pid % 100000), 20 + pid % 200)
    try:
        secret = secrets.token_hex(32)
        hosts = CrossHost(pair, root, secret)
        a, b = pair.a, pair.b
        ca, cert, key = write_test_certificate(root / "tls", a.address)
        port = hosts.signaling_port = free_port()
        pair.popen(
            a,
            [
                sys.executable,
                "-c",
                "import sys; from proxystore.p2p.signaling import main; "
                "sys.exit(main(sys.argv[1:]))",
                "--host",
                a.address,
                "--port",
                str(port),
                "--certfile",
                str(cert),
                "--keyfile",
                str(key),
            ],
            {**hosts.env(None), SECRET_ENV: secret},
            root / "signaling.log",
        )
        # Reachable from B: the endpoint there registers through the link.
        b.run(lambda: wait_for_port(a.address, port, READY))
        server = f"wss://{a.address}:{port}"
        for site in ("site-a", "site-b"):
            hosts.sites[site] = configure_endpoint(
                root / site,
                site,
                "--server", server, "--signaling-ca-file", str(ca),
                secret=secret,
            )  # fmt: skip
        hosts.sites["site-a"].allow(hosts.sites["site-b"].uuid)
        hosts.sites["site-b"].allow(hosts.sites["site-a"].uuid)
        for ns, site in ((a, "site-a"), (b, "site-b")):
            endpoint = hosts.sites[site]
            pair.popen(
                ns,
                [sys.executable, "-m", "proxystore.endpoint.cli", "start", site],
                hosts.env(endpoint.home),
                root / f"{site}.out",
            )
        for ns, site in ((a, "site-a"), (b, "site-b")):
            endpoint = hosts.sites[site]
            ns.run(lambda e=endpoint: wait_until_registered(e, READY))  # type: ignore[misc]
        yield hosts
    finally:
        pair.close()


def _cross(hosts: CrossHost, kind: str) -> None:
    made = hosts.client(hosts.pair.a, "site-a", _PRODUCE, kind)
    expected = made.stderr.decode().strip().splitlines()[-1]
    got = hosts.client(hosts.pair.b, "site-b", _CONSUME, stdin=made.stdout)
    assert got.stdout.decode().strip() == expected


def test_small_object_crosses_hosts(crosshost: CrossHost) -> None:
    _cross(crosshost, "dict")


def test_only_configured_addresses_listen(crosshost: CrossHost) -> None:
    a, b = crosshost.pair.a, crosshost.pair.b
    # Peering has happened (the fast path opens per address on connection).
    _cross(crosshost, "dict")
    for ns, site in ((a, "site-a"), (b, "site-b")):
        api = crosshost.sites[site].config
        listening = ns.listening()
        assert f"127.0.0.1:{api.port}" in listening
        allowed = {"127.0.0.1", ns.address}
        for address in listening:
            host = address.rsplit(":", 1)[0]
            assert host in allowed, f"{ns.name} listens on {address}: {listening}"
        # The endpoint's fast path listens on the link address it peers over.
        assert any(x.startswith(f"{ns.address}:") for x in listening), listening
    assert f"{a.address}:{crosshost.signaling_port}" in a.listening()


@pytest.mark.heavy
def test_one_gigabyte_crosses_hosts_with_default_settings(
    crosshost: CrossHost,
) -> None:
    _cross(crosshost, "gigabyte")
    log = crosshost.root / "site-a" / "endpoints" / "site-a" / "endpoint.log"
    # The body took the fast path on the link address, not loopback.
    assert f"fast path listening on {crosshost.pair.a.address}:" in log.read_text()
